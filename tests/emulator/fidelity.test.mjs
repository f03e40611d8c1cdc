// Fidelity of scripts/firestore-emulator: Google's official Node client (@google-cloud/firestore,
// REST transport) and raw REST calls against it must see what real Cloud Firestore gives.
// Needs `npm install --prefix scripts` (scripts/setup runs it).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const emulatorBin = process.env.FIRESTORE_EMULATOR_BIN || path.join(repo, 'scripts', 'firestore-emulator');
const scriptsRequire = createRequire(path.join(repo, 'scripts', 'package.json'));

let Firestore, FieldValue, FieldPath, Timestamp, GeoPoint, Filter, OAuth2Client;
try {
  ({ Firestore, FieldValue, FieldPath, Timestamp, GeoPoint, Filter } = scriptsRequire('@google-cloud/firestore'));
  // A dependency of the client; resolved from the client's own tree.
  ({ OAuth2Client } = createRequire(scriptsRequire.resolve('google-gax'))('google-auth-library'));
} catch (e) {
  throw new Error(`@google-cloud/firestore is not installed: run \`npm install --prefix scripts\` (${e.message})`);
}

const PROJECT = 'demo';
const ROOT = `projects/${PROJECT}/databases/(default)/documents`;
const children = [];

// Starts an emulator on a free port; resolves to {proc, port, base}.
function startEmulator(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [emulatorBin, '--port', '0', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proc);
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`emulator did not start: ${err}`)), 10000);
    proc.stderr.on('data', (d) => { err += d; });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({ proc, port, base: `http://127.0.0.1:${port}` });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`emulator exited with ${code}: ${err}`)); });
  });
}

// The client with preferRest asks Google's default credentials for a token even for an emulator
// (googleapis/nodejs-firestore#1811), so it gets a fixed "owner" token instead. validateStatus keeps
// gaxios from turning HTTP errors into its own errors, so the client sees gRPC codes (6, 5, 14…) and
// applies its retry rules, as over gRPC.
function client(port, extra = {}) {
  return new Firestore({
    projectId: PROJECT, preferRest: true, host: `127.0.0.1:${port}`, ssl: false,
    authClient: new OAuth2Client({ credentials: { access_token: 'owner' }, transporterOptions: { validateStatus: () => true } }),
    ...extra,
  });
}

let emu;
let db;

