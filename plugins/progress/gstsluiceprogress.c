/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sluice: a GStreamer pipeline server.
 *
 * sluiceprogress: a passthrough element that posts periodic progress
 * messages (position, duration, percent, speed, ETA) on the bus.
 *
 * This library is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 */

/**
 * SECTION:element-sluiceprogress
 * @title: sluiceprogress
 *
 * The sluiceprogress element passes data through untouched and, at most
 * once every #GstSluiceProgress:interval milliseconds of wall-clock time,
 * posts an element message on the bus describing how far the stream has
 * got. It is meant to sit right after a decoder (or demuxer) in a
 * transcoding pipeline, so that an application can show a progress bar and
 * an estimated time of arrival.
 *
 * The message structure is named `sluice-progress` and has these fields:
 *
 * * `position` (#guint64): the highest stream time seen so far, in nanoseconds
 * * `duration` (#gint64): the total duration in nanoseconds, -1 when unknown
 * * `percent` (#gint): 0..99 while running, 100 in the final message, -1 when
 *   the duration is unknown; it never decreases
 * * `percent-double` (#gdouble): the same as a fraction, -1.0 when unknown
 * * `current` (#gint64): the position in whole seconds
 * * `total` (#gint64): the duration in whole seconds, -1 when unknown
 * * `frames` (#guint64): the number of buffers seen
 * * `fps` (#gdouble): buffers per wall-clock second since the first buffer
 * * `speed` (#gdouble): media time advanced per wall-clock time (1.0 is
 *   realtime)
 * * `eta` (#gint64): estimated wall-clock nanoseconds until the end, -1 when
 *   unknown
 * * `elapsed` (#guint64): wall-clock nanoseconds since the first buffer
 * * `final` (#gboolean): %TRUE only for the message posted at end-of-stream
 *
 * The total duration is asked of upstream with a duration query in
 * %GST_FORMAT_TIME; while upstream cannot answer, the
 * #GstSluiceProgress:duration property is used instead.
 *
 * When end-of-stream arrives a final message is always posted (unless
 * #GstSluiceProgress:silent is set), with `final` set, `percent` 100 and
 * `eta` 0.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m filesrc location=in.mp4 ! decodebin ! sluiceprogress ! fakesink
 * ]| Decodes a file as fast as possible and prints a progress message on
 * the bus twice a second, and a final one at the end.
 */

#include "gstsluiceprogress.h"

GST_DEBUG_CATEGORY_STATIC (gst_sluice_progress_debug);
#define GST_CAT_DEFAULT gst_sluice_progress_debug

#define DEFAULT_INTERVAL 500
#define DEFAULT_DURATION GST_CLOCK_TIME_NONE
#define DEFAULT_SILENT FALSE

enum
{
  PROP_0,
  PROP_INTERVAL,
  PROP_DURATION,
  PROP_SILENT,
  PROP_PERCENT,
};

struct _GstSluiceProgress
{
  GstBaseTransform parent;

  /* Everything below is protected by the object lock. */

  /* properties */
  guint interval;               /* milliseconds */
  GstClockTime duration;        /* fallback total duration */
  gboolean silent;

  /* streaming state */
  guint64 frames;               /* buffers seen */
  gint64 start_time;            /* monotonic µs of the first buffer, -1 before */
  gint64 last_report;           /* monotonic µs of the last report, -1 before */
  GstClockTime position;        /* highest stream time seen */
  GstClockTime upstream_duration;       /* cached answer of upstream */

  /* speed estimation: media time advanced since a wall-clock baseline,
   * which is taken at the first timestamped buffer and again after each
   * flush */
  gint64 base_time;             /* monotonic µs, -1 when unset */
  GstClockTime base_position;   /* stream time at base_time */
  GstClockTime base_max;        /* highest stream time since base_time */

  /* last reported values, so that they never go backwards */
  gint percent;
  gdouble percent_double;
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK,
    GST_PAD_ALWAYS,
    GST_STATIC_CAPS_ANY);

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC,
    GST_PAD_ALWAYS,
    GST_STATIC_CAPS_ANY);

#define gst_sluice_progress_parent_class parent_class
G_DEFINE_TYPE (GstSluiceProgress, gst_sluice_progress,
    GST_TYPE_BASE_TRANSFORM)
GST_ELEMENT_REGISTER_DEFINE (sluiceprogress, "sluiceprogress",
    GST_RANK_NONE, GST_TYPE_SLUICE_PROGRESS)

