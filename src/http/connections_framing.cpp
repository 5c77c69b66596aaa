// SPDX-License-Identifier: LGPL-2.1-or-later
// Requests sluice answers on the raw connection: bodies that could be framed two ways (request smuggling), and
// the lingering close that makes sure the client reads the answer.
#include "http/connections_internal.h"

#include "http/log.h"

#include <gio/gio.h>

#include <cstdlib>
#include <vector>

namespace sluice::http {

using namespace detail;

namespace {

std::string lower_trimmed(const std::string &s) {
  std::size_t b = 0, e = s.size();
  while (b < e && g_ascii_isspace(s[b]))
    ++b;
  while (e > b && g_ascii_isspace(s[e - 1]))
    --e;
  std::string out = s.substr(b, e - b);
  for (auto &ch : out)
    ch = g_ascii_tolower(ch);
  return out;
}

// The response as libsoup would write it, with "Connection: close" and its Content-Length.
std::string serialize_response(SoupServerMessage *msg) {
  guint status = soup_server_message_get_status(msg);
  const char *reason = soup_server_message_get_reason_phrase(msg);
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + (reason ? reason : soup_status_get_phrase(status)) + "\r\n";
  soup_message_headers_foreach(
      soup_server_message_get_response_headers(msg),
      [](const char *name, const char *value, gpointer data) {
        for (const char *skip : {"Content-Length", "Transfer-Encoding", "Connection"})
          if (g_ascii_strcasecmp(name, skip) == 0)
            return;
        auto *o = static_cast<std::string *>(data);
        *o += name;
        *o += ": ";
        *o += value;
        *o += "\r\n";
      },
      &out);
  g_autoptr(GBytes) body = soup_message_body_flatten(soup_server_message_get_response_body(msg));
  gsize len = 0;
  auto data = static_cast<const char *>(g_bytes_get_data(body, &len));
  out += "Content-Length: " + std::to_string(len) + "\r\nConnection: close\r\n\r\n";
  if (g_strcmp0(soup_server_message_get_method(msg), "HEAD") != 0 && len > 0)
    out.append(data, len);
  return out;
}

} // namespace

// -- answering and closing ourselves

void Connections::Impl::linger(ClientConnection *c, const std::string &response) {
  enter(c, ConnPhase::Lingering);
  g_autoptr(GError) err = nullptr;
  // An answer this small fits in the socket's buffer; a client that reads nothing may lose it.
  if (g_socket_send_with_blocking(c->socket, response.data(), response.size(), FALSE, nullptr, &err) < 0)
    SLUICE_LOG(http_log(), Debug, "%s: cannot send the answer: %s", c->client.c_str(), err->message);
  g_socket_shutdown(c->socket, FALSE, TRUE, nullptr);
  if (lingering >= kMaxLingering) {
    drop(c);
    return;
  }
  ++lingering;
  c->drain = g_socket_create_source(c->socket, GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR), nullptr);
  g_source_set_callback(c->drain, G_SOURCE_FUNC(on_drain), c, nullptr);
  g_source_attach(c->drain, g_main_context_get_thread_default());
}

gboolean Connections::Impl::on_drain(GSocket *s, GIOCondition, gpointer data) {
  auto *c = static_cast<ClientConnection *>(data);
  char buf[16384];
  for (int i = 0; i < 16; ++i) {
    g_autoptr(GError) err = nullptr;
    gssize n = g_socket_receive_with_blocking(s, buf, sizeof buf, FALSE, nullptr, &err);
    if (n > 0) {
      c->drained += static_cast<std::size_t>(n);
      if (c->drained <= kMaxLingerBytes)
        continue;
    } else if (n < 0 && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
      return G_SOURCE_CONTINUE;
    }
    c->owner->drop(c);
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

void Connections::Impl::answer_and_close(SoupServerMessage *msg) {
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
  auto it = by_remote.find(soup_server_message_get_remote_address(msg));
  if (it == by_remote.end() || it->second->closed || !it->second->in_soup || it->second->msg != msg)
    return; // libsoup answers after reading the body, then closes
  ClientConnection *c = it->second;
  std::string response = serialize_response(msg);
  SLUICE_LOG(http_log(), Info, "%s: %s %s -> %u, connection closed", c->client.c_str(),
             soup_server_message_get_method(msg), g_uri_get_path(soup_server_message_get_uri(msg)),
             soup_server_message_get_status(msg));
  c->in_soup = false;
  take_from_soup(msg);
  linger(c, response);
}

// ---------------------------------------------------------------------------------------------

std::string ambiguous_framing(SoupMessageHeaders *request_headers) {
  struct Found {
    std::vector<std::string> lengths, codings;
  } found;
  soup_message_headers_foreach(
      request_headers,
      [](const char *name, const char *value, gpointer data) {
        auto *f = static_cast<Found *>(data);
        std::vector<std::string> *into = nullptr;
        if (g_ascii_strcasecmp(name, "Content-Length") == 0)
          into = &f->lengths;
        else if (g_ascii_strcasecmp(name, "Transfer-Encoding") == 0)
          into = &f->codings;
        if (!into)
          return;
        g_auto(GStrv) parts = g_strsplit(value, ",", -1);
        for (gchar **p = parts; *p; ++p)
          into->push_back(lower_trimmed(*p));
      },
      &found);
  if (!found.codings.empty()) {
    if (!found.lengths.empty())
      return "a request may not have both Content-Length and Transfer-Encoding";
    if (found.codings.size() != 1 || found.codings[0] != "chunked") {
      std::string list;
      for (const auto &c : found.codings)
        list += (list.empty() ? "" : ", ") + c;
      return "Transfer-Encoding '" + list + "' is not supported: only chunked is";
    }
    return "";
  }
  const std::string *first = nullptr;
  for (const auto &l : found.lengths) {
    if (l.empty() || l.size() > 18 || l.find_first_not_of("0123456789") != std::string::npos)
      return "Content-Length '" + l + "' is not a number";
    if (first && std::strtoull(l.c_str(), nullptr, 10) != std::strtoull(first->c_str(), nullptr, 10))
      return "Content-Length headers disagree (" + *first + ", " + l + ")";
    first = &l;
  }
  return "";
}

} // namespace sluice::http
