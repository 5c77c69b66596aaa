// SPDX-License-Identifier: LGPL-2.1-or-later
// The web page: its HTML, scripts, styles and player libraries; the API's description and reference page.
#include "core/fs.h"
#include "http/files.h"
#include "http/respond.h"
#include "http/routes.h"
#include "sluice-config.h"

namespace sluice::http::handlers {

namespace {

// The API's description: installed beside the page's files (meson.build); a source tree keeps it in docs/.
std::optional<std::string> api_document(const std::string &web_root) {
  if (auto installed = fs::resolve_under(web_root, {"openapi.json"}))
    return installed;
  return fs::resolve_under(SLUICE_SOURCE_DATA_DIR "/../docs", {"openapi.json"});
}

} // namespace

void web(Context &cx, Request &rq) {
  SoupServerMessage *msg = rq.msg;
  const std::string &path = rq.path;
  const std::string &web_root = cx.web_root;
  // "/" is the page; "/web/..." its scripts, styles and the player library installed by npm
  // (data/web/node_modules). Revalidated on every load (ETag), so an upgrade shows at once.
  // "/docs/api" is the API reference page (Swagger UI, data/web/reference.html).
  const bool reference = path == "/docs/api";
  std::string rest = path.rfind("/web/", 0) == 0 ? path.substr(5) : reference ? "reference.html" : "index.html";
  auto segments = split_path(rest);
  std::optional<std::string> file;
  if (path == "/api/v1/openapi.json")
    file = api_document(web_root);
  else if (segments && !segments->empty())
    file = fs::resolve_under(web_root, *segments);
  if (!file) {
    if (path == "/" || path == "/index.html")
      return set_error(msg, SOUP_STATUS_NOT_FOUND, "not_found",
                       "the web page is not installed here (" + web_root + "/index.html); the API is under /api/v1");
    return set_not_found(msg, "no such file");
  }
  ServeOptions opts;
  opts.cache_control = "no-cache";
  opts.cache = &cx.files;
  try {
    serve_file(msg, *file, opts);
  } catch (const Error &e) {
    if (e.code() == ErrorCode::NotFound)
      return set_not_found(msg, "no such file");
    throw;
  }
  SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
  soup_message_headers_replace(h, "X-Content-Type-Options", "nosniff");
  // Swagger UI styles its elements inline (style attributes and <style>), hence 'unsafe-inline' for styles there
  // alone; its scripts are files of this server's, like the page's.
  if (reference)
    soup_message_headers_replace(h, "Content-Security-Policy",
                                 "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                 "script-src 'self'");
  else if (g_str_has_suffix(file->c_str(), ".html"))
    soup_message_headers_replace(h, "Content-Security-Policy",
                                 "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' "
                                 "data: blob:; style-src 'self'; script-src 'self'");
}

} // namespace sluice::http::handlers
