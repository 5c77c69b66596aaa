// SPDX-License-Identifier: LGPL-2.1-or-later
// Presigned GET URLs (query-string SigV4, which libcurl cannot make) with GLib's HMAC-SHA256, and S3's XML.
#include "storage/s3_internal.h"

#include "core/error.h"

#include <glib.h>

#include <array>
#include <memory>

namespace sluice::storage::s3 {

namespace {

using Digest = std::array<guint8, 32>;

Digest hmac_sha256(const guint8 *key, std::size_t key_size, std::string_view data) {
  std::unique_ptr<GHmac, decltype(&g_hmac_unref)> h(g_hmac_new(G_CHECKSUM_SHA256, key, key_size), &g_hmac_unref);
  g_hmac_update(h.get(), reinterpret_cast<const guchar *>(data.data()), static_cast<gssize>(data.size()));
  Digest out{};
  gsize len = out.size();
  g_hmac_get_digest(h.get(), out.data(), &len);
  return out;
}

std::string hex(const Digest &d) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (guint8 b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string utc(std::time_t t, const char *format) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

} // namespace

std::string presign_query(const Credentials &credentials, const std::string &host, const std::string &canonical_path,
                          std::int64_t ttl_seconds, std::time_t now) {
  // AWS: "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)".
  const std::string date = utc(now, "%Y%m%d");
  const std::string timestamp = utc(now, "%Y%m%dT%H%M%SZ");
  const std::string scope = date + "/" + credentials.region + "/s3/aws4_request";
  const std::string query = canonical_query({
      {"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
      {"X-Amz-Credential", credentials.access_key + "/" + scope},
      {"X-Amz-Date", timestamp},
      {"X-Amz-Expires", std::to_string(ttl_seconds)},
      {"X-Amz-SignedHeaders", "host"},
  });
  const std::string canonical_request =
      "GET\n" + canonical_path + "\n" + query + "\nhost:" + host + "\n\nhost\nUNSIGNED-PAYLOAD";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + timestamp + "\n" + scope + "\n" + sha256_hex(canonical_request);

  const std::string secret = "AWS4" + credentials.secret_key;
  Digest key = hmac_sha256(reinterpret_cast<const guint8 *>(secret.data()), secret.size(), date);
  for (std::string_view part :
       {std::string_view(credentials.region), std::string_view("s3"), std::string_view("aws4_request")})
    key = hmac_sha256(key.data(), key.size(), part);
  Digest signature = hmac_sha256(key.data(), key.size(), string_to_sign);
  return query + "&X-Amz-Signature=" + hex(signature);
}

const XmlNode *XmlNode::child(std::string_view child_name) const {
  for (const auto &c : children)
    if (c.name == child_name)
      return &c;
  return nullptr;
}

std::string XmlNode::child_text(std::string_view child_name) const {
  const XmlNode *c = child(child_name);
  return c ? c->text : std::string();
}

namespace {

struct XmlBuilder {
  XmlNode root;
  std::vector<XmlNode *> open; // the path of elements being read
};

void on_start(GMarkupParseContext *, const gchar *name, const gchar **, const gchar **, gpointer user, GError **) {
  auto *b = static_cast<XmlBuilder *>(user);
  if (b->open.empty()) {
    b->root.name = name;
    b->open.push_back(&b->root);
    return;
  }
  XmlNode *parent = b->open.back();
  parent->children.push_back(XmlNode{name, {}, {}});
  b->open.push_back(&parent->children.back());
}

void on_end(GMarkupParseContext *, const gchar *, gpointer user, GError **) {
  static_cast<XmlBuilder *>(user)->open.pop_back();
}

void on_text(GMarkupParseContext *, const gchar *text, gsize len, gpointer user, GError **) {
  auto *b = static_cast<XmlBuilder *>(user);
  if (!b->open.empty())
    b->open.back()->text.append(text, len);
}

} // namespace

XmlNode parse_xml(std::string_view xml) {
  // GMarkup takes no XML declaration or processing instruction before the root: skip them.
  std::string_view body = xml;
  while (true) {
    auto lt = body.find('<');
    if (lt == std::string_view::npos || body.compare(lt, 2, "<?") != 0)
      break;
    auto end = body.find("?>", lt);
    if (end == std::string_view::npos)
      break;
    body.remove_prefix(end + 2);
  }
  GMarkupParser parser{};
  parser.start_element = on_start;
  parser.end_element = on_end;
  parser.text = on_text;
  XmlBuilder builder;
  std::unique_ptr<GMarkupParseContext, decltype(&g_markup_parse_context_free)> ctx(
      g_markup_parse_context_new(&parser, G_MARKUP_PREFIX_ERROR_POSITION, &builder, nullptr),
      &g_markup_parse_context_free);
  GError *err = nullptr;
  if (!g_markup_parse_context_parse(ctx.get(), body.data(), static_cast<gssize>(body.size()), &err) ||
      !g_markup_parse_context_end_parse(ctx.get(), &err))
    throw Error::from_gerror(ErrorCode::Unavailable, "object storage answered malformed XML", err);
  if (builder.root.name.empty())
    throw Error(ErrorCode::Unavailable, "object storage answered no XML document");
  return std::move(builder.root);
}

std::string xml_escape(std::string_view s) {
  std::unique_ptr<gchar, decltype(&g_free)> e(g_markup_escape_text(s.data(), static_cast<gssize>(s.size())), &g_free);
  return e.get();
}

} // namespace sluice::storage::s3
