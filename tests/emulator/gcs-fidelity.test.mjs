// Fidelity of scripts/gcs-emulator: Google's official Node client (@google-cloud/storage) and raw
// JSON API calls against it must see what real Cloud Storage gives.
// Needs `npm install --prefix scripts` (scripts/setup runs it).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import crypto from 'node:crypto';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const emulatorBin = process.env.GCS_EMULATOR_BIN || path.join(repo, 'scripts', 'gcs-emulator');
const scriptsRequire = createRequire(path.join(repo, 'scripts', 'package.json'));

let Storage;
let CRC32C;
try {
  ({ Storage, CRC32C } = scriptsRequire('@google-cloud/storage'));
} catch (e) {
  throw new Error(`@google-cloud/storage is not installed: run \`npm install --prefix scripts\` (${e.message})`);
}

const BUCKET = 'fidelity-bucket';
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
      const m = /^gcs-emulator listening on 127\.0\.0\.1:(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({ proc, port, base: `http://127.0.0.1:${port}` });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`emulator exited with ${code}: ${err}`)); });
  });
}

async function stopEmulator(e) {
  if (e.proc.exitCode !== null) return;
  const done = once(e.proc, 'exit');
  e.proc.kill('SIGTERM');
  await done;
}

const bytes = (n, seed) => {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 16;
  }
  return out;
};
const md5 = (b) => crypto.createHash('md5').update(b).digest('base64');
const crc32c = (b) => {
  const c = new CRC32C();
  c.update(b);
  return c.toString();
};

let emu;
let storage;
let bucket;