static void gst_sluice_progress_set_property (GObject * object,
    guint prop_id, const GValue * value, GParamSpec * pspec);
static void gst_sluice_progress_get_property (GObject * object,
    guint prop_id, GValue * value, GParamSpec * pspec);
static gboolean gst_sluice_progress_start (GstBaseTransform * trans);
static gboolean gst_sluice_progress_stop (GstBaseTransform * trans);
static gboolean gst_sluice_progress_sink_event (GstBaseTransform * trans,
    GstEvent * event);
static GstFlowReturn gst_sluice_progress_transform_ip (GstBaseTransform *
    trans, GstBuffer * buf);

static void
gst_sluice_progress_class_init (GstSluiceProgressClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_sluice_progress_debug, "sluiceprogress", 0,
      "sluice progress reporter");

  gobject_class->set_property = gst_sluice_progress_set_property;
  gobject_class->get_property = gst_sluice_progress_get_property;

  /**
   * GstSluiceProgress:interval:
   *
   * Minimum wall-clock time between two progress messages, in milliseconds.
   * 0 posts a message for every buffer.
   */
  g_object_class_install_property (gobject_class, PROP_INTERVAL,
      g_param_spec_uint ("interval", "Interval",
          "Minimum wall-clock time between progress messages in milliseconds "
          "(0 = report on every buffer)", 0, G_MAXUINT, DEFAULT_INTERVAL,
          G_PARAM_READWRITE | GST_PARAM_MUTABLE_PLAYING |
          G_PARAM_STATIC_STRINGS));

  /**
   * GstSluiceProgress:duration:
   *
   * Total duration of the stream in nanoseconds, used while upstream cannot
   * answer a duration query. -1 (or 0) means unknown.
   */
  g_object_class_install_property (gobject_class, PROP_DURATION,
      g_param_spec_uint64 ("duration", "Duration",
          "Total duration in nanoseconds, used when upstream cannot answer "
          "a duration query (-1 = unknown, query upstream only)", 0,
          G_MAXUINT64, DEFAULT_DURATION,
          G_PARAM_READWRITE | GST_PARAM_MUTABLE_PLAYING |
          G_PARAM_STATIC_STRINGS));

  /**
   * GstSluiceProgress:silent:
   *
   * When %TRUE no messages are posted at all.
   */
  g_object_class_install_property (gobject_class, PROP_SILENT,
      g_param_spec_boolean ("silent", "Silent",
          "Do not post any progress messages", DEFAULT_SILENT,
          G_PARAM_READWRITE | GST_PARAM_MUTABLE_PLAYING |
          G_PARAM_STATIC_STRINGS));

  /**
   * GstSluiceProgress:percent:
   *
   * The last computed progress in percent, -1 when unknown. It is updated
   * whenever a report is due, even when #GstSluiceProgress:silent is set.
   */
  g_object_class_install_property (gobject_class, PROP_PERCENT,
      g_param_spec_int ("percent", "Percent",
          "Last computed progress in percent (-1 = unknown)", -1, 100, -1,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  gst_element_class_set_static_metadata (element_class,
      "Sluice progress reporter", "Utility",
      "Passes data through and periodically posts element messages with the "
      "stream position, duration, percentage, processing speed and ETA",
      "The sluice developers <https://github.com/sluice-media/sluice>");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_sluice_progress_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_sluice_progress_stop);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_sluice_progress_sink_event);
  trans_class->transform_ip =
      GST_DEBUG_FUNCPTR (gst_sluice_progress_transform_ip);
  trans_class->transform_ip_on_passthrough = TRUE;
  trans_class->passthrough_on_same_caps = TRUE;
}

/* Must be called with the object lock held. */
static void
gst_sluice_progress_reset_locked (GstSluiceProgress * self)
{
  self->frames = 0;
  self->start_time = -1;
  self->last_report = -1;
  self->position = GST_CLOCK_TIME_NONE;
  self->upstream_duration = GST_CLOCK_TIME_NONE;
  self->base_time = -1;
  self->base_position = GST_CLOCK_TIME_NONE;
  self->base_max = GST_CLOCK_TIME_NONE;
  self->percent = -1;
  self->percent_double = -1.0;
}

