// SPDX-License-Identifier: LGPL-2.1-or-later
// tus's Upload-Metadata (key base64 pairs), the metadata sluice reads from it, and the checksum algorithms.
#include "app/uploads.h"

#include "core/json.h"

namespace sluice::app {

namespace {

constexpr std::size_t kMaxMetadataHeader = 16 * 1024;

Failure refused(Refusal r, std::string message, std::string field = "") {
  return Failure{r, std::move(message), std::move(field)};
}

bool base64_text(const std::string &v) {
  if (v.size() % 4 != 0)
    return false;
  for (std::size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    bool pad = c == '=' && i + 2 >= v.size() && (i + 1 == v.size() || v[i + 1] == '=');
    if (!g_ascii_isalnum(c) && c != '+' && c != '/' && !pad)
      return false;
  }
  return true;
}

} // namespace

std::optional<std::map<std::string, std::string>> parse_tus_metadata(const std::string &header) {
  std::map<std::string, std::string> out;
  if (header.size() > kMaxMetadataHeader)
    return std::nullopt;
  std::size_t i = 0;
  while (i <= header.size()) {
    std::size_t j = header.find(',', i);
    if (j == std::string::npos)
      j = header.size();
    std::string pair = header.substr(i, j - i);
    i = j + 1;
    while (!pair.empty() && pair.front() == ' ')
      pair.erase(0, 1);
    while (!pair.empty() && pair.back() == ' ')
      pair.pop_back();
    if (pair.empty()) {
      if (header.find_first_not_of(' ') == std::string::npos)
        break; // an empty header: no metadata
      return std::nullopt;
    }
    auto space = pair.find(' ');
    std::string key = pair.substr(0, space);
    std::string value = space == std::string::npos ? "" : pair.substr(space + 1);
    for (char c : key)
      if (!g_ascii_isgraph(c))
        return std::nullopt;
    if (out.count(key) || !base64_text(value))
      return std::nullopt;
    gsize len = 0;
    g_autofree guchar *raw = value.empty() ? nullptr : g_base64_decode(value.c_str(), &len);
    std::string text(reinterpret_cast<const char *>(raw ? raw : reinterpret_cast<const guchar *>("")), len);
    if (text.find('\0') != std::string::npos ||
        !g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr))
      return std::nullopt;
    out.emplace(std::move(key), std::move(text));
    if (j == header.size())
      break;
  }
  return out;
}

std::string tus_metadata_header(const std::map<std::string, std::string> &keys) {
  std::string out;
  for (const auto &[k, v] : keys) {
    out += (out.empty() ? "" : ",") + k;
    if (!v.empty()) {
      g_autofree gchar *b64 = g_base64_encode(reinterpret_cast<const guchar *>(v.data()), v.size());
      out += std::string(" ") + b64;
    }
  }
  return out;
}

Result<Metadata> metadata_from(const std::map<std::string, std::string> &keys, std::string &filename) {
  auto get = [&](const char *k) {
    auto it = keys.find(k);
    return it == keys.end() ? std::string() : it->second;
  };
  Metadata m;
  filename = get("filename");
  if (filename.empty())
    filename = get("name"); // what some clients call it
  m.title = get("title");
  m.description = get("description");
  m.pipeline = get("pipeline");
  m.encoder = get("encoder");
  m.ladder = get("ladder");
  m.priority = get("priority");
  m.playback_policy = get("playback_policy");
  if (std::string params = get("params"); !params.empty()) {
    json::Limits limits;
    limits.max_depth = 2;
    auto bad = refused(Refusal::InvalidField,
                       "metadata 'params': expected a JSON object of strings, numbers or "
                       "booleans",
                       "params");
    if (json::check_limits(params, limits))
      return bad;
    try {
      json::Node root = json::parse(params, "metadata 'params'", limits);
      if (!JSON_NODE_HOLDS_OBJECT(root.get()))
        return bad;
      JsonObject *o = json_node_get_object(root.get());
      g_autoptr(GList) members = json_object_get_members(o);
      for (GList *l = members; l; l = l->next) {
        auto name = static_cast<const char *>(l->data);
        JsonNode *n = json_object_get_member(o, name);
        if (!JSON_NODE_HOLDS_VALUE(n))
          return bad;
        m.params[name] = json::scalar_text(n);
      }
    } catch (const Error &) {
      return bad;
    }
  }
  return m;
}

std::optional<GChecksumType> checksum_type(const std::string &name) {
  if (name == "sha1")
    return G_CHECKSUM_SHA1;
  if (name == "md5")
    return G_CHECKSUM_MD5;
  if (name == "sha256")
    return G_CHECKSUM_SHA256;
  return std::nullopt;
}

} // namespace sluice::app
