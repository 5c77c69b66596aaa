// SPDX-License-Identifier: LGPL-2.1-or-later
// The input stream libsoup reads a connection through: the socket's, holding back the end of an idle keep-alive.
#include "http/connections_internal.h"

// ---------------------------------------------------------------------------------------------
// The input side of a connection as libsoup reads it: the socket's, except that the end of a keep-alive
// connection between two requests is held back from libsoup. libsoup 3.2 waits for the next request
// with a message that has no completion callback; when that read fails, it drops the message and
// forgets the connection without closing it (soup_server_message_io_http1_finished). Held back, the
// message keeps waiting, and the connection is taken back and closed (ClientConnection::msg).

struct SluiceConnInput {
  GInputStream parent;
  GInputStream *base; // the socket's input stream
  sluice::http::ClientConnection *conn;
};

struct SluiceConnInputClass {
  GInputStreamClass parent_class;
};

GType sluice_conn_input_get_type();
static void sluice_conn_input_pollable_init(GPollableInputStreamInterface *iface);

G_DEFINE_TYPE_WITH_CODE(SluiceConnInput, sluice_conn_input, G_TYPE_INPUT_STREAM,
                        G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_INPUT_STREAM, sluice_conn_input_pollable_init))

static SluiceConnInput *conn_input(gpointer p) {
  return G_TYPE_CHECK_INSTANCE_CAST(p, sluice_conn_input_get_type(), SluiceConnInput);
}

static gssize conn_input_read(SluiceConnInput *self, void *buffer, gsize count, gboolean blocking,
                              GCancellable *cancellable, GError **error) {
  if (self->conn && self->conn->end_held) {
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "the client has left");
    return -1;
  }
  GError *err = nullptr;
  gssize n = g_pollable_stream_read(self->base, buffer, count, blocking, cancellable, &err);
  bool ended = count > 0 && (n == 0 || (n < 0 && !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) &&
                                        !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)));
  if (ended && self->conn && sluice::http::detail::hold_back_end(self->conn)) {
    g_clear_error(&err);
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "the client has left");
    return -1;
  }
  if (err)
    g_propagate_error(error, err);
  return n;
}

static gssize sluice_conn_input_read_fn(GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable,
                                        GError **error) {
  return conn_input_read(conn_input(stream), buffer, count, TRUE, cancellable, error);
}

static gboolean sluice_conn_input_close_fn(GInputStream *stream, GCancellable *, GError **) {
  SluiceConnInput *self = conn_input(stream);
  if (self->conn)
    sluice::http::detail::input_closed(self->conn);
  return TRUE;
}

static void sluice_conn_input_finalize(GObject *object) {
  g_clear_object(&conn_input(object)->base);
  G_OBJECT_CLASS(sluice_conn_input_parent_class)->finalize(object);
}

static void sluice_conn_input_init(SluiceConnInput *) {}

static void sluice_conn_input_class_init(SluiceConnInputClass *klass) {
  G_OBJECT_CLASS(klass)->finalize = sluice_conn_input_finalize;
  G_INPUT_STREAM_CLASS(klass)->read_fn = sluice_conn_input_read_fn;
  G_INPUT_STREAM_CLASS(klass)->close_fn = sluice_conn_input_close_fn;
}

static gboolean sluice_conn_input_is_readable(GPollableInputStream *stream) {
  SluiceConnInput *self = conn_input(stream);
  if (self->conn && self->conn->end_held)
    return FALSE;
  return g_pollable_input_stream_is_readable(G_POLLABLE_INPUT_STREAM(self->base));
}

static GSource *sluice_conn_input_create_source(GPollableInputStream *stream, GCancellable *cancellable) {
  SluiceConnInput *self = conn_input(stream);
  // Once the end is held back, libsoup's source never fires: the connection is closed before.
  g_autoptr(GSource) child = nullptr;
  if (!(self->conn && self->conn->end_held))
    child = g_pollable_input_stream_create_source(G_POLLABLE_INPUT_STREAM(self->base), cancellable);
  return g_pollable_source_new_full(stream, child, cancellable);
}

static gssize sluice_conn_input_read_nonblocking(GPollableInputStream *stream, void *buffer, gsize count,
                                                 GError **error) {
  return conn_input_read(conn_input(stream), buffer, count, FALSE, nullptr, error);
}

static void sluice_conn_input_pollable_init(GPollableInputStreamInterface *iface) {
  iface->is_readable = sluice_conn_input_is_readable;
  iface->create_source = sluice_conn_input_create_source;
  iface->read_nonblocking = sluice_conn_input_read_nonblocking;
}

// ---------------------------------------------------------------------------------------------

namespace sluice::http::detail {

SluiceConnInput *new_conn_input(GInputStream *base, ClientConnection *c) {
  SluiceConnInput *input = conn_input(g_object_new(sluice_conn_input_get_type(), nullptr));
  input->base = G_INPUT_STREAM(g_object_ref(base));
  input->conn = c;
  return input;
}

void forget_conn(SluiceConnInput *input) {
  input->conn = nullptr;
}

} // namespace sluice::http::detail
