// SPDX-License-Identifier: LGPL-2.1-or-later
// Starts s3rver (the S3 test double) on 127.0.0.1 and a free port, keeping its objects in the folder given as the
// first argument, with the buckets named after the next ones; prints "port N" once it listens, and stops when its standard
// input closes (the test that started it ended) or on SIGTERM.
import { createRequire } from 'node:module';

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
const { port } = await server.run();
process.stdout.write(`port ${port}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
