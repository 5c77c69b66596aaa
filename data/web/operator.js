// The Operator view (#/operator, for keys with the admin scope): jobs by state, the last hour per minute (jobs that
// ended, transcode speed) and the queue since the view opened as charts drawn by uPlot, the running jobs with their
// progress, the workers, live streams, the stored files' use and the recent failures with their error.
// Fed by GET /api/v1/stats and /api/v1/workers every 15 s, and by the page's one event stream between: `progress`
// events move the running jobs at once, a `job` event reads the figures again (at most every 2 s). No polling faster.

import { api, authHeaders, on } from './api.js';
import { el, formatBytes, formatDate, formatJobStats } from './util.js';

const REFRESH_MS = 15000; // the figures and the workers read again
const AFTER_EVENT_MS = 2000; // a job event reads them again, at most this often
const QUEUE_SAMPLES = 720; // the queue chart's points: an hour at one point per 5 s
const UPLOT = '/web/node_modules/uplot/dist/uPlot.esm.js';
const UPLOT_CSS = '/web/node_modules/uplot/dist/uPlot.min.css';

const tab = document.getElementById('tab-operator');
const $ = (id) => document.getElementById(id);
const errorBox = $('ops-error');
const updatedEl = $('ops-updated');
const runningList = $('ops-running');
const workersBody = $('ops-workers');
const streamsList = $('ops-streams');
const failuresList = $('ops-failures');

let shown = false;
let timer = 0;
let eventTimer = 0;
let lastRead = 0;
let reading = null;
let uPlotLib = null;
let charts = null; // {jobs, speed, queue}: the uPlot instances
let latest = null; // the last stats answer
const running = new Map(); // job id → job JSON (its progress kept up to date by the events)
const queue = { t: [], queued: [], running: [] }; // sampled at every read (every 15 s, and after job events)

// ---------------------------------------------------------------------------------------------
// Who may see it: the tab shows when the figures can be read with the page's key (admin, or no [auth]).

async function probe() {
  try {
    const res = await fetch('/api/v1/stats', { headers: authHeaders({ Accept: 'application/json' }) });
    await res.arrayBuffer();
    tab.hidden = !res.ok;
  } catch {
    tab.hidden = true;
  }
  if (tab.hidden && shown) window.location.hash = '#/';
}

// ---------------------------------------------------------------------------------------------
// Charts

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

async function loadUPlot() {
  if (uPlotLib) return uPlotLib;
  if (!document.querySelector(`link[href="${UPLOT_CSS}"]`)) {
    document.head.append(el('link', { rel: 'stylesheet', href: UPLOT_CSS }));
  }
  uPlotLib = (await import(UPLOT)).default;
  return uPlotLib;
}

function axis(colors, extra = {}) {
  return {
    stroke: colors.muted,
    grid: { stroke: colors.border, width: 1 },
    ticks: { stroke: colors.border, width: 1 },
    font: '12px system-ui, sans-serif',
    ...extra,
  };
}

// padX: seconds of room on either side of the data (a minute's bar or point at the edge is drawn whole).
function chartOptions(box, series, colors, { bars = false, yLabel = '', minY = 1, padX = 0 } = {}) {
  const U = uPlotLib;
  return {
    width: Math.max(240, box.clientWidth),
    height: 180,
    legend: { show: false },
    cursor: { show: false },
    scales: {
      x: padX ? { time: true, range: (u, min, max) => [min - padX, max + padX] } : { time: true },
      y: { range: (u, min, max) => [0, Math.max(minY, max * 1.15)] },
    },
    axes: [axis(colors), axis(colors, { label: yLabel, labelFont: '12px system-ui, sans-serif', size: 48 })],
    series: [{}, ...series.map((s) => ({
      label: s.label,
      stroke: s.color,
      width: 2,
      fill: bars ? s.color : undefined,
      paths: bars ? U.paths.bars({ size: [0.7, 24], align: s.align || 0 }) : undefined,
      points: { show: !bars, size: 5, fill: s.color },
      spanGaps: false,
    }))],
  };
}

// The charts' data from the latest figures.
function jobsData(st) {
  const start = Date.parse(st.minutes.start) / 1000;
  const t = st.minutes.succeeded.map((_, i) => start + i * st.minutes.seconds);
  return { t, succeeded: st.minutes.succeeded, failed: st.minutes.failed, speed: st.minutes.speed };
}

