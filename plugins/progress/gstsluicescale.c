/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sluice: a GStreamer pipeline server.
 *
 * sluicescale: a video scaler on libswscale, for the ladders of sluice's
 * transcoding pipelines.
 *
 * This library is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 */

/**
 * SECTION:element-sluicescale
 * @title: sluicescale
 *
 * sluicescale resizes raw video with libswscale, FFmpeg's scaler, whose
 * horizontal and vertical filters are vectorised. It does only that: the
 * format, the colorimetry and the chroma siting pass through unchanged, so a
 * conversion, where one is needed, goes before it (`videoconvert`). It does
 * not keep the display aspect ratio by itself either: the caps downstream
 * give the size, as a ladder's rungs do.
 *
 * #GstSluiceScale:method takes the names of videoconvertscale's methods and
 * maps each to the libswscale filter that computes the same kernel:
 * nearest-neighbour (point), bilinear (2-tap, swscale's fast bilinear),
 * bilinear2 (linear over the whole footprint), 4-tap (bicubic), lanczos
 * (Lanczos-3), sinc, spline, and the cubics hermite (B=0, C=0), catrom
 * (B=0, C=1/2) and mitchell (B=C=1/3). Luma and chroma get the same filter.
 * Interlaced frames are scaled as whole frames, as FFmpeg's scale filter does
 * by default. The output is byte for byte that of FFmpeg's scale filter with
 * the same flags.
 *
 * libswscale's SIMD filters read up to 16 bytes past the end of a row. The
 * element asks upstream and gives downstream buffers with 64 bytes of room
 * after the data, and reads an input frame without that room from a padded
 * copy (logged once at INFO).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=1920,height=1080 ! sluicescale method=lanczos ! video/x-raw,width=1280,height=720 ! fakesink
 * ]| Scales 60 frames of 1080p to 720p with a Lanczos-3 filter.
 */

#include "gstsluicescale.h"

#include <libswscale/swscale.h>

GST_DEBUG_CATEGORY_STATIC (gst_sluice_scale_debug);
#define GST_CAT_DEFAULT gst_sluice_scale_debug

#define SCALE_FORMATS "{ I420, Y42B, Y444, NV12, GRAY8 }"
#define DEFAULT_METHOD GST_SLUICE_SCALE_LANCZOS

/* libswscale's SIMD filters load up to 16 bytes past the last sample of a
 * row (valgrind saw 21 bytes past the end of an unpadded I420 frame 1281
 * pixels wide), as FFmpeg's own frames have 64 bytes of padding
 * (AV_INPUT_BUFFER_PADDING_SIZE). Inputs with less room after a plane's last
 * row are read from a padded copy; buffers asked for here get the room. */
#define READ_PADDING 64

enum
{
  PROP_0,
  PROP_METHOD,
};

struct _GstSluiceScale
{
  GstVideoFilter parent;

  GstSluiceScaleMethod method;  /* under the object lock */
  struct SwsContext *sws;       /* streaming thread only */
  GstBuffer *padded;            /* a padded input frame, for inputs without room */
  guint64 copies;               /* inputs read from it */
};

G_DEFINE_TYPE (GstSluiceScale, gst_sluice_scale, GST_TYPE_VIDEO_FILTER)
GST_ELEMENT_REGISTER_DEFINE (sluicescale, "sluicescale", GST_RANK_NONE,
    GST_TYPE_SLUICE_SCALE)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (SCALE_FORMATS)));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (SCALE_FORMATS)));