async function rest(method, p, body, query = '') {
  const url = `${emu.base}/v1/${p}${query ? '?' + query : ''}`;
  const res = await fetch(url, {
    method, headers: { 'Content-Type': 'application/json', Authorization: 'Bearer owner' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}
const admin = async (method, p, body) => {
  const res = await fetch(`${emu.base}${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
};
const TS_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$/;

before(async () => {
  assert.ok(fs.existsSync(emulatorBin), `missing ${emulatorBin}`);
  emu = await startEmulator();
  db = client(emu.port);
});

after(async () => {
  if (db) await db.terminate().catch(() => {});
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('official client', () => {
  test('set/get keeps every value type', async () => {
    const ref = db.doc('types/all');
    const other = db.doc('types/other');
    const data = {
      int: 42, big: Number.MAX_SAFE_INTEGER, neg: -7, dbl: 1.5, nan: NaN, inf: -Infinity, str: 'héllo ✓', empty: '',
      t: true, f: false, nil: null, ts: new Timestamp(1700000000, 123456789), geo: new GeoPoint(48.85, 2.35),
      map: { a: { b: [1, 'x', { c: null }] }, 'with space': 1 }, emptyMap: {}, arr: [1, 2.5, 'a', {}],
      emptyArr: [], bytes: Buffer.from([0, 1, 2, 255]), ref: other,
    };
    await ref.set(data);
    const snap = await ref.get();
    assert.ok(snap.exists);
    const d = snap.data();
    assert.equal(d.int, 42);
    assert.equal(d.big, Number.MAX_SAFE_INTEGER);
    assert.equal(d.neg, -7);
    assert.equal(d.dbl, 1.5);
    assert.ok(Number.isNaN(d.nan));
    assert.equal(d.inf, -Infinity);
    assert.equal(d.str, 'héllo ✓');
    assert.equal(d.empty, '');
    assert.equal(d.t, true);
    assert.equal(d.f, false);
    assert.equal(d.nil, null);
    // Firestore stores timestamps to microseconds: the nanoseconds are truncated.
    assert.ok(d.ts instanceof Timestamp);
    assert.equal(d.ts.seconds, 1700000000);
    assert.equal(d.ts.nanoseconds, 123456000);
    assert.ok(d.geo instanceof GeoPoint && d.geo.isEqual(new GeoPoint(48.85, 2.35)));
    assert.deepEqual(d.map, { a: { b: [1, 'x', { c: null }] }, 'with space': 1 });
    assert.deepEqual(d.emptyMap, {});
    assert.deepEqual(d.arr, [1, 2.5, 'a', {}]);
    assert.deepEqual(d.emptyArr, []);
    assert.ok(Buffer.isBuffer(d.bytes) && d.bytes.equals(Buffer.from([0, 1, 2, 255])));
    assert.equal(d.ref.path, 'types/other');
    assert.ok(snap.createTime.isEqual(snap.updateTime));
    // Integers and doubles keep their wire types (checked over REST).
    const r = await rest('GET', `${ROOT}/types/all`, undefined, 'mask.fieldPaths=int&mask.fieldPaths=dbl&mask.fieldPaths=nan&mask.fieldPaths=ts');
    assert.deepEqual(r.json.fields, {
      int: { integerValue: '42' }, dbl: { doubleValue: 1.5 }, nan: { doubleValue: 'NaN' },
      ts: { timestampValue: '2023-11-14T22:13:20.123456Z' },
    });
    assert.match(r.json.createTime, TS_RE);
  });

  test('update with transforms and field deletes', async () => {
    const ref = db.doc('upd/a');
    await ref.set({ n: 1, d: 1, tags: ['x'], gone: 1, nested: { keep: 1, drop: 2 } });
    const wr = await ref.update({
      n: FieldValue.increment(2), d: FieldValue.increment(0.5), at: FieldValue.serverTimestamp(),
      tags: FieldValue.arrayUnion('y', 'x', 'y'), gone: FieldValue.delete(), 'nested.drop': FieldValue.delete(),
      'nested.add': 3,
    });
    const snap = await ref.get();
    assert.deepEqual(Object.keys(snap.data()).sort(), ['at', 'd', 'n', 'nested', 'tags']);
    assert.equal(snap.get('n'), 3);
    assert.equal(snap.get('d'), 1.5);
    assert.deepEqual(snap.get('tags'), ['x', 'y']);
    assert.deepEqual(snap.get('nested'), { keep: 1, add: 3 });
    // The server timestamp is the commit time, which is also the document's update time.
    assert.ok(snap.get('at').isEqual(snap.updateTime));
    assert.ok(wr.writeTime.isEqual(snap.updateTime));
    await ref.update({ tags: FieldValue.arrayRemove('x'), n: FieldValue.increment(-10) });
    const s2 = await ref.get();
    assert.deepEqual(s2.get('tags'), ['y']);
    assert.equal(s2.get('n'), -7);
    assert.ok(s2.updateTime > snap.updateTime);
    assert.ok(s2.createTime.isEqual(snap.createTime));
    // Merge set keeps other fields.
    await ref.set({ m: { z: 1 } }, { merge: true });
    const s3 = await ref.get();
    assert.equal(s3.get('n'), -7);
    assert.deepEqual(s3.get('m'), { z: 1 });
  });

  test('create on an existing document fails with ALREADY_EXISTS, update on a missing one with NOT_FOUND', async () => {
    const ref = db.doc('pre/x');
    await ref.create({ a: 1 });
    await assert.rejects(ref.create({ a: 2 }), (e) => e.code === 6 && /already exists/i.test(e.message));
    await assert.rejects(db.doc('pre/missing').update({ a: 1 }), (e) => e.code === 5);
    const snap = await ref.get();
    await assert.rejects(ref.update({ a: 3 }, { lastUpdateTime: Timestamp.fromMillis(snap.updateTime.toMillis() - 1) }), (e) => e.code === 9);
    await ref.update({ a: 3 }, { lastUpdateTime: snap.updateTime });
    assert.equal((await ref.get()).get('a'), 3);
  });

  test('batch writes are atomic', async () => {
    const b = db.batch();
    b.set(db.doc('batch/1'), { v: 1 });
    b.set(db.doc('batch/2'), { v: 2 });
    b.delete(db.doc('batch/none'));
    const res = await b.commit();
    assert.equal(res.length, 3);
    assert.ok(res[0].writeTime.isEqual(res[1].writeTime));
    const bad = db.batch();
    bad.set(db.doc('batch/3'), { v: 3 });
    bad.update(db.doc('batch/missing'), { v: 4 });
    await assert.rejects(bad.commit(), (e) => e.code === 5);
    assert.equal((await db.doc('batch/3').get()).exists, false);
    const [s1, s2, s3] = await db.getAll(db.doc('batch/1'), db.doc('batch/2'), db.doc('batch/3'));
    assert.deepEqual([s1.get('v'), s2.get('v'), s3.exists], [1, 2, false]);
  });

  test('transactions: read then write, and a conflicting one is retried', async () => {
    const ref = db.doc('tx/counter');
    await ref.set({ n: 0 });
    await db.runTransaction(async (tx) => {
      const s = await tx.get(ref);
      tx.update(ref, { n: s.get('n') + 1 });
    });
    assert.equal((await ref.get()).get('n'), 1);

    let attempts = 0;
    let release;
    const gate = new Promise((r) => { release = r; });
    let readDone;
    const firstRead = new Promise((r) => { readDone = r; });
    const slow = db.runTransaction(async (tx) => {
      attempts++;
      const s = await tx.get(ref);
      if (attempts === 1) {
        readDone();
        await gate;
      }
      tx.update(ref, { n: s.get('n') + 1 });
    });
    await firstRead;
    await db.runTransaction(async (tx) => {
      const s = await tx.get(ref);
      tx.update(ref, { n: s.get('n') + 10 });
    });
    release();
    await slow;
    assert.equal(attempts, 2);
    assert.equal((await ref.get()).get('n'), 12);
    const st = await admin('GET', '/admin/stats');
    assert.ok(st.json.aborted >= 1);

    // A transaction with a query read; the update function's result is returned.
    const got = await db.runTransaction(async (tx) => {
      const q = await tx.get(db.collection('tx').where('n', '>', 5));
      return q.size;
    });
    assert.equal(got, 1);
  });

  test('queries: filters, ordering, cursors, pagination', async () => {
    const col = db.collection('q');
    const rows = [
      { id: 'a', n: 1, s: 'x', tags: ['red', 'blue'], g: 'one' },
      { id: 'b', n: 2.5, s: 'y', tags: ['green'], g: 'one' },
      { id: 'c', n: 3, s: 'z', tags: ['red'], g: 'two' },
      { id: 'd', n: 4, s: 'x', tags: [], g: 'two' },
      { id: 'e', n: 5, s: 'y', g: 'three' },
      { id: 'f', n: 'five', s: 'z', g: 'three' },
      { id: 'g', s: 'x', g: null },
    ];
    const b = db.batch();
    for (const { id, ...r } of rows) b.set(col.doc(id), r);
    await b.commit();
    const ids = (snap) => snap.docs.map((d) => d.id);

    assert.deepEqual(ids(await col.where('s', '==', 'x').get()), ['a', 'd', 'g']);
    // A range filter only matches values of the same type; integers and doubles mix.
    assert.deepEqual(ids(await col.where('n', '<', 4).get()), ['a', 'b', 'c']);
    assert.deepEqual(ids(await col.where('n', '>=', 'a').get()), ['f']);
    assert.deepEqual(ids(await col.where('n', 'in', [1, 3, 'five']).get()), ['a', 'c', 'f']);
    assert.deepEqual(ids(await col.where('tags', 'array-contains', 'red').get()), ['a', 'c']);
    assert.deepEqual(ids(await col.where('tags', 'array-contains-any', ['green', 'blue']).get()), ['a', 'b']);
    // != and not-in leave out documents without the field and (not-in) nulls.
    assert.deepEqual(ids(await col.where('s', '!=', 'x').get()), ['b', 'e', 'c', 'f']);
    assert.deepEqual(ids(await col.where('g', 'not-in', ['one']).get()), ['e', 'f', 'c', 'd']);
    assert.deepEqual(ids(await col.where('g', '==', null).get()), ['g']);
    assert.deepEqual(ids(await col.where(Filter.or(Filter.where('n', '==', 1), Filter.where('s', '==', 'z'))).get()), ['a', 'c', 'f']);
    // orderBy leaves out documents without the field; mixed types sort numbers before strings.
    assert.deepEqual(ids(await col.orderBy('n', 'desc').get()), ['f', 'e', 'd', 'c', 'b', 'a']);
    assert.deepEqual(ids(await col.orderBy('n', 'desc').limit(2).get()), ['f', 'e']);
    assert.deepEqual(ids(await col.orderBy('n').limitToLast(2).get()), ['e', 'f']);
    assert.deepEqual(ids(await col.orderBy('s').orderBy('n', 'desc').get()), ['d', 'a', 'e', 'b', 'f', 'c']);
    assert.deepEqual(ids(await col.orderBy('n').offset(4).get()), ['e', 'f']);
    // Cursors: values and document snapshots.
    assert.deepEqual(ids(await col.orderBy('n').startAfter(2.5).endAt(4).get()), ['c', 'd']);
    assert.deepEqual(ids(await col.orderBy('n').startAt(3).endBefore(5).get()), ['c', 'd']);
    const pages = [];
    let q = col.orderBy('s').limit(3);
    for (;;) {
      const page = await q.get();
      if (page.empty) break;
      pages.push(ids(page));
      q = col.orderBy('s').startAfter(page.docs[page.docs.length - 1]).limit(3);
    }
    assert.deepEqual(pages, [['a', 'd', 'g'], ['b', 'e', 'c'], ['f']]);
    // select() returns only the chosen fields.
    const sel = await col.where('n', '==', 1).select('s').get();
    assert.deepEqual(sel.docs[0].data(), { s: 'x' });
    // Aggregations.
    assert.equal((await col.where('s', '==', 'x').count().get()).data().count, 3);
  });

  test('value ordering across types', async () => {
    const col = db.collection('order');
    const values = [
      ['v00', null], ['v01', false], ['v02', true], ['v03', NaN], ['v04', -Infinity], ['v05', -1], ['v06', 0.5],
      ['v07', 1], ['v08', Infinity], ['v09', new Timestamp(0, 1000)], ['v10', new Timestamp(1, 0)],
      ['v11', ''], ['v12', 'A'], ['v13', 'a'], ['v14', 'é'], ['v15', Buffer.from([0])], ['v16', Buffer.from([1, 0])],
      ['v17', db.doc('a/b')], ['v18', db.doc('a/b/c/d')], ['v19', db.doc('b/a')], ['v20', new GeoPoint(-10, 50)],
      ['v21', new GeoPoint(10, 0)], ['v22', []], ['v23', [1]], ['v24', [1, 2]], ['v25', [2]], ['v26', {}],
      ['v27', { a: 1 }], ['v28', { a: 2 }], ['v29', { b: 0 }],
    ];
    const b = db.batch();
    // Written in reverse so that document-name order cannot hide a wrong value order.
    for (const [id, v] of [...values].reverse()) b.set(col.doc(id), { v });
    await b.commit();
    const asc = (await col.orderBy('v').get()).docs.map((d) => d.id);
    assert.deepEqual(asc, values.map(([id]) => id));
    const desc = (await col.orderBy('v', 'desc').get()).docs.map((d) => d.id);
    assert.deepEqual(desc, values.map(([id]) => id).reverse());
  });

  test('collections, subcollections, listDocuments, getAll, deletes', async () => {
    await db.doc('lib/shelf1').set({ n: 1 });
    await db.doc('lib/shelf2/books/b1').set({ t: 'Dune' }); // lib/shelf2 itself does not exist
    await db.doc('lib/shelf1/books/b2').set({ t: 'Emma' });
    await db.doc('lib/shelf1/notes/x').set({});
    const listed = (await db.collection('lib').listDocuments()).map((r) => r.id);
    assert.deepEqual(listed, ['shelf1', 'shelf2']);
    assert.equal((await db.doc('lib/shelf2').get()).exists, false);
    assert.deepEqual((await db.doc('lib/shelf1').listCollections()).map((c) => c.id), ['books', 'notes']);
    const rootIds = (await db.listCollections()).map((c) => c.id);
    assert.ok(rootIds.includes('lib') && rootIds.includes('q'));
    assert.deepEqual([...rootIds].sort(), rootIds);
    const books = await db.collectionGroup('books').orderBy('t').get();
    assert.deepEqual(books.docs.map((d) => d.ref.path), ['lib/shelf2/books/b1', 'lib/shelf1/books/b2']);
    assert.deepEqual((await db.collection('lib/shelf1/books').get()).docs.map((d) => d.id), ['b2']);
    const all = await db.getAll(db.doc('lib/shelf1'), db.doc('lib/nope'), db.doc('lib/shelf2/books/b1'), { fieldMask: ['t'] });
    assert.deepEqual(all.map((s) => s.exists), [true, false, true]);
    assert.deepEqual(all[0].data(), {});
    assert.deepEqual(all[2].data(), { t: 'Dune' });

    await db.doc('lib/shelf1/books/b2').delete();
    assert.equal((await db.doc('lib/shelf1/books/b2').get()).exists, false);
    await db.doc('lib/never').delete(); // deleting a missing document succeeds
    await assert.rejects(db.doc('lib/never').delete({ exists: true }), (e) => e.code === 5);
    // recursiveDelete uses a collection-group query and BulkWriter (batchWrite).
    await db.recursiveDelete(db.collection('lib'));
    assert.deepEqual(await db.collection('lib').listDocuments(), []);
    assert.equal((await db.collectionGroup('notes').get()).size, 0);
  });
});

describe('REST surface', () => {
  test('createDocument, get with mask, patch with updateMask and preconditions, delete', async () => {
    let r = await rest('POST', `${ROOT}/users`, { fields: { age: { integerValue: 41 }, name: { stringValue: 'Alice' }, m: { mapValue: { fields: { 'a/b': { booleanValue: true }, c: { integerValue: '1' } } } } } }, 'documentId=alice');
    assert.equal(r.status, 200);
    assert.equal(r.json.name, `${ROOT}/users/alice`);
    assert.deepEqual(r.json.fields.age, { integerValue: '41' });
    assert.match(r.json.createTime, TS_RE);
    r = await rest('POST', `${ROOT}/users`, { fields: {} }, 'documentId=alice');
    assert.equal(r.status, 409);
    assert.equal(r.json.error.status, 'ALREADY_EXISTS');
    assert.equal(r.json.error.code, 409);
    r = await rest('POST', `${ROOT}/users`, { fields: { x: { nullValue: null } } });
    assert.equal(r.status, 200);
    assert.match(r.json.name, new RegExp(`^${ROOT.replace(/[()]/g, '\\$&')}/users/[A-Za-z0-9]{20}$`));

    r = await rest('GET', `${ROOT}/users/alice`, undefined, 'mask.fieldPaths=age&mask.fieldPaths=m.%60a%2Fb%60');
    assert.deepEqual(r.json.fields, { age: { integerValue: '41' }, m: { mapValue: { fields: { 'a/b': { booleanValue: true } } } } });
    r = await rest('GET', `${ROOT}/users/bob`);
    assert.equal(r.status, 404);
    assert.equal(r.json.error.status, 'NOT_FOUND');

    // Masked fields absent from the body are deleted; unmasked fields are kept.
    const before = (await rest('GET', `${ROOT}/users/alice`)).json;
    r = await rest('PATCH', `${ROOT}/users/alice`, { fields: { age: { integerValue: '42' } } },
      'updateMask.fieldPaths=age&updateMask.fieldPaths=name&currentDocument.exists=true');
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.json.fields).sort(), ['age', 'm']);
    assert.equal(r.json.createTime, before.createTime);
    assert.notEqual(r.json.updateTime, before.updateTime);
    r = await rest('PATCH', `${ROOT}/users/bob`, { fields: {} }, 'currentDocument.exists=true');
    assert.equal(r.status, 404);
    r = await rest('PATCH', `${ROOT}/users/alice`, { fields: {} }, 'currentDocument.exists=false');
    assert.equal(r.status, 409);
    assert.equal(r.json.error.status, 'ALREADY_EXISTS');
    r = await rest('PATCH', `${ROOT}/users/alice`, { fields: {} }, `currentDocument.updateTime=${encodeURIComponent(before.updateTime)}`);
    assert.equal(r.status, 400);
    assert.equal(r.json.error.status, 'FAILED_PRECONDITION');
    // A write that changes nothing keeps the update time.
    const cur = (await rest('GET', `${ROOT}/users/alice`)).json;
    r = await rest('PATCH', `${ROOT}/users/alice`, { fields: { age: { integerValue: '42' } } }, 'updateMask.fieldPaths=age');
    assert.equal(r.json.updateTime, cur.updateTime);
    // Upsert without a mask replaces the document.
    r = await rest('PATCH', `${ROOT}/users/carol`, { fields: { age: { integerValue: '30' } } });
    assert.equal(r.status, 200);
    r = await rest('DELETE', `${ROOT}/users/carol`, undefined, `currentDocument.updateTime=${encodeURIComponent(r.json.updateTime)}`);
    assert.deepEqual([r.status, r.json], [200, {}]);
    r = await rest('DELETE', `${ROOT}/users/carol`, undefined, 'currentDocument.exists=true');
    assert.equal(r.status, 404);
    r = await rest('GET', `${ROOT}/users/alice`, undefined, 'mask.fieldPaths=bad..path');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.status, 'INVALID_ARGUMENT');
  });

  test('list: pages, orderBy, mask, showMissing', async () => {
    const writes = [];
    for (let i = 0; i < 7; i++) {
      writes.push({ update: { name: `${ROOT}/pages/p${i}`, fields: { i: { integerValue: String(i) }, odd: { booleanValue: i % 2 === 1 } } } });
    }
    writes.push({ update: { name: `${ROOT}/pages/ghost/sub/s1`, fields: {} } });
    const c = await rest('POST', `${ROOT}:commit`, { writes });
    assert.equal(c.json.writeResults.length, 8);
    const names = [];
    let token = '';
    for (let n = 0; n < 10; n++) {
      const r = await rest('GET', `${ROOT}/pages`, undefined, `pageSize=3&orderBy=i%20desc&mask.fieldPaths=i${token ? '&pageToken=' + encodeURIComponent(token) : ''}`);
      assert.equal(r.status, 200);
      for (const d of r.json.documents || []) {
        assert.deepEqual(Object.keys(d.fields), ['i']);
        names.push(d.name.split('/').pop());
      }
      token = r.json.nextPageToken;
      if (!token) break;
    }
    assert.deepEqual(names, ['p6', 'p5', 'p4', 'p3', 'p2', 'p1', 'p0']);
    const plain = await rest('GET', `${ROOT}/pages`);
    assert.deepEqual(plain.json.documents.map((d) => d.name.split('/').pop()), ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
    const miss = await rest('GET', `${ROOT}/pages`, undefined, 'showMissing=true&pageSize=2&pageToken=');
    assert.deepEqual(miss.json.documents.map((d) => d.name.split('/').pop()), ['ghost', 'p0']);
    assert.deepEqual(Object.keys(miss.json.documents[0]), ['name']);
    const bad = await rest('GET', `${ROOT}/pages`, undefined, `pageToken=${encodeURIComponent(token || 'eyJ4IjoxfQ==')}&orderBy=i`);
    assert.equal(bad.status, 400);
  });

  test('batchGet and runQuery answer with JSON arrays; enums by name or number', async () => {
    let r = await rest('POST', `${ROOT}:batchGet`, { documents: [`${ROOT}/pages/p1`, `${ROOT}/pages/none`], mask: { fieldPaths: ['odd'] } });
    assert.ok(Array.isArray(r.json));
    assert.deepEqual(r.json[0].found.fields, { odd: { booleanValue: true } });
    assert.equal(r.json[1].missing, `${ROOT}/pages/none`);
    assert.match(r.json[1].readTime, TS_RE);

    const q = (op, dir) => ({ structuredQuery: {
      from: [{ collectionId: 'pages' }],
      where: { compositeFilter: { op: 'AND', filters: [
        { fieldFilter: { field: { fieldPath: 'i' }, op, value: { integerValue: '2' } } },
        { fieldFilter: { field: { fieldPath: 'odd' }, op: 'EQUAL', value: { booleanValue: false } } }] } },
      orderBy: [{ field: { fieldPath: 'i' }, direction: dir }],
      select: { fields: [{ fieldPath: 'i' }] },
    } });
    const byName = await rest('POST', `${ROOT}:runQuery`, q('GREATER_THAN_OR_EQUAL', 'DESCENDING'));
    const byNum = await rest('POST', `${ROOT}:runQuery`, q(4, 2), undefined);
    const ids = (res) => res.json.filter((e) => e.document).map((e) => e.document.name.split('/').pop());
    assert.deepEqual(ids(byName), ['p6', 'p4', 'p2']);
    assert.deepEqual(ids(byNum), ids(byName));
    assert.deepEqual(Object.keys(byName.json[0].document.fields), ['i']);
    // Cursors with `before`, offset, limit.
    const cur = await rest('POST', `${ROOT}:runQuery`, { structuredQuery: {
      from: [{ collectionId: 'pages' }], orderBy: [{ field: { fieldPath: 'i' } }],
      startAt: { values: [{ integerValue: '1' }], before: false }, endAt: { values: [{ integerValue: '5' }], before: true },
      offset: 1, limit: 2 } });
    assert.deepEqual(ids(cur), ['p3', 'p4']);
    // No match: one element with only readTime.
    const none = await rest('POST', `${ROOT}:runQuery`, { structuredQuery: { from: [{ collectionId: 'pages' }],
      where: { unaryFilter: { op: 'IS_NULL', field: { fieldPath: 'i' } } } } });
    assert.equal(none.json.length, 1);
    assert.deepEqual(Object.keys(none.json[0]), ['readTime']);
    // Queries under a document, and over all descendants.
    const sub = await rest('POST', `${ROOT}/pages/ghost:runQuery`, { structuredQuery: { from: [{ collectionId: 'sub' }] } });
    assert.deepEqual(ids(sub), ['s1']);
    const desc = await rest('POST', `${ROOT}:runQuery`, { structuredQuery: { from: [{ collectionId: 'sub', allDescendants: true }] } });
    assert.deepEqual(ids(desc), ['s1']);
    r = await rest('POST', `${ROOT}:runQuery`, { structuredQuery: { from: [{ collectionId: 'pages' }], where: { fieldFilter: { field: { fieldPath: 'i' }, op: 'BOGUS', value: { integerValue: '1' } } } } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.status, 'INVALID_ARGUMENT');
  });

  test('commit: transforms, atomicity, transactions; batchWrite; listCollectionIds', async () => {
    const name = `${ROOT}/xf/d`;
    let r = await rest('POST', `${ROOT}:commit`, { writes: [{
      update: { name, fields: { label: { stringValue: 'x' }, hi: { integerValue: '5' }, lo: { doubleValue: 5 }, arr: { arrayValue: { values: [{ integerValue: '1' }, { integerValue: '2' }, { integerValue: '1' }] } } } },
      updateTransforms: [
        { fieldPath: 'hits', increment: { integerValue: '1' } },
        { fieldPath: 'seen', setToServerValue: 'REQUEST_TIME' },
        { fieldPath: 'hi', maximum: { doubleValue: 7.5 } },
        { fieldPath: 'lo', minimum: { integerValue: '3' } },
        { fieldPath: 'arr', removeAllFromArray: { values: [{ doubleValue: 1.0 }] } },
        { fieldPath: 'arr2', appendMissingElements: { values: [{ stringValue: 'a' }, { stringValue: 'a' }] } },
      ] }] });
    assert.equal(r.status, 200);
    const wr = r.json.writeResults[0];
    assert.equal(wr.updateTime, r.json.commitTime);
    assert.deepEqual(wr.transformResults, [{ integerValue: '1' }, { timestampValue: r.json.commitTime },
      { doubleValue: 7.5 }, { integerValue: '3' }, { nullValue: null }, { nullValue: null }]);
    const d = (await rest('GET', name)).json;
    assert.deepEqual(d.fields.arr, { arrayValue: { values: [{ integerValue: '2' }] } });
    assert.deepEqual(d.fields.arr2, { arrayValue: { values: [{ stringValue: 'a' }] } });
    assert.deepEqual(d.fields.seen, { timestampValue: r.json.commitTime });
    // Integer increments saturate at the int64 limits.
    r = await rest('POST', `${ROOT}:commit`, { writes: [{ transform: { document: name, fieldTransforms: [{ fieldPath: 'hits', increment: { integerValue: '9223372036854775807' } }] } }] });
    assert.deepEqual(r.json.writeResults[0].transformResults, [{ integerValue: '9223372036854775807' }]);

    // All or nothing: the second write's precondition fails, the first is not applied.
    r = await rest('POST', `${ROOT}:commit`, { writes: [
      { update: { name: `${ROOT}/xf/new`, fields: {} } },
      { delete: `${ROOT}/xf/absent`, currentDocument: { exists: true } }] });
    assert.equal(r.status, 404);
    assert.equal((await rest('GET', `${ROOT}/xf/new`)).status, 404);

    // A transaction whose read went stale aborts (409 ABORTED); rollback answers {}.
    const t = (await rest('POST', `${ROOT}:beginTransaction`, { options: { readWrite: {} } })).json.transaction;
    r = await rest('GET', name, undefined, `transaction=${encodeURIComponent(t)}`);
    assert.equal(r.status, 200);
    await rest('PATCH', name, { fields: { label: { stringValue: 'other' } } }, 'updateMask.fieldPaths=label');
    r = await rest('POST', `${ROOT}:commit`, { transaction: t, writes: [{ delete: name }] });
    assert.equal(r.status, 409);
    assert.equal(r.json.error.status, 'ABORTED');
    const t2 = (await rest('POST', `${ROOT}:beginTransaction`, {})).json.transaction;
    assert.deepEqual((await rest('POST', `${ROOT}:rollback`, { transaction: t2 })).json, {});
    const ro = (await rest('POST', `${ROOT}:beginTransaction`, { options: { readOnly: {} } })).json.transaction;
    r = await rest('POST', `${ROOT}:commit`, { transaction: ro, writes: [{ delete: name }] });
    assert.equal(r.status, 400);

    // batchWrite is not atomic: one status per write.
    r = await rest('POST', `${ROOT}:batchWrite`, { writes: [
      { update: { name: `${ROOT}/bw/1`, fields: {} } },
      { update: { name: `${ROOT}/bw/2`, fields: {} }, currentDocument: { exists: true } }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.status[0].code ?? 0, 0);
    assert.equal(r.json.status[1].code, 5);
    assert.match(r.json.writeResults[0].updateTime, TS_RE);
    assert.equal((await rest('GET', `${ROOT}/bw/1`)).status, 200);

    // listCollectionIds pages through sorted ids.
    const seen = [];
    let token;
    do {
      r = await rest('POST', `${ROOT}:listCollectionIds`, { pageSize: 2, ...(token ? { pageToken: token } : {}) });
      seen.push(...r.json.collectionIds);
      token = r.json.nextPageToken;
    } while (token);
    assert.deepEqual(seen, [...seen].sort());
    assert.ok(seen.includes('xf') && seen.includes('bw') && seen.includes('pages'));
    r = await rest('POST', `${ROOT}/pages/ghost:listCollectionIds`, {});
    assert.deepEqual(r.json.collectionIds, ['sub']);
  });

  test('errors, timestamps, reset, auth', async () => {
    let r = await rest('POST', `${ROOT}:commit`, { writes: [{ update: { name: `${ROOT}/e/1`, fields: { x: { integerValue: 'abc' } } } }] });
    assert.deepEqual([r.status, r.json.error.status, r.json.error.code], [400, 'INVALID_ARGUMENT', 400]);
    r = await rest('POST', `${ROOT}:commit`, { writes: [{ update: { name: `${ROOT}/e/1`, fields: { x: { stringValue: 'a', integerValue: '1' } } } }] });
    assert.equal(r.status, 400);
    r = await rest('POST', `${ROOT}:commit`, '{not json');
    assert.equal(r.status, 400);
    // Timestamps in any RFC 3339 form are stored to microseconds and answered canonically.
    r = await rest('PATCH', `${ROOT}/e/ts`, { fields: { t: { timestampValue: '2024-05-01T12:00:00.123456789+02:00' } } });
    assert.deepEqual(r.json.fields.t, { timestampValue: '2024-05-01T10:00:00.123456Z' });
    // Distinct commits get distinct, increasing update times.
    const a = (await rest('PATCH', `${ROOT}/e/t1`, { fields: {} })).json.updateTime;
    const b = (await rest('PATCH', `${ROOT}/e/t2`, { fields: {} })).json.updateTime;
    assert.ok(Date.parse(a) <= Date.parse(b) && a !== b);

    // Reset clears the project's documents.
    const other = `projects/other/databases/(default)/documents`;
    await rest('PATCH', `${other}/k/v`, { fields: {} });
    let res = await fetch(`${emu.base}/emulator/v1/projects/other/databases/(default)/documents`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    assert.equal((await rest('GET', `${other}/k/v`)).status, 404);
    assert.equal((await rest('GET', `${ROOT}/e/ts`)).status, 200);

    // --require-auth: only "Bearer owner" is let in; the official client sends it.
    const strict = await startEmulator(['--require-auth']);
    res = await fetch(`${strict.base}/v1/${ROOT}/a/b`);
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.status, 'UNAUTHENTICATED');
    res = await fetch(`${strict.base}/v1/${ROOT}/a/b`, { headers: { Authorization: 'Bearer someone' } });
    assert.equal(res.status, 403);
    const sdb = client(strict.port);
    await sdb.doc('a/b').set({ ok: true });
    assert.equal((await sdb.doc('a/b').get()).get('ok'), true);
    await sdb.terminate();
    strict.proc.kill('SIGTERM');
  });
});

describe('fault injection API', () => {
  test('stats count requests, commits and written documents', async () => {
    let r = await admin('POST', '/admin/stats/reset');
    assert.equal(r.json.requests, 0);
    await db.doc('st/1').set({ a: 1 });
    await db.doc('st/1').get();
    r = await admin('GET', '/admin/stats');
    assert.equal(r.json.commits, 1);
    assert.equal(r.json.documents_written, 1);
    assert.equal(r.json.rpcs.commit, 1);
    assert.equal(r.json.rpcs.batchGet, 1);
    assert.equal(r.json.methods.POST, 2);
    r = await admin('POST', '/admin/faults', { latency_ms: -1 });
    assert.equal(r.status, 400);
    r = await admin('POST', '/admin/faults', { bogus: 1 });
    assert.equal(r.status, 400);
  });

  test('latency is observed', async () => {
    await admin('POST', '/admin/faults', { latency_ms: 300 });
    const t0 = Date.now();
    await db.doc('st/1').get();
    const took = Date.now() - t0;
    await admin('POST', '/admin/faults', { latency_ms: 0 });
    assert.ok(took >= 290, `took ${took} ms`);
  });

  test('a 503 then success is retried by the client; 429 by the calls that retry it', async () => {
    await admin('POST', '/admin/stats/reset');
    let r = await admin('POST', '/admin/faults', { fail: { status: 503, count: 1, path_regex: ':commit$' } });
    assert.deepEqual(r.json.fail, { status: 503, count: 1, path_regex: ':commit$' });
    await db.doc('st/2').set({ b: 2 });
    r = await admin('GET', '/admin/stats');
    assert.equal(r.json.rpcs.commit, 1); // the failed attempt was answered before reaching the API
    assert.equal(r.json.faults.failed, 1);
    assert.equal(r.json.requests, 2);
    // The client's retry codes (firestore_client_config.json): Commit retries RESOURCE_EXHAUSTED and
    // UNAVAILABLE, BatchGetDocuments UNAVAILABLE but not RESOURCE_EXHAUSTED.
    await admin('POST', '/admin/faults', { fail: { status: 429, count: 2, path_regex: ':commit$' } });
    await db.doc('st/2').set({ b: 3 });
    await admin('POST', '/admin/faults', { fail: { status: 503, count: 2, path_regex: ':batchGet$' } });
    assert.equal((await db.doc('st/2').get()).get('b'), 3);
    r = await admin('GET', '/admin/faults');
    assert.equal(r.json.fail, null);
    await admin('POST', '/admin/faults', { fail: { status: 429, count: 1, path_regex: ':batchGet$' } });
    await assert.rejects(db.doc('st/2').get(), (e) => e.code === 8);
    // WriteBatch.commit also retries ABORTED (409); a non-retryable status reaches the caller.
    await admin('POST', '/admin/faults', { fail: { status: 409, count: 1 } });
    await db.doc('st/3').set({ c: 1 });
    await admin('POST', '/admin/faults', { fail: { status: 400, count: 1 } });
    await assert.rejects(db.doc('st/3').set({}), (e) => e.code === 3);
    assert.equal((await db.doc('st/3').get()).get('c'), 1);
  });

  test('reset, truncate and outage break the connection', async () => {
    const url = `${emu.base}/v1/${ROOT}/st/1`;
    await admin('POST', '/admin/faults', { reset: 1 });
    await assert.rejects(fetch(url));
    assert.equal((await fetch(url)).status, 200);
    await admin('POST', '/admin/faults', { truncate: 1 });
    await assert.rejects(async () => JSON.parse(await (await fetch(url)).text()));
    assert.equal((await fetch(url)).status, 200);
    await admin('POST', '/admin/faults', { outage: true });
    await assert.rejects(fetch(url));
    await assert.rejects(fetch(url));
    assert.equal((await admin('GET', '/admin/faults')).json.outage, true);
    await admin('POST', '/admin/faults', { outage: false });
    assert.equal((await fetch(url)).status, 200);
    const st = (await admin('GET', '/admin/stats')).json;
    assert.ok(st.faults.reset >= 1 && st.faults.truncated >= 1 && st.faults.outage >= 2);
    await admin('DELETE', '/admin/faults');
  });
});
