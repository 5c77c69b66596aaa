// Which of a video's jobs tells its story. An upload queues a job profile: the streaming job (a
// pipeline whose output is hls or cmaf) and extras (poster, storyboard, preview) as jobs of their own.
// The page follows the streaming job for the video's progress and state, as the server does for
// the video's "state"; the extras only bring a picture or a file when they succeed.

import { api } from './api.js';

const EXTRA_OUTPUTS = new Set(['poster', 'storyboard', 'preview']);
const outputs = new Map(); // pipeline name → its output kind, from GET /api/v1/pipelines
let loading = null;

/** GET /api/v1/pipelines once for the page (again after a failure); learns each pipeline's output. */
export function loadPipelines() {
  if (!loading) {
    loading = api('/api/v1/pipelines').then((body) => {
      for (const p of (body && Array.isArray(body.pipelines) ? body.pipelines : [])) {
        if (p && p.name && p.output) outputs.set(p.name, p.output);
      }
      return body;
    }, (e) => {
      loading = null;
      throw e;
    });
  }
  return loading;
}

/** A job's output kind: the server's (job.output), else from the pipeline list, else its result, else the
 * pipeline's name (the built-in pipelines are named after their output). */
export function outputOf(job) {
  if (!job) return '';
  return job.output || outputs.get(job.pipeline) || (job.result && job.result.output) || job.pipeline || '';
}

/** True for an output kind that makes something to stream (hls, cmaf, or one the page does not know). */
export function isStreamingOutput(output) {
  return !EXTRA_OUTPUTS.has(output);
}

/** True for a job that makes something to stream. */
export function isStreamingJob(job) {
  return Boolean(job) && isStreamingOutput(outputOf(job));
}

/** The newest streaming job of a video (its jobs are newest first), or null. */
export function mainJob(v) {
  return ((v && v.jobs) || []).find(isStreamingJob) || null;
}

/** The newest job of each extra output kind, as a Map in the order poster, storyboard, preview. */
export function extraJobs(v) {
  const newest = new Map();
  for (const job of (v && v.jobs) || []) {
    const kind = outputOf(job);
    if (EXTRA_OUTPUTS.has(kind) && !newest.has(kind)) newest.set(kind, job);
  }
  return new Map([...EXTRA_OUTPUTS].filter((kind) => newest.has(kind)).map((kind) => [kind, newest.get(kind)]));
}