async function raw(method, p, { body, headers = {} } = {}) {
  const res = await fetch(`${emu.base}${p}`, { method, headers, body });
  const buf = Buffer.from(await res.arrayBuffer());
  let json = null;
  if ((res.headers.get('content-type') || '').startsWith('application/json') && buf.length) json = JSON.parse(buf.toString());
  return { status: res.status, headers: res.headers, body: buf, json };
}
const admin = async (method, p, body) => {
  const res = await fetch(`${emu.base}${p}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
};

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

before(async () => {
  emu = await startEmulator();
  storage = new Storage({ apiEndpoint: emu.base, projectId: 'test' });
  [bucket] = await storage.createBucket(BUCKET);
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});

describe('buckets', () => {
  test('create, get, exists, conflicts and bad names', async () => {
    const [meta] = await bucket.getMetadata();
    assert.equal(meta.name, BUCKET);
    assert.equal(meta.kind, 'storage#bucket');
    assert.equal(meta.storageClass, 'STANDARD');
    assert.deepEqual(await bucket.exists(), [true]);
    assert.deepEqual(await storage.bucket('no-such-bucket').exists(), [false]);
    await assert.rejects(storage.createBucket(BUCKET), (e) => e.code === 409);
    await assert.rejects(storage.createBucket('x'), (e) => e.code === 400);
    await assert.rejects(storage.bucket('no-such-bucket').file('a').download(), (e) => e.code === 404);
  });
});

const small = bytes(100000, 1);
const large = bytes(9 * 1024 * 1024 + 12345, 2);

describe('objects', () => {
  test('small upload (multipart) and its metadata', async () => {
    const f = bucket.file('dir/small.bin');
    await f.save(small, { resumable: false, contentType: 'application/octet-stream', metadata: { metadata: { k: 'v' } } });
    const [meta] = await f.getMetadata();
    assert.equal(meta.name, 'dir/small.bin');
    assert.equal(meta.bucket, BUCKET);
    assert.equal(meta.size, String(small.length)); // a string, as on GCS
    assert.equal(meta.md5Hash, md5(small));
    assert.match(meta.crc32c, /^[A-Za-z0-9+/]{6}==$/);
    assert.match(meta.generation, /^\d+$/);
    assert.equal(meta.metageneration, '1');
    assert.equal(meta.contentType, 'application/octet-stream');
    assert.deepEqual(meta.metadata, { k: 'v' });
    assert.match(meta.timeCreated, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(typeof meta.etag, 'string');
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.ok(stats.ops.upload_multipart >= 1);
  });

  test('whole and ranged downloads (client validates crc32c/md5 on whole ones)', async () => {
    const f = bucket.file('dir/small.bin');
    const [whole] = await f.download();
    assert.ok(whole.equals(small));
    const part = await readAll(f.createReadStream({ start: 1000, end: 4999 }));
    assert.ok(part.equals(small.subarray(1000, 5000)));
    const tail = await readAll(f.createReadStream({ start: small.length - 7 }));
    assert.ok(tail.equals(small.subarray(small.length - 7)));
  });

  test('raw media GET: 206 with Content-Range, x-goog headers, 416 past the end', async () => {
    const [meta] = await bucket.file('dir/small.bin').getMetadata();
    let r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`, { headers: { Range: 'bytes=10-19' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), `bytes 10-19/${small.length}`);
    assert.ok(r.body.equals(small.subarray(10, 20)));
    assert.equal(r.headers.get('x-goog-generation'), meta.generation);
    assert.equal(r.headers.get('x-goog-hash'), `crc32c=${meta.crc32c}, md5=${meta.md5Hash}`);
    r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`, { headers: { Range: `bytes=${small.length - 5}-${small.length + 100}` } });
    assert.equal(r.status, 206); // a range running over the end is cut at the end
    assert.equal(r.body.length, 5);
    r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`, { headers: { Range: `bytes=${small.length}-` } });
    assert.equal(r.status, 416);
    assert.equal(r.json.error.code, 416);
    r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), String(small.length));
    r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media&ifGenerationNotMatch=${meta.generation}`);
    assert.equal(r.status, 304);
    r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?ifGenerationMatch=1`);
    assert.equal(r.status, 412);
  });

  test('large upload through a resumable session (one streamed request)', async () => {
    const f = bucket.file('dir/large.bin');
    await admin('POST', '/admin/stats/reset');
    await f.save(large, { resumable: true });
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.equal(stats.ops.upload_resumable_start, 1);
    const [meta] = await f.getMetadata();
    assert.equal(meta.size, String(large.length));
    assert.equal(meta.md5Hash, md5(large));
    const [back] = await f.download();
    assert.ok(back.equals(large));
    const mid = await readAll(f.createReadStream({ start: 8 * 1024 * 1024 - 3, end: 8 * 1024 * 1024 + 2 }));
    assert.ok(mid.equals(large.subarray(8 * 1024 * 1024 - 3, 8 * 1024 * 1024 + 3)));
  });

  test('resumable upload in 1 MiB chunks (308 + Range between them)', async () => {
    const f = bucket.file('dir/chunked.bin');
    await admin('POST', '/admin/stats/reset');
    const ws = f.createWriteStream({ resumable: true, chunkSize: 1024 * 1024 });
    const done = once(ws, 'finish');
    ws.end(large);
    await done;
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.equal(stats.ops.upload_chunk, 10);
    const [back] = await f.download();
    assert.ok(back.equals(large));
  });

  test('raw resumable session: chunk rules, status query, finish', async () => {
    const data = bytes(600 * 1024, 3);
    let r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&name=raw.bin&ifGenerationMatch=0`, {
      headers: { 'Content-Type': 'application/json', 'X-Upload-Content-Length': String(data.length) }, body: '{}',
    });
    assert.equal(r.status, 200);
    const loc = r.headers.get('location');
    assert.match(loc, /upload_id=/);
    r = await fetch(loc, { method: 'PUT', headers: { 'Content-Range': `bytes */${data.length}` } });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), null); // nothing stored yet
    // 300 KiB sent: only a whole 256 KiB is kept
    r = await fetch(loc, { method: 'PUT', headers: { 'Content-Range': `bytes 0-${300 * 1024 - 1}/${data.length}` }, body: data.subarray(0, 300 * 1024) });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), `bytes=0-${256 * 1024 - 1}`);
    r = await fetch(loc, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), `bytes=0-${256 * 1024 - 1}`);
    // a gap is refused
    r = await fetch(loc, { method: 'PUT', headers: { 'Content-Range': `bytes ${512 * 1024}-${data.length - 1}/${data.length}` }, body: data.subarray(512 * 1024) });
    assert.equal(r.status, 400);
    r = await fetch(loc, { method: 'PUT', headers: { 'Content-Range': `bytes ${256 * 1024}-${data.length - 1}/${data.length}` }, body: data.subarray(256 * 1024) });
    assert.equal(r.status, 200);
    const meta = await r.json();
    assert.equal(meta.size, String(data.length));
    assert.equal(meta.md5Hash, md5(data));
    const [back] = await bucket.file('raw.bin').download();
    assert.ok(back.equals(data));
    await bucket.file('raw.bin').delete();
  });

  test('ifGenerationMatch: 0 fails with 412 on an existing object, for both upload kinds', async () => {
    const f = bucket.file('dir/small.bin');
    await assert.rejects(f.save(Buffer.from('other'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
      (e) => e.code === 412);
    await assert.rejects(f.save(Buffer.from('other'), { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }),
      (e) => e.code === 412 || (e.errors && e.errors.some((x) => x.code === 412)) || /412|pre-?condition/i.test(e.message));
    const [whole] = await f.download();
    assert.ok(whole.equals(small)); // unchanged
    const g = bucket.file('dir/new.bin');
    await g.save(Buffer.from('new'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const [meta] = await g.getMetadata();
    await assert.rejects(g.delete({ ifGenerationMatch: Number(meta.generation) + 1 }), (e) => e.code === 412);
    const r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=dir%2Fnew.bin&ifGenerationNotMatch=${meta.generation}`, { body: 'x' });
    assert.equal(r.status, 412);
    assert.equal(r.json.error.errors[0].reason, 'conditionNotMet');
  });

  test('list with prefix, delimiter and paging', async () => {
    for (const n of ['list/a', 'list/b/1', 'list/b/2', 'list/c', 'list/d/x', 'other']) {
      await bucket.file(n).save(Buffer.from(n), { resumable: false });
    }
    let [files] = await bucket.getFiles({ prefix: 'list/' });
    assert.deepEqual(files.map((f) => f.name), ['list/a', 'list/b/1', 'list/b/2', 'list/c', 'list/d/x']);
    const [, , resp] = await bucket.getFiles({ prefix: 'list/', delimiter: '/', autoPaginate: false });
    assert.deepEqual(resp.items.map((i) => i.name), ['list/a', 'list/c']);
    assert.deepEqual(resp.prefixes, ['list/b/', 'list/d/']);
    // pages of 2 entries, items and prefixes counted together
    const seen = [];
    let query = { prefix: 'list/', delimiter: '/', maxResults: 2, autoPaginate: false };
    let pages = 0;
    while (query) {
      const [fs1, next, r] = await bucket.getFiles(query);
      pages++;
      seen.push(...fs1.map((f) => f.name), ...(r.prefixes || []));
      assert.ok(fs1.length + (r.prefixes || []).length <= 2);
      query = next;
    }
    assert.equal(pages, 2);
    assert.deepEqual(seen.sort(), ['list/a', 'list/b/', 'list/c', 'list/d/']);
    [files] = await bucket.getFiles({ prefix: 'nothing/' });
    assert.deepEqual(files, []);
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o?prefix=nothing%2F`);
    assert.deepEqual(r.json, { kind: 'storage#objects' }); // no items key when empty, as on GCS
  });

  test('delete and 404s', async () => {
    const f = bucket.file('list/a');
    await f.delete();
    assert.deepEqual(await f.exists(), [false]);
    await assert.rejects(f.delete(), (e) => e.code === 404);
    await assert.rejects(f.getMetadata(), (e) => e.code === 404);
    await assert.rejects(f.download(), (e) => e.code === 404);
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o/list%2Fa`);
    assert.equal(r.status, 404);
    assert.equal(r.json.error.code, 404);
    assert.equal(r.json.error.message, `No such object: ${BUCKET}/list/a`);
    assert.equal(r.json.error.errors[0].reason, 'notFound');
  });
});

