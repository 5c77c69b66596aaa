// SPDX-License-Identifier: LGPL-2.1-or-later
// Starts s3rver (the S3 test double) on 127.0.0.1 and a free port, keeping its objects in the folder given as the
// first argument, with the buckets named after the next ones; prints "port N" once it listens, and stops when its standard
// input closes (the test that started it ended) or on SIGTERM. It aborts multipart uploads, which s3rver itself does not.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const S3rver = require('s3rver');

const [directory, ...buckets] = process.argv.slice(2);
if (!directory) {
  console.error('usage: node server.mjs DIRECTORY [BUCKET...]');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
// AbortMultipartUpload, which s3rver 3.7 answers 405: the upload's folder (its parts) goes, as S3 drops the parts.
server.middleware.unshift(async (ctx, next) => {
  const m = /^\/([^/]+)\/.+$/.exec(ctx.path);
  const id = ctx.query.uploadId;
  if (ctx.method !== 'DELETE' || !m || typeof id !== 'string') return next();
  if (!/^[0-9a-f]+$/.test(id)) {
    ctx.status = 400;
    return;
  }
  const folder = path.join(directory, m[1], '._S3rver_uploads', id);
  if (!fs.existsSync(folder)) {
    ctx.status = 404;
    ctx.type = 'application/xml';
    ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code></Error>';
    return;
  }
  fs.rmSync(folder, { recursive: true, force: true });
  ctx.status = 204;
});

const { port } = await server.run();
process.stdout.write(`port ${port}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
