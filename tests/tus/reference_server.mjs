// SPDX-License-Identifier: LGPL-2.1-or-later
// The reference tus server of tests/tus: @tus/server with @tus/file-store, as its own process (so that the
// tests can kill -9 it and start it again on the same folder and port, as they do with sluice).
//
//   node tests/tus/reference_server.mjs --dir DIR [--listen 127.0.0.1:0] [--expiry-ms N] [--max-size N]
//
// It serves the tus protocol under /api/v1/uploads (sluice's path), names uploads with 16 lower-case hex
// digits (sluice's ids), answers relative Locations (as sluice does), prints "serving on http://HOST:PORT"
// once it listens, and with --expiry-ms sweeps expired uploads every 250 ms (sluice sweeps them too).

import crypto from 'node:crypto';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

function args(argv) {
  const out = { listen: '127.0.0.1:0', dir: null, expiryMs: 0, maxSize: 0 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--dir') out.dir = v;
    else if (k === '--listen') out.listen = v;
    else if (k === '--expiry-ms') out.expiryMs = Number(v);
    else if (k === '--max-size') out.maxSize = Number(v);
    else throw new Error(`unknown option ${k}`);
  }
  if (!out.dir) throw new Error('--dir is required');
  return out;
}

const opts = args(process.argv.slice(2));
const datastore = new FileStore({ directory: opts.dir, expirationPeriodInMilliseconds: opts.expiryMs || undefined });
const tus = new Server({
  path: '/api/v1/uploads',
  datastore,
  relativeLocation: true,
  namingFunction: () => crypto.randomBytes(8).toString('hex'),
  ...(opts.maxSize > 0 ? { maxSize: opts.maxSize } : {}),
});

const colon = opts.listen.lastIndexOf(':');
const host = opts.listen.slice(0, colon);
const port = Number(opts.listen.slice(colon + 1));
const http = tus.listen({ host, port }, () => {
  const a = http.address();
  console.log(`serving on http://${a.address}:${a.port}/`);
});

if (opts.expiryMs > 0) {
  setInterval(() => {
    tus.cleanUpExpiredUploads().catch((e) => console.error(`sweep: ${e.message || e}`));
  }, 250);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => http.close(() => process.exit(0)));
}
