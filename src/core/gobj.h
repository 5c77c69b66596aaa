// SPDX-License-Identifier: LGPL-2.1-or-later
// Small owning wrappers over GObject / GstObject / GstMiniObject references for class members.
#pragma once

#include <gst/gst.h>

#include <memory>

namespace sluice {

struct GObjectUnref {
  void operator()(gpointer p) const {
    if (p)
      g_object_unref(p);
  }
};
struct GstObjectUnref {
  void operator()(gpointer p) const {
    if (p)
      gst_object_unref(p);
  }
};
struct GFreeDeleter {
  void operator()(gpointer p) const { g_free(p); }
};

template <typename T> using GObjectPtr = std::unique_ptr<T, GObjectUnref>;
template <typename T> using GstPtr = std::unique_ptr<T, GstObjectUnref>;
using GCharPtr = std::unique_ptr<gchar, GFreeDeleter>;

// Wraps a freshly created element or bin, sinking its floating reference first.
template <typename T> GstPtr<T> adopt_floating(T *obj) {
  if (obj)
    gst_object_ref_sink(obj);
  return GstPtr<T>(obj);
}

} // namespace sluice