static void
gst_sluice_progress_init (GstSluiceProgress * self)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);

  self->interval = DEFAULT_INTERVAL;
  self->duration = DEFAULT_DURATION;
  self->silent = DEFAULT_SILENT;
  gst_sluice_progress_reset_locked (self);

  gst_base_transform_set_passthrough (trans, TRUE);
  gst_base_transform_set_in_place (trans, TRUE);
}

static void
gst_sluice_progress_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_INTERVAL:
      self->interval = g_value_get_uint (value);
      break;
    case PROP_DURATION:
      self->duration = g_value_get_uint64 (value);
      break;
    case PROP_SILENT:
      self->silent = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_sluice_progress_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_INTERVAL:
      g_value_set_uint (value, self->interval);
      break;
    case PROP_DURATION:
      g_value_set_uint64 (value, self->duration);
      break;
    case PROP_SILENT:
      g_value_set_boolean (value, self->silent);
      break;
    case PROP_PERCENT:
      g_value_set_int (value, self->percent);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_sluice_progress_start (GstBaseTransform * trans)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (trans);

  GST_OBJECT_LOCK (self);
  gst_sluice_progress_reset_locked (self);
  GST_OBJECT_UNLOCK (self);

  return TRUE;
}

static gboolean
gst_sluice_progress_stop (GstBaseTransform * trans)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (trans);

  GST_OBJECT_LOCK (self);
  gst_sluice_progress_reset_locked (self);
  GST_OBJECT_UNLOCK (self);

  return TRUE;
}

/* Returns the total duration to report against: the cached or freshly
 * queried upstream duration, else the property, else GST_CLOCK_TIME_NONE.
 * Must be called without the object lock: the query travels upstream. */
static GstClockTime
gst_sluice_progress_get_duration (GstSluiceProgress * self)
{
  GstClockTime cached, fallback;
  gint64 queried = -1;

  GST_OBJECT_LOCK (self);
  cached = self->upstream_duration;
  fallback = self->duration;
  GST_OBJECT_UNLOCK (self);

  if (GST_CLOCK_TIME_IS_VALID (cached))
    return cached;

  if (gst_pad_peer_query_duration (GST_BASE_TRANSFORM_SINK_PAD (self),
          GST_FORMAT_TIME, &queried) && queried > 0) {
    GST_DEBUG_OBJECT (self, "upstream duration %" GST_TIME_FORMAT,
        GST_TIME_ARGS (queried));
    GST_OBJECT_LOCK (self);
    self->upstream_duration = (GstClockTime) queried;
    GST_OBJECT_UNLOCK (self);
    return (GstClockTime) queried;
  }

  if (GST_CLOCK_TIME_IS_VALID (fallback) && fallback > 0)
    return fallback;

  return GST_CLOCK_TIME_NONE;
}

/* Builds the progress structure from the current state and records what was
 * reported. Must be called with the object lock held. */
static GstStructure *
gst_sluice_progress_build_locked (GstSluiceProgress * self, gint64 now,
    GstClockTime duration, gboolean final)
{
  gboolean have_duration = GST_CLOCK_TIME_IS_VALID (duration) && duration > 0;
  GstClockTime position;
  gint64 elapsed_us = 0;
  gdouble fps = 0.0, speed = 0.0, percent_double = -1.0;
  gint percent = -1;
  gint64 eta = -1;

  if (self->start_time >= 0 && now > self->start_time)
    elapsed_us = now - self->start_time;

  position = GST_CLOCK_TIME_IS_VALID (self->position) ? self->position : 0;
  if (final && have_duration && duration > position)
    position = duration;

  if (elapsed_us > 0)
    fps = (gdouble) self->frames * G_USEC_PER_SEC / (gdouble) elapsed_us;

  if (self->base_time >= 0 && now > self->base_time
      && GST_CLOCK_TIME_IS_VALID (self->base_position)
      && GST_CLOCK_TIME_IS_VALID (self->base_max)
      && self->base_max > self->base_position) {
    speed = (gdouble) (self->base_max - self->base_position) /
        ((gdouble) (now - self->base_time) * 1000.0);
  }

  if (final) {
    percent = 100;
    percent_double = 100.0;
    eta = 0;
  } else if (have_duration) {
    GstClockTime remaining = duration > position ? duration - position : 0;

    percent_double = 100.0 * (gdouble) position / (gdouble) duration;
    percent_double = CLAMP (percent_double, 0.0, 100.0);
    percent_double = MAX (percent_double, self->percent_double);

    percent = (gint) percent_double;
    percent = CLAMP (percent, 0, 99);
    percent = MAX (percent, self->percent);

    if (remaining == 0) {
      eta = 0;
    } else if (speed > 0.0) {
      gdouble eta_d = (gdouble) remaining / speed;

      if (eta_d < (gdouble) G_MAXINT64)
        eta = (gint64) eta_d;
    }
  }

  self->percent = percent;
  self->percent_double = percent_double;
  self->last_report = now;

  return gst_structure_new (GST_SLUICE_PROGRESS_MESSAGE_NAME,
      "position", G_TYPE_UINT64, (guint64) position,
      "duration", G_TYPE_INT64, have_duration ? (gint64) duration : -1,
      "percent", G_TYPE_INT, percent,
      "percent-double", G_TYPE_DOUBLE, percent_double,
      "current", G_TYPE_INT64, (gint64) (position / GST_SECOND),
      "total", G_TYPE_INT64,
      have_duration ? (gint64) (duration / GST_SECOND) : (gint64) - 1,
      "frames", G_TYPE_UINT64, self->frames,
      "fps", G_TYPE_DOUBLE, fps,
      "speed", G_TYPE_DOUBLE, speed,
      "eta", G_TYPE_INT64, eta,
      "elapsed", G_TYPE_UINT64, (guint64) elapsed_us * GST_USECOND,
      "final", G_TYPE_BOOLEAN, final, NULL);
}

