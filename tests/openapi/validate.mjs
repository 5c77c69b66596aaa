// SPDX-License-Identifier: LGPL-2.1-or-later
// Checks docs/openapi.json (or the file named) against the OpenAPI 3.1 specification and its JSON Schema, with every
// $ref resolved, then every schema in it against JSON Schema 2020-12's meta-schema (swagger-parser leaves a 3.1
// document's schemas unchecked: a misspelt type would pass). Exits 77 (skipped) when this folder's node_modules is missing (tools/setup runs npm ci here).
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] || path.join(here, '..', '..', 'docs', 'openapi.json');

let SwaggerParser, Ajv2020;
try {
  ({ default: SwaggerParser } = await import('@apidevtools/swagger-parser'));
  ({ default: Ajv2020 } = await import('ajv/dist/2020.js'));
} catch {
  console.log('SKIP: @apidevtools/swagger-parser is not installed (npm ci in tests/openapi, or tools/setup)');
  process.exit(77);
}

// Every Schema Object of the document: components' and those inline in parameters, bodies and answers.
function schemas(node, at, out) {
  if (!node || typeof node !== 'object')
    return out;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'schema' || (at.endsWith('/components/schemas') && value && typeof value === 'object'))
      out.push([`${at}/${key}`, value]);
    else
      schemas(value, `${at}/${key}`, out);
  }
  return out;
}

try {
  const api = await SwaggerParser.validate(file);
  // validate() dereferenced the document; the meta-schema check needs no $ref, so it runs on that.
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  const found = schemas(api, '#', []);
  for (const [where, schema] of found) {
    if (!ajv.validateSchema(schema))
      throw new Error(`${where}: not a JSON Schema 2020-12 schema: ${ajv.errorsText(ajv.errors)}`);
  }
  const operations = Object.values(api.paths).flatMap((item) =>
    Object.keys(item).filter((k) => ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'].includes(k)));
  console.log(`${file}: valid OpenAPI ${api.openapi}, ${Object.keys(api.paths).length} paths, ${operations.length} operations, ${found.length} schemas`);
} catch (e) {
  console.error(`${file}: ${e.message}`);
  process.exit(1);
}
