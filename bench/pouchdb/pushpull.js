// Issue 17's push-then-pull workload on PouchDB, for comparison with
// BenchmarkSDKPushPull (e2e/sdk_pushpull_bench_test.go), run by `make bench`.
//
// One local PouchDB (LevelDB) writes RECORDS documents of 30 fields of 20
// bytes with bulkDocs in batches of 100, replicates them to a fresh
// express-pouchdb server (LevelDB) on loopback, then a fresh second local
// PouchDB replicates them all from the server. Every LevelDB write, on the
// devices and on the server, is forced durable (sync: true, an fsync per
// write batch), as Doorstep's are.
//
//	cd bench/pouchdb && npm install && node pushpull.js [records]
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const PouchDB = require('pouchdb');
const leveldown = require('leveldown');
const express = require('express');
const expressPouch = require('express-pouchdb');

const RECORDS = parseInt(process.argv[2] || process.env.RECORDS || '10000', 10);
const FIELDS = 30;
const BATCH = 100;

// durable wraps leveldown so that every write is synced to disk.
function durable(location) {
  const db = leveldown(location);
  const batch = db._batch.bind(db);
  const put = db._put.bind(db);
  const del = db._del.bind(db);
  db._batch = (ops, opts, cb) => batch(ops, Object.assign({}, opts, { sync: true }), cb);
  db._put = (k, v, opts, cb) => put(k, v, Object.assign({}, opts, { sync: true }), cb);
  db._del = (k, opts, cb) => del(k, Object.assign({}, opts, { sync: true }), cb);
  return db;
}

function pad(n, w) { return String(n).padStart(w, '0'); }

async function main() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pouch-bench-'));
  const Local = PouchDB.defaults({ prefix: path.join(root, 'dev-'), db: durable });
  const Server = PouchDB.defaults({ prefix: path.join(root, 'srv-'), db: durable });
  const app = express();
  app.use('/', expressPouch(Server, { mode: 'minimumForPouchDB', logPath: path.join(root, 'log.txt') }));
  const srv = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
  const remote = new PouchDB(`http://127.0.0.1:${srv.address().port}/bench`);

  const ann = new Local('ann');
  const value = 'v'.repeat(20 - 6);
  let t = process.hrtime.bigint();
  for (let n = 0; n < RECORDS; n += BATCH) {
    const docs = [];
    for (let r = n; r < n + BATCH; r++) {
      const doc = { _id: 'row' + pad(r, 6) };
      for (let f = 0; f < FIELDS; f++) doc['f' + pad(f, 2)] = pad(r, 6) + value;
      docs.push(doc);
    }
    const res = await ann.bulkDocs(docs);
    for (const x of res) if (x.error) throw new Error(JSON.stringify(x));
  }
  const write = Number(process.hrtime.bigint() - t) / 1e9;

  t = process.hrtime.bigint();
  const pushed = await ann.replicate.to(remote);
  const push = Number(process.hrtime.bigint() - t) / 1e9;
  if (pushed.docs_written !== RECORDS) throw new Error(`pushed ${pushed.docs_written} docs`);

  const bea = new Local('bea');
  t = process.hrtime.bigint();
  const pulled = await bea.replicate.from(remote);
  const pull = Number(process.hrtime.bigint() - t) / 1e9;
  if (pulled.docs_written !== RECORDS) throw new Error(`pulled ${pulled.docs_written} docs`);
  const info = await bea.info();
  if (info.doc_count !== RECORDS) throw new Error(`second device holds ${info.doc_count} docs`);

  const rate = (s) => Math.round(RECORDS / s);
  console.log(`PouchDB push-then-pull: ${RECORDS} records x ${FIELDS} fields of 20 B, batches of ${BATCH}, LevelDB sync writes`);
  console.log(`BenchmarkPouchDBPushPull\t1\t${rate(write)} write-rec/s\t${rate(push)} push-rec/s\t${rate(pull)} pull-rec/s\t${write.toFixed(2)} write-s\t${push.toFixed(2)} push-s\t${pull.toFixed(2)} pull-s`);
  await ann.close();
  await bea.close();
  srv.close();
  fs.rmSync(root, { recursive: true, force: true });
}

main().catch((e) => { console.error(e); process.exit(1); });