// GCS checks the MD5/CRC32C a client sends with an upload (in the object resource, or X-Goog-Hash)
// and refuses a body that does not match them with 400; object resources report the checksums of
// the bytes stored, which the official client compares with its own after an upload.
describe('checksums', () => {
  const mismatch = (kind) => new RegExp(kind === 'md5'
    ? '^Provided MD5 hash "[^"]+" doesn\'t match calculated MD5 hash "[^"]+"\\.$'
    : '^Provided CRC32C "[^"]+" doesn\'t match calculated CRC32C "[^"]+"\\.$');
  const refused = (kind) => (e) => e.code === 400 && mismatch(kind).test(e.message);
  const data = bytes(300000, 7);
  const wrongCrc = crc32c(Buffer.from('other bytes'));
  const wrongMd5 = md5(Buffer.from('other bytes'));

  test('hashes sent in the metadata are checked: right ones kept, wrong ones refused', async () => {
    for (const resumable of [false, true]) {
      const f = bucket.file(`sums/right-${resumable}`);
      await f.save(data, { resumable, metadata: { md5Hash: md5(data), crc32c: crc32c(data) } });
      const [meta] = await f.getMetadata();
      assert.equal(meta.md5Hash, md5(data));
      assert.equal(meta.crc32c, crc32c(data));
      const g = bucket.file(`sums/wrong-${resumable}`);
      await assert.rejects(g.save(data, { resumable, metadata: { crc32c: wrongCrc } }), refused('crc32c'));
      await assert.rejects(g.save(data, { resumable, metadata: { md5Hash: wrongMd5 } }), refused('md5'));
      assert.deepEqual(await g.exists(), [false]);
    }
  });

  test('raw uploads: a wrong md5Hash in a multipart body, a wrong X-Goog-Hash on the last chunk', async () => {
    const boundary = 'b0undary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify({ name: 'sums/raw', md5Hash: wrongMd5, crc32c: crc32c(data) })}\r\n`
        + `--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\n`),
      data, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    let r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=multipart`, {
      headers: { 'Content-Type': `multipart/related; boundary=${boundary}` }, body,
    });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 400);
    assert.equal(r.json.error.errors[0].reason, 'invalid');
    assert.match(r.json.error.message, mismatch('md5'));
    r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&name=sums%2Fraw`, {
      headers: { 'Content-Type': 'application/json' }, body: '{}',
    });
    const loc = r.headers.get('location');
    r = await raw('PUT', loc.slice(emu.base.length), {
      headers: { 'Content-Range': `bytes 0-${data.length - 1}/${data.length}`, 'X-Goog-Hash': `crc32c=${wrongCrc}` }, body: data,
    });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, mismatch('crc32c'));
    assert.deepEqual(await bucket.file('sums/raw').exists(), [false]);
  });

  test('a body damaged on the way: refused when hashes were sent, else caught by the client', async () => {
    await admin('POST', '/admin/stats/reset');
    for (const resumable of [false, true]) {
      // with hashes: the server refuses it
      await admin('POST', '/admin/faults', { mode: 'corrupt', upload: 'transit', count: 1 });
      const f = bucket.file(`sums/transit-${resumable}`);
      await assert.rejects(f.save(data, { resumable, metadata: { crc32c: crc32c(data) } }), refused('crc32c'));
      assert.deepEqual(await f.exists(), [false]);
      // without: stored, but the resource reports the damaged bytes' checksums, which the
      // official client compares with its own, then deletes the object
      await admin('POST', '/admin/faults', { mode: 'corrupt', upload: 'transit', count: 1 });
      await assert.rejects(f.save(data, { resumable }), (e) => e.code === 'FILE_NO_UPLOAD');
      assert.deepEqual(await f.exists(), [false]);
    }
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.equal(stats.faults.corrupt, 4);
    assert.deepEqual((await admin('GET', '/admin/faults')).json, []);
  });

  test('"stored" damage happens after the check: the resource shows it, the client catches it', async () => {
    await admin('POST', '/admin/faults', { mode: 'corrupt', upload: 'stored', count: 1 });
    const f = bucket.file('sums/stored');
    await assert.rejects(f.save(data, { resumable: false, metadata: { crc32c: crc32c(data) } }),
      (e) => e.code === 'FILE_NO_UPLOAD');
    // a download of a damaged object is self-consistent: the client's check passes
    await admin('POST', '/admin/faults', { mode: 'corrupt', upload: 'stored', count: 1 });
    const r = await raw('POST', `/upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=sums%2Fstored`, { body: data });
    assert.equal(r.status, 200);
    assert.notEqual(r.json.crc32c, crc32c(data));
    const [back] = await f.download();
    assert.equal(crc32c(back), r.json.crc32c);
    assert.ok(!back.equals(data));
    await f.delete();
  });
});