static GType
gst_sluice_scale_method_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_SLUICE_SCALE_NEAREST, "Nearest neighbour", "nearest-neighbour"},
    {GST_SLUICE_SCALE_BILINEAR, "Bilinear (2-tap)", "bilinear"},
    {GST_SLUICE_SCALE_BILINEAR2, "Linear over the whole footprint",
        "bilinear2"},
    {GST_SLUICE_SCALE_4TAP, "Bicubic (4-tap)", "4-tap"},
    {GST_SLUICE_SCALE_LANCZOS, "Lanczos-3", "lanczos"},
    {GST_SLUICE_SCALE_SINC, "Sinc", "sinc"},
    {GST_SLUICE_SCALE_HERMITE, "Hermite cubic (B=0, C=0)", "hermite"},
    {GST_SLUICE_SCALE_SPLINE, "Spline", "spline"},
    {GST_SLUICE_SCALE_CATROM, "Catmull-Rom cubic (B=0, C=1/2)", "catrom"},
    {GST_SLUICE_SCALE_MITCHELL, "Mitchell cubic (B=1/3, C=1/3)", "mitchell"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstSluiceScaleMethod", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

/* The libswscale flags and parameters of a method. */
static int
sws_method (GstSluiceScaleMethod method, double param[2])
{
  param[0] = param[1] = SWS_PARAM_DEFAULT;
  switch (method) {
    case GST_SLUICE_SCALE_NEAREST:
      return SWS_POINT;
    case GST_SLUICE_SCALE_BILINEAR:
      return SWS_FAST_BILINEAR;
    case GST_SLUICE_SCALE_BILINEAR2:
      return SWS_BILINEAR;
    case GST_SLUICE_SCALE_4TAP:
      return SWS_BICUBIC;
    case GST_SLUICE_SCALE_SINC:
      return SWS_SINC;
    case GST_SLUICE_SCALE_SPLINE:
      return SWS_SPLINE;
    case GST_SLUICE_SCALE_HERMITE:
      param[0] = 0.0;
      param[1] = 0.0;
      return SWS_BICUBIC;
    case GST_SLUICE_SCALE_CATROM:
      param[0] = 0.0;
      param[1] = 0.5;
      return SWS_BICUBIC;
    case GST_SLUICE_SCALE_MITCHELL:
      param[0] = 1.0 / 3.0;
      param[1] = 1.0 / 3.0;
      return SWS_BICUBIC;
    case GST_SLUICE_SCALE_LANCZOS:
    default:
      return SWS_LANCZOS;
  }
}

static enum AVPixelFormat
av_format (GstVideoFormat format)
{
  switch (format) {
    case GST_VIDEO_FORMAT_I420:
      return AV_PIX_FMT_YUV420P;
    case GST_VIDEO_FORMAT_Y42B:
      return AV_PIX_FMT_YUV422P;
    case GST_VIDEO_FORMAT_Y444:
      return AV_PIX_FMT_YUV444P;
    case GST_VIDEO_FORMAT_NV12:
      return AV_PIX_FMT_NV12;
    case GST_VIDEO_FORMAT_GRAY8:
      return AV_PIX_FMT_GRAY8;
    default:
      return AV_PIX_FMT_NONE;
  }
}

static void
drop_context (GstSluiceScale * self)
{
  if (self->sws) {
    sws_freeContext (self->sws);
    self->sws = NULL;
  }
  gst_clear_buffer (&self->padded);
}

/* Whether every plane of `frame` has READ_PADDING bytes of its memory after
 * the end of its last row (the row's stride counted whole). */
static gboolean
has_room_after_rows (const GstVideoFrame * frame)
{
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES (frame); p++) {
    /* The planes of these formats start with component p (NV12's second
     * plane holds components 1 and 2). */
    gsize end = GST_VIDEO_FRAME_PLANE_OFFSET (frame, p)
        + (gsize) GST_VIDEO_FRAME_PLANE_STRIDE (frame, p)
        * GST_VIDEO_FRAME_COMP_HEIGHT (frame, p);
    guint idx, length;
    gsize skip;
    GstMemory *mem;

    if (!gst_buffer_find_memory (frame->buffer, end - 1, 1, &idx, &length,
            &skip))
      return FALSE;
    mem = gst_buffer_peek_memory (frame->buffer, idx);
    if (mem->maxsize < mem->offset + skip + 1 + READ_PADDING)
      return FALSE;
  }
  return TRUE;
}

/* Adds READ_PADDING to the allocation parameters of `query`. */
static void
ask_for_padding (GstQuery * query)
{
  GstAllocationParams params;
  GstAllocator *allocator = NULL;

  if (gst_query_get_n_allocation_params (query) > 0) {
    gst_query_parse_nth_allocation_param (query, 0, &allocator, &params);
    params.padding = MAX (params.padding, READ_PADDING);
    gst_query_set_nth_allocation_param (query, 0, allocator, &params);
    if (allocator)
      gst_object_unref (allocator);
  } else {
    gst_allocation_params_init (&params);
    params.padding = READ_PADDING;
    gst_query_add_allocation_param (query, NULL, &params);
  }
}

/* Upstream: buffers with room after their last row spare the copy. */
static gboolean
gst_sluice_scale_propose_allocation (GstBaseTransform * trans,
    GstQuery * decide_query, GstQuery * query)
{
  if (!GST_BASE_TRANSFORM_CLASS (gst_sluice_scale_parent_class)->
      propose_allocation (trans, decide_query, query))
    return FALSE;
  ask_for_padding (query);
  return TRUE;
}

/* Downstream: the frames made here have the room, for a rung scaled from
 * this one. */
static gboolean
gst_sluice_scale_decide_allocation (GstBaseTransform * trans, GstQuery * query)
{
  ask_for_padding (query);
  return GST_BASE_TRANSFORM_CLASS (gst_sluice_scale_parent_class)->
      decide_allocation (trans, query);
}

/* Any size on the other side; everything else (format, colorimetry, chroma
 * siting, framerate, interlacing) stays as it is. */