/* Computes a report and posts it unless silent. Called without the object
 * lock; the message is posted after releasing it. */
static void
gst_sluice_progress_report (GstSluiceProgress * self, gint64 now,
    gboolean final)
{
  GstClockTime duration = gst_sluice_progress_get_duration (self);
  GstStructure *s;
  gboolean silent;

  GST_OBJECT_LOCK (self);
  s = gst_sluice_progress_build_locked (self, now, duration, final);
  silent = self->silent;
  GST_OBJECT_UNLOCK (self);

  GST_LOG_OBJECT (self, "progress: %" GST_PTR_FORMAT, (gpointer) s);

  if (silent) {
    gst_structure_free (s);
    return;
  }

  gst_element_post_message (GST_ELEMENT_CAST (self),
      gst_message_new_element (GST_OBJECT_CAST (self), s));
}

static gboolean
gst_sluice_progress_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (trans);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_EOS:
      GST_DEBUG_OBJECT (self, "EOS, posting final progress");
      gst_sluice_progress_report (self, g_get_monotonic_time (), TRUE);
      break;
    case GST_EVENT_FLUSH_STOP:
      /* Positions may jump after a seek: measure speed afresh from the next
       * buffer on. The reported position and percent stay monotonic. */
      GST_OBJECT_LOCK (self);
      self->base_time = -1;
      self->base_position = GST_CLOCK_TIME_NONE;
      self->base_max = GST_CLOCK_TIME_NONE;
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      break;
  }

  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static GstFlowReturn
gst_sluice_progress_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstSluiceProgress *self = GST_SLUICE_PROGRESS (trans);
  GstClockTime ts, stream_time = GST_CLOCK_TIME_NONE;
  gint64 now = g_get_monotonic_time ();
  gboolean due;

  ts = GST_BUFFER_PTS_IS_VALID (buf) ? GST_BUFFER_PTS (buf) :
      GST_BUFFER_DTS (buf);
  if (GST_CLOCK_TIME_IS_VALID (ts)) {
    /* The segment is only written from the streaming thread, like here. */
    if (trans->segment.format == GST_FORMAT_TIME)
      stream_time = gst_segment_to_stream_time (&trans->segment,
          GST_FORMAT_TIME, ts);
    else
      stream_time = ts;
  }

  GST_OBJECT_LOCK (self);
  self->frames++;
  if (self->start_time < 0)
    self->start_time = now;

  if (GST_CLOCK_TIME_IS_VALID (stream_time)) {
    if (!GST_CLOCK_TIME_IS_VALID (self->position)
        || stream_time > self->position)
      self->position = stream_time;

    if (self->base_time < 0) {
      self->base_time = now;
      self->base_position = stream_time;
      self->base_max = stream_time;
    } else if (stream_time > self->base_max) {
      self->base_max = stream_time;
    }
  }

  due = self->last_report < 0 ||
      now - self->last_report >= (gint64) self->interval * 1000;
  GST_OBJECT_UNLOCK (self);

  if (due)
    gst_sluice_progress_report (self, now, FALSE);

  return GST_FLOW_OK;
}