async function drawCharts() {
  if (!latest || !shown) return;
  await loadUPlot();
  const d = jobsData(latest);
  if (!charts) {
    const colors = { ok: cssColor('--ok'), danger: cssColor('--danger'), accent: cssColor('--accent'),
      warn: cssColor('--warn'), muted: cssColor('--muted'), border: cssColor('--border') };
    const U = uPlotLib;
    const jobsBox = $('chart-jobs');
    const speedBox = $('chart-speed');
    const queueBox = $('chart-queue');
    charts = {
      jobs: new U(chartOptions(jobsBox, [
        { label: 'Succeeded', color: colors.ok, align: -1 }, { label: 'Failed', color: colors.danger, align: 1 }],
      colors, { bars: true, yLabel: 'jobs', padX: 30 }), [d.t, d.succeeded, d.failed], jobsBox),
      speed: new U(chartOptions(speedBox, [{ label: 'Speed', color: colors.accent }], colors, { yLabel: '× real time', padX: 30 }),
        [d.t, d.speed], speedBox),
      queue: new U(chartOptions(queueBox, [
        { label: 'Queued', color: colors.warn }, { label: 'Running', color: colors.accent }], colors, { yLabel: 'jobs' }),
      [queue.t, queue.queued, queue.running], queueBox),
    };
  } else {
    charts.jobs.setData([d.t, d.succeeded, d.failed]);
    charts.speed.setData([d.t, d.speed]);
    charts.queue.setData([queue.t, queue.queued, queue.running]);
  }
  $('chart-jobs-summary').textContent =
    `${latest.last_hour.succeeded} succeeded and ${latest.last_hour.failed} failed in the last hour.`;
  $('chart-speed-summary').textContent = latest.last_hour.speed === null
    ? 'No streaming job ended in the last hour.'
    : `${latest.last_hour.speed.toFixed(2)}× real time over the last hour.`;
  const n = queue.t.length;
  $('chart-queue-summary').textContent = n
    ? `Now ${queue.queued[n - 1]} queued and ${queue.running[n - 1]} running.` : '';
}

function destroyCharts() {
  if (!charts) return;
  for (const c of Object.values(charts)) c.destroy();
  charts = null;
}

function resizeCharts() {
  if (!charts || !shown) return;
  for (const [name, c] of Object.entries(charts)) {
    const box = $(`chart-${name}`);
    c.setSize({ width: Math.max(240, box.clientWidth), height: 180 });
  }
}

// ---------------------------------------------------------------------------------------------
// The figures

function sampleQueue(queued, runningCount) {
  queue.t.push(Date.now() / 1000);
  queue.queued.push(queued);
  queue.running.push(runningCount);
  if (queue.t.length > QUEUE_SAMPLES) for (const k of Object.keys(queue)) queue[k].shift();
}

function showError(message) {
  errorBox.textContent = message || '';
  errorBox.hidden = !message;
}

function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
}

function renderTiles(st) {
  for (const state of ['queued', 'running', 'succeeded', 'failed', 'canceled']) setText(`ops-n-${state}`, String(st.jobs[state]));
  setText('ops-hour', `${st.last_hour.succeeded} ok · ${st.last_hour.failed} failed`);
  setText('ops-speed', st.last_hour.speed === null ? '–' : `${st.last_hour.speed.toFixed(2)}×`);
  const s = st.storage;
  const used = s.used_bytes === null ? 'measuring…' : `${formatBytes(s.used_bytes)} in ${s.files} files`;
  setText('ops-storage', used);
  setText('ops-storage-label', s.kind === 'bucket' ? 'Bucket' : 'Data folder');
  $('ops-storage').title = s.where;
  setText('ops-free', s.free_bytes === null ? '–' : formatBytes(s.free_bytes));
  setText('ops-streams-count', `${st.streams.by_state.live} live of ${st.streams.total}`);
}

function renderFailures(st) {
  setText('ops-failures-empty', st.failures.length ? '' : 'No failed jobs.');
  $('ops-failures-empty').hidden = st.failures.length > 0;
  failuresList.replaceChildren(...st.failures.map((f) => el('li', { class: 'failure', dataset: { jobId: f.job_id } },
    el('div', { class: 'failure-head' },
      el('a', { href: `#/videos/${encodeURIComponent(f.video_id)}`, text: f.video_title || `Video ${f.video_id}` }),
      el('span', { class: 'hint', text: ` · ${f.pipeline} · job ${f.job_id} · ${f.attempts} attempt${f.attempts === 1 ? '' : 's'} · ${formatDate(f.finished)}` })),
    el('p', { class: 'failure-message' }, el('code', { text: f.error.code }), ' ', f.error.message))));
}