static GstCaps *
gst_sluice_scale_transform_caps (GstBaseTransform * trans,
    GstPadDirection direction, GstCaps * caps, GstCaps * filter)
{
  GstCaps *ret = gst_caps_new_empty ();

  for (guint i = 0; i < gst_caps_get_size (caps); i++) {
    GstStructure *s = gst_caps_get_structure (caps, i);
    GstCapsFeatures *f = gst_caps_get_features (caps, i);

    if (i > 0 && gst_caps_is_subset_structure_full (ret, s, f))
      continue;
    s = gst_structure_copy (s);
    gst_structure_set (s, "width", GST_TYPE_INT_RANGE, 1, G_MAXINT,
        "height", GST_TYPE_INT_RANGE, 1, G_MAXINT, NULL);
    if (gst_structure_has_field (s, "pixel-aspect-ratio"))
      gst_structure_set (s, "pixel-aspect-ratio", GST_TYPE_FRACTION_RANGE, 1,
          G_MAXINT, G_MAXINT, 1, NULL);
    gst_caps_append_structure_full (ret, s, gst_caps_features_copy (f));
  }
  if (filter) {
    GstCaps *both =
        gst_caps_intersect_full (filter, ret, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (ret);
    ret = both;
  }
  GST_DEBUG_OBJECT (trans, "%" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT,
      (gpointer) caps, (gpointer) ret);
  return ret;
}

/* What is left open on the other side takes the values of this side. */
static GstCaps *
gst_sluice_scale_fixate_caps (GstBaseTransform * trans,
    GstPadDirection direction, GstCaps * caps, GstCaps * othercaps)
{
  GstStructure *from = gst_caps_get_structure (caps, 0);
  GstStructure *to;
  gint width, height, par_n, par_d;

  othercaps = gst_caps_make_writable (gst_caps_truncate (othercaps));
  to = gst_caps_get_structure (othercaps, 0);
  if (gst_structure_get_int (from, "width", &width))
    gst_structure_fixate_field_nearest_int (to, "width", width);
  if (gst_structure_get_int (from, "height", &height))
    gst_structure_fixate_field_nearest_int (to, "height", height);
  if (!gst_structure_get_fraction (from, "pixel-aspect-ratio", &par_n, &par_d))
    par_n = par_d = 1;
  if (gst_structure_has_field (to, "pixel-aspect-ratio"))
    gst_structure_fixate_field_nearest_fraction (to, "pixel-aspect-ratio",
        par_n, par_d);
  return gst_caps_fixate (othercaps);
}

static gboolean
gst_sluice_scale_set_info (GstVideoFilter * filter, GstCaps * incaps,
    GstVideoInfo * in_info, GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstSluiceScale *self = GST_SLUICE_SCALE (filter);
  GstVideoFormat format = GST_VIDEO_INFO_FORMAT (in_info);
  gint in_w = GST_VIDEO_INFO_WIDTH (in_info);
  gint in_h = GST_VIDEO_INFO_HEIGHT (in_info);
  gint out_w = GST_VIDEO_INFO_WIDTH (out_info);
  gint out_h = GST_VIDEO_INFO_HEIGHT (out_info);
  GstSluiceScaleMethod method;
  double param[2];
  int flags;

  drop_context (self);
  if (format != GST_VIDEO_INFO_FORMAT (out_info)
      || av_format (format) == AV_PIX_FMT_NONE) {
    GST_ERROR_OBJECT (self, "cannot scale %s to %s",
        gst_video_format_to_string (format),
        gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (out_info)));
    return FALSE;
  }
  if (in_w == out_w && in_h == out_h) {
    gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), TRUE);
    return TRUE;
  }
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);

  GST_OBJECT_LOCK (self);
  method = self->method;
  GST_OBJECT_UNLOCK (self);
  flags = sws_method (method, param);
  self->sws = sws_getContext (in_w, in_h, av_format (format), out_w, out_h,
      av_format (format), flags, NULL, NULL, param);
  if (!self->sws) {
    GST_ERROR_OBJECT (self, "libswscale refused %dx%d -> %dx%d %s", in_w,
        in_h, out_w, out_h, gst_video_format_to_string (format));
    return FALSE;
  }
  GST_INFO_OBJECT (self, "%dx%d -> %dx%d %s, libswscale flags 0x%x", in_w,
      in_h, out_w, out_h, gst_video_format_to_string (format), flags);
  return TRUE;
}

