// SPDX-License-Identifier: LGPL-2.1-or-later
// The tus client of `tools/bench upload --tus`: uploads one file to a sluice server with tus-js-client (from
// tests/tus/node_modules), in PATCHes of --chunk-mib, with --parallel parts joined by concatenation, and prints
// one JSON line: {"seconds", "bytes", "mib_s", "video_id"}. With --raw URL it sends the file as one raw body instead
// (POST, Content-Length, with Node's http like tus-js-client): the same client's baseline.
//
//   node tools/bench-tus.mjs --endpoint http://127.0.0.1:8080/api/v1/uploads --file F [--chunk-mib 8] [--parallel 1]
//                            [--key KEY]
//   node tools/bench-tus.mjs --raw http://127.0.0.1:8080/api/v1/videos --file F [--key KEY]

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(HERE, '..', 'tests', 'tus', 'package.json'));
let tus;
try {
  tus = require('tus-js-client');
} catch (e) {
  console.error('bench-tus: tus-js-client is not installed in tests/tus (run tools/setup): ' + e.message);
  process.exit(2);
}

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const file = args.file;
const size = fs.statSync(file).size;
const parallel = Number(args.parallel || 1);
const chunkSize = Number(args['chunk-mib'] || 8) * 1024 * 1024;
const headers = args.key ? { Authorization: 'Bearer ' + args.key } : {};

// One raw body (POST /api/v1/videos) with Node's http, as tus-js-client sends its PATCHes; the video's id.
function rawUpload(url) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'video/mp2t', 'Content-Length': size },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 201) return reject(new Error(`raw upload answered ${res.statusCode}: ${text}`));
        resolve(JSON.parse(text).video?.id || null);
      });
    });
    fs.createReadStream(file).pipe(req);
  });
}

// One resumable upload with tus-js-client; the video's id (Sluice-Video-Id of the last answer).
function tusUpload() {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(fs.createReadStream(file), {
      endpoint: args.endpoint,
      chunkSize,
      parallelUploads: parallel,
      ...(parallel > 1 ? {} : { uploadSize: size }),
      headers,
      metadata: { filename: path.basename(file) },
      retryDelays: null,
      storeFingerprintForResuming: false,
      onError: reject,
      onSuccess: (payload) => {
        const res = payload && payload.lastResponse;
        resolve(res ? res.getHeader('Sluice-Video-Id') || null : null);
      },
    });
    upload.start();
  });
}

const started = process.hrtime.bigint();
const videoId = await (args.raw ? rawUpload(args.raw) : tusUpload());
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ seconds, bytes: size, mib_s: size / 2 ** 20 / seconds, video_id: videoId }));