function renderStreams(st) {
  $('ops-streams-empty').hidden = st.streams.active.length > 0;
  streamsList.replaceChildren(...st.streams.active.map((s) => el('li', { dataset: { streamId: s.id, state: s.state } },
    el('a', { href: `#/streams/${encodeURIComponent(s.id)}`, text: s.title || `Stream ${s.id}` }),
    el('span', { class: 'hint', text: ` · ${s.state} · ${Math.round(s.input_kbps)} kbit/s · ${s.fps} fps` }))));
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return Number.isFinite(s) ? `${s} s ago` : '–';
}

function renderWorkers(workers) {
  $('ops-workers-empty').hidden = workers.length > 0;
  workersBody.replaceChildren(...workers.map((w) => el('tr', { dataset: { worker: w.name } },
    el('th', { scope: 'row', text: w.name }),
    el('td', { text: w.alive ? 'alive' : 'silent', class: w.alive ? 'alive' : 'silent' }),
    el('td', { text: ago(w.heartbeat), title: formatDate(w.heartbeat) }),
    el('td', { class: 'num', text: `${w.jobs.length} (${w.used} of ${w.capacity})` }),
    el('td', { text: w.encoders.join(', ') || '–' }))));
}

function renderRunning() {
  $('ops-running-empty').hidden = running.size > 0;
  // The job events keep the list, and so the count, up to date between two reads.
  if (latest) setText('ops-n-running', String(running.size));
  const rows = [...running.values()].map((j) => {
    const percent = j.progress && typeof j.progress.percent === 'number' ? j.progress.percent : 0;
    return el('li', { class: 'running-job', dataset: { jobId: j.id } },
      el('div', { class: 'failure-head' },
        el('a', { href: `#/videos/${encodeURIComponent(j.video_id)}`, text: `Video ${j.video_id}` }),
        el('span', { class: 'hint', text: ` · ${j.pipeline}${j.worker ? ` · ${j.worker}` : ''}` })),
      el('progress', { max: 100, value: percent, 'aria-label': `Job ${j.id}` }),
      el('span', { class: 'job-stats', text: formatJobStats(j.progress) }));
  });
  runningList.replaceChildren(...rows);
}

async function read() {
  if (reading) return reading;
  lastRead = Date.now();
  reading = (async () => {
    try {
      const [st, w, jobs] = await Promise.all([api('/api/v1/stats'), api('/api/v1/workers'),
        api('/api/v1/jobs?state=running')]);
      latest = st;
      running.clear();
      for (const j of jobs.jobs) running.set(j.id, j);
      sampleQueue(st.jobs.queued, st.jobs.running);
      renderTiles(st);
      renderFailures(st);
      renderStreams(st);
      renderWorkers(w.workers);
      renderRunning();
      updatedEl.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      showError('');
      await drawCharts();
    } catch (e) {
      showError(`Could not read the figures: ${e.message}`);
    } finally {
      reading = null;
    }
  })();
  return reading;
}

// A job event: read again soon, not more than every AFTER_EVENT_MS.
function readSoon() {
  if (!shown || eventTimer) return;
  const wait = Math.max(0, lastRead + AFTER_EVENT_MS - Date.now());
  eventTimer = setTimeout(() => {
    eventTimer = 0;
    read();
  }, wait);
}

// ---------------------------------------------------------------------------------------------

export function showOperator() {
  shown = true;
  // Charts made (or resized) while the view was hidden take its width again once it is laid out.
  requestAnimationFrame(resizeCharts);
  read();
  clearInterval(timer);
  timer = setInterval(read, REFRESH_MS);
}

export function hideOperator() {
  shown = false;
  clearInterval(timer);
  clearTimeout(eventTimer);
  timer = 0;
  eventTimer = 0;
}

export function initOperator() {
  probe();
  on('key', probe);
  on('job', (j) => {
    if (!shown || typeof j.id !== 'string') return;
    if (j.state === 'running') running.set(j.id, { ...running.get(j.id), ...j });
    else running.delete(j.id);
    renderRunning();
    readSoon();
  });
  on('progress', (p) => {
    if (!shown || typeof p.job !== 'string') return;
    const j = running.get(p.job);
    if (!j) return readSoon();
    j.progress = p;
    const li = runningList.querySelector(`li[data-job-id="${CSS.escape(p.job)}"]`);
    if (!li) return renderRunning();
    li.querySelector('progress').value = typeof p.percent === 'number' ? p.percent : 0;
    li.querySelector('.job-stats').textContent = formatJobStats(p);
    return undefined;
  });
  on('open', ({ resync }) => {
    if (resync && shown) read();
  });
  window.addEventListener('resize', resizeCharts);
  // Light or dark changed: the charts take the new colours.
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    destroyCharts();
    drawCharts();
  });
}
