// SPDX-License-Identifier: LGPL-2.1-or-later
// The API reference page (/docs/api, reference.html): Swagger UI over the server's own description. A file, not an
// inline script, so that the page's Content-Security-Policy keeps script-src 'self'.
window.ui = SwaggerUIBundle({
  url: '/api/v1/openapi.json',
  dom_id: '#reference',
  deepLinking: true,
  // No call to the public validator service: the page works offline.
  validatorUrl: null,
});