static GstFlowReturn
gst_sluice_scale_transform_frame (GstVideoFilter * filter,
    GstVideoFrame * in, GstVideoFrame * out)
{
  GstSluiceScale *self = GST_SLUICE_SCALE (filter);
  const guint8 *src[4] = { NULL };
  guint8 *dst[4] = { NULL };
  int src_stride[4] = { 0 };
  int dst_stride[4] = { 0 };
  GstVideoFrame copy;
  gboolean copied = FALSE;
  GstFlowReturn ret = GST_FLOW_OK;

  if (!self->sws) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("no scaler: the caps were not set"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (!has_room_after_rows (in)) {
    if (!self->padded) {
      GstAllocationParams params;

      gst_allocation_params_init (&params);
      params.padding = READ_PADDING;
      params.align = 63;
      self->padded = gst_buffer_new_allocate (NULL,
          GST_VIDEO_INFO_SIZE (&filter->in_info), &params);
    }
    if (!self->padded
        || !gst_video_frame_map (&copy, &filter->in_info, self->padded,
            GST_MAP_READWRITE)) {
      GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, (NULL),
          ("cannot make a padded copy of the input"));
      return GST_FLOW_ERROR;
    }
    if (self->copies++ == 0)
      GST_INFO_OBJECT (self, "input frames without %d bytes after their rows: "
          "scaling from a padded copy", READ_PADDING);
    gst_video_frame_copy (&copy, in);
    in = &copy;
    copied = TRUE;
  }
  for (guint i = 0; i < GST_VIDEO_FRAME_N_PLANES (in) && i < 4; i++) {
    src[i] = GST_VIDEO_FRAME_PLANE_DATA (in, i);
    src_stride[i] = GST_VIDEO_FRAME_PLANE_STRIDE (in, i);
  }
  for (guint i = 0; i < GST_VIDEO_FRAME_N_PLANES (out) && i < 4; i++) {
    dst[i] = GST_VIDEO_FRAME_PLANE_DATA (out, i);
    dst_stride[i] = GST_VIDEO_FRAME_PLANE_STRIDE (out, i);
  }
  if (sws_scale (self->sws, src, src_stride, 0, GST_VIDEO_FRAME_HEIGHT (in),
          dst, dst_stride) != GST_VIDEO_FRAME_HEIGHT (out)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, (NULL),
        ("libswscale did not write the whole frame"));
    ret = GST_FLOW_ERROR;
  }
  if (copied)
    gst_video_frame_unmap (&copy);
  return ret;
}

static gboolean
gst_sluice_scale_stop (GstBaseTransform * trans)
{
  drop_context (GST_SLUICE_SCALE (trans));
  return TRUE;
}

static void
gst_sluice_scale_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstSluiceScale *self = GST_SLUICE_SCALE (object);

  switch (prop_id) {
    case PROP_METHOD:
      GST_OBJECT_LOCK (self);
      self->method = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_sluice_scale_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstSluiceScale *self = GST_SLUICE_SCALE (object);

  switch (prop_id) {
    case PROP_METHOD:
      GST_OBJECT_LOCK (self);
      g_value_set_enum (value, self->method);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_sluice_scale_finalize (GObject * object)
{
  drop_context (GST_SLUICE_SCALE (object));
  G_OBJECT_CLASS (gst_sluice_scale_parent_class)->finalize (object);
}

static void
gst_sluice_scale_class_init (GstSluiceScaleClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sluice_scale_debug, "sluicescale", 0,
      "sluice's libswscale scaler");

  gobject_class->set_property = gst_sluice_scale_set_property;
  gobject_class->get_property = gst_sluice_scale_get_property;
  gobject_class->finalize = gst_sluice_scale_finalize;

  /**
   * GstSluiceScale:method:
   *
   * The filter, by videoconvertscale's names; read when the caps are set.
   */
  g_object_class_install_property (gobject_class, PROP_METHOD,
      g_param_spec_enum ("method", "Method", "The scaling filter",
          gst_sluice_scale_method_get_type (), DEFAULT_METHOD,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "sluice scaler",
      "Filter/Converter/Video/Scaler",
      "Resizes raw video with libswscale",
      "sluice developers <https://github.com/sluice-media/sluice>");

  trans_class->transform_caps =
      GST_DEBUG_FUNCPTR (gst_sluice_scale_transform_caps);
  trans_class->fixate_caps = GST_DEBUG_FUNCPTR (gst_sluice_scale_fixate_caps);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_sluice_scale_stop);
  trans_class->propose_allocation =
      GST_DEBUG_FUNCPTR (gst_sluice_scale_propose_allocation);
  trans_class->decide_allocation =
      GST_DEBUG_FUNCPTR (gst_sluice_scale_decide_allocation);
  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_sluice_scale_set_info);
  filter_class->transform_frame =
      GST_DEBUG_FUNCPTR (gst_sluice_scale_transform_frame);

  gst_type_mark_as_plugin_api (gst_sluice_scale_method_get_type (), 0);
}

static void
gst_sluice_scale_init (GstSluiceScale * self)
{
  self->method = DEFAULT_METHOD;
}