describe('admin faults', () => {
  test('bad fault specs are refused', async () => {
    assert.equal((await admin('POST', '/admin/faults', { mode: 'nope' })).status, 400);
    assert.equal((await admin('POST', '/admin/faults', { mode: 'status', code: 200 })).status, 400);
    assert.equal((await admin('POST', '/admin/faults', { mode: 'reset', count: -1 })).status, 400);
    assert.equal((await admin('POST', '/admin/faults', { mode: 'corrupt', upload: 'later' })).status, 400);
    assert.equal((await admin('POST', '/admin/faults', { mode: 'status', upload: 'transit' })).status, 400);
    assert.deepEqual((await admin('GET', '/admin/faults')).json, []);
  });

  test('the client retries an injected 503 on a read', async () => {
    // With a custom endpoint the client turns automatic retries off unless asked.
    const retrying = new Storage({ apiEndpoint: emu.base, projectId: 'test', retryOptions: { autoRetry: true, maxRetries: 3 } });
    await admin('POST', '/admin/stats/reset');
    await admin('POST', '/admin/faults', { mode: 'status', code: 503, count: 1 });
    const [meta] = await retrying.bucket(BUCKET).file('dir/small.bin').getMetadata();
    assert.equal(meta.name, 'dir/small.bin');
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.equal(stats.faults.status, 1);
    assert.equal(stats.ops.object_get, 1);
    assert.equal(stats.requests, 2);
  });

  test('truncate and corrupt apply to media bodies only', async () => {
    await admin('POST', '/admin/faults', { mode: 'truncate', count: 1 });
    // metadata requests pass untouched
    await bucket.file('dir/small.bin').getMetadata();
    const url = `${emu.base}/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`;
    await assert.rejects(fetch(url).then((r) => r.arrayBuffer()));
    // unframed: no Content-Length, the connection closes after half the body
    await admin('POST', '/admin/faults', { mode: 'truncate', count: 1, unframed: true });
    const u = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`, { headers: { Range: 'bytes=0-999' } });
    assert.equal(u.status, 206);
    assert.equal(u.headers.get('content-length'), null);
    assert.equal(u.headers.get('content-range'), `bytes 0-999/${small.length}`);
    assert.ok(u.body.equals(small.subarray(0, 500)));
    await admin('POST', '/admin/faults', { mode: 'corrupt', count: 1 });
    const r = await raw('GET', `/storage/v1/b/${BUCKET}/o/dir%2Fsmall.bin?alt=media`);
    assert.equal(r.body.length, small.length);
    assert.ok(!r.body.equals(small));
    // the official client notices a corrupt whole download by its checksum
    await admin('POST', '/admin/faults', { mode: 'corrupt', count: 1 });
    await assert.rejects(bucket.file('dir/small.bin').download(), (e) => /mismatch|CONTENT_DOWNLOAD_MISMATCH/i.test(`${e.code} ${e.message}`));
    const stats = (await admin('GET', '/admin/stats')).json;
    assert.equal(stats.faults.truncate, 2);
    assert.equal(stats.faults.corrupt, 2);
    assert.deepEqual((await admin('GET', '/admin/faults')).json, []);
  });
});

describe('--dir', () => {
  test('objects survive a restart', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gcs-emu-'));
    try {
      let e = await startEmulator(['--dir', dir]);
      let s = new Storage({ apiEndpoint: e.base, projectId: 'test' });
      const [b] = await s.createBucket('persist-bucket');
      await b.file('p/x').save(Buffer.from('kept'), { resumable: false });
      await stopEmulator(e);
      e = await startEmulator(['--dir', dir]);
      s = new Storage({ apiEndpoint: e.base, projectId: 'test' });
      const [back] = await s.bucket('persist-bucket').file('p/x').download();
      assert.equal(back.toString(), 'kept');
      await stopEmulator(e);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
