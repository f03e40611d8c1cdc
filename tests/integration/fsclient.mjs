// Google's official Firestore Node client (REST transport) for the integration tests: reads and writes
// the aletheia layout (README "Firestore") in FIRESTORE_EMULATOR_HOST's emulator, with typed values.
//   node fsclient.mjs dump PROJECT          every document of the database as {path: fields}
//   node fsclient.mjs write PROJECT < JSON  [{"path": "...", "data": {...}}, ...] in one batch
// Values are tagged so Python sees Firestore's own types: {"$int": "N"} (integerValue), {"$double": X}
// (doubleValue; "NaN"/"Infinity"/"-Infinity" as strings), {"$ts": [seconds, nanos]} (timestampValue, on
// input also {"$ts": "RFC 3339"}); booleans, strings, null, arrays and maps as JSON.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const scriptsRequire = createRequire(path.join(repo, 'scripts', 'package.json'));
const { Firestore, Timestamp } = scriptsRequire('@google-cloud/firestore');
const { OAuth2Client } = createRequire(scriptsRequire.resolve('google-gax'))('google-auth-library');

const [cmd, project] = process.argv.slice(2);
const host = process.env.FIRESTORE_EMULATOR_HOST;
if (!cmd || !project || !host) {
  console.error('usage: FIRESTORE_EMULATOR_HOST=H:P node fsclient.mjs dump|write PROJECT');
  process.exit(2);
}

// As in tests/emulator/fidelity.test.mjs: a fixed "owner" token (the REST transport asks for Google
// credentials even with an emulator) and Google's error bodies passed through to the client's retry rules.
// useBigInt keeps integers apart from doubles on reading.
const db = new Firestore({
  projectId: project, preferRest: true, host, ssl: false, useBigInt: true,
  authClient: new OAuth2Client({ credentials: { access_token: 'owner' }, transporterOptions: { validateStatus: () => true } }),
});

function tag(v) {
  if (typeof v === 'bigint') return { $int: v.toString() };
  if (typeof v === 'number') return { $double: Number.isFinite(v) ? v : String(v) };
  if (v instanceof Timestamp) return { $ts: [v.seconds, v.nanoseconds] };
  if (Array.isArray(v)) return v.map(tag);
  if (v !== null && typeof v === 'object') {
    if (v.constructor && v.constructor.name !== 'Object') throw new Error(`untagged type ${v.constructor.name}`);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tag(x)]));
  }
  return v;
}

function untag(v) {
  if (Array.isArray(v)) return v.map(untag);
  if (v !== null && typeof v === 'object') {
    if ('$int' in v) return BigInt(v.$int);
    if ('$double' in v) return Number(v.$double);
    if ('$ts' in v) return Array.isArray(v.$ts) ? new Timestamp(v.$ts[0], v.$ts[1]) : Timestamp.fromDate(new Date(v.$ts));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, untag(x)]));
  }
  return v;
}

async function dumpCollections(cols, out) {
  for (const col of cols) {
    const refs = await col.listDocuments();   // also documents that only have subcollections
    const snaps = refs.length ? await db.getAll(...refs) : [];
    for (const s of snaps) {
      if (s.exists) out[s.ref.path] = tag(s.data());
      await dumpCollections(await s.ref.listCollections(), out);
    }
  }
}

async function main() {
  if (cmd === 'dump') {
    const out = {};
    await dumpCollections(await db.listCollections(), out);
    process.stdout.write(JSON.stringify(out));
  } else if (cmd === 'write') {
    let input = '';
    for await (const chunk of process.stdin) input += chunk;
    const batch = db.batch();
    for (const { path: p, data } of JSON.parse(input)) batch.set(db.doc(p), untag(data));
    await batch.commit();
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
}

main().then(() => db.terminate()).catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
