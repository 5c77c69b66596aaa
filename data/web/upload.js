// The upload form: a file chosen or dropped is uploaded at once, streamed with XMLHttpRequest so that
// the bytes sent, the total and the speed can be shown.

import { api, uploadFile } from './api.js';
import { isStreamingOutput, loadPipelines } from './jobs.js';
import { el, formatMB } from './util.js';

const input = document.getElementById('file-input');
const zone = document.getElementById('drop-zone');
const titleInput = document.getElementById('title-input');
const pipelineSelect = document.getElementById('pipeline-select');
const encoderSelect = document.getElementById('encoder-select');
const pipelineHint = document.getElementById('pipeline-hint');
const optionsError = document.getElementById('options-error');
const progress = document.getElementById('upload-progress');
const statusEl = document.getElementById('upload-status');
const cancelButton = document.getElementById('upload-cancel');
const errorBox = document.getElementById('upload-error');

let current = null; // {abort} of the upload under way
let onUploaded = () => {};

function showError(message) {
  errorBox.textContent = message || '';
  errorBox.hidden = !message;
}

function setBusy(busy) {
  zone.classList.toggle('busy', busy);
  zone.setAttribute('aria-disabled', String(busy));
  input.disabled = busy;
  cancelButton.hidden = !busy;
  cancelButton.disabled = !busy;
  progress.hidden = false;
}

/** Speed over the last two seconds of progress events, in bytes per second. */
function speedMeter() {
  const samples = [];
  return (loaded) => {
    const now = performance.now();
    samples.push([now, loaded]);
    while (samples.length > 2 && now - samples[0][0] > 2000) samples.shift();
    const [t0, b0] = samples[0];
    return now > t0 ? ((loaded - b0) * 1000) / (now - t0) : 0;
  };
}

function start(file) {
  if (!file) return;
  if (current) {
    showError('An upload is already under way: wait for it to finish or cancel it first.');
    return;
  }
  showError('');
  progress.value = 0;
  statusEl.textContent = `Starting the upload of ${file.name} (${formatMB(file.size)})…`;
  const meter = speedMeter();
  meter(0);
  const fields = {
    title: titleInput.value.trim(),
    pipeline: pipelineSelect.disabled ? '' : pipelineSelect.value,
    encoder: encoderSelect.disabled ? '' : encoderSelect.value,
  };
  let shown = 0;
  const upload = uploadFile(file, fields, (loaded, total) => {
    const speed = meter(loaded);
    progress.value = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
    // The bar moves with every event; the words (read out by screen readers) twice a second.
    const sent = total > 0 && loaded >= total;
    const now = performance.now();
    if (!sent && now - shown < 500) return;
    shown = now;
    let text = `${formatMB(loaded)} of ${formatMB(total)}, ${formatMB(speed)}/s`;
    if (sent) text += ' (sent; the server is checking the file…)';
    statusEl.textContent = text;
  });
  current = upload;
  setBusy(true);
  upload.promise
    .then((body) => {
      progress.value = 100;
      const video = body && body.video;
      statusEl.textContent = `Uploaded: ${video ? video.title || video.filename : file.name}`;
      titleInput.value = '';
      if (video) onUploaded(video, body.job);
    })
    .catch((e) => {
      progress.value = 0;
      if (e.code === 'aborted') {
        statusEl.textContent = 'Canceled';
      } else {
        statusEl.textContent = `The upload of ${file.name} failed.`;
        showError(e.message);
      }
    })
    .finally(() => {
      current = null;
      setBusy(false);
    });
}

function fillSelect(select, options, selected) {
  select.replaceChildren(...options.map(({ value, text, title }) =>
    el('option', { value, text, title, selected: value === selected })));
  select.value = selected;
  select.disabled = false;
}

async function loadOptions() {
  const problems = [];
  const [pipelines, encoders] = await Promise.allSettled([loadPipelines(), api('/api/v1/encoders')]);

  if (pipelines.status === 'fulfilled' && pipelines.value && Array.isArray(pipelines.value.pipelines)) {
    // Only what makes a video playable: posters, storyboards and previews follow an upload on their own.
    const list = pipelines.value.pipelines.filter((p) => isStreamingOutput(p.output));
    const summaries = new Map(list.map((p) => [p.name, p.summary || '']));
    fillSelect(pipelineSelect, list.map((p) => ({ value: p.name, text: p.name, title: p.summary })),
      pipelines.value.default || (list[0] && list[0].name));
    const showHint = () => { pipelineHint.textContent = summaries.get(pipelineSelect.value) || ''; };
    pipelineSelect.addEventListener('change', showHint);
    showHint();
  } else {
    problems.push(`pipelines (${pipelines.reason ? pipelines.reason.message : 'an unexpected answer'})`);
  }

  if (encoders.status === 'fulfilled' && encoders.value && Array.isArray(encoders.value.encoders)) {
    const e = encoders.value;
    const options = [{ value: 'auto', text: e.auto ? `auto (${e.auto})` : 'auto', title: 'The first encoder that works here' }];
    for (const enc of e.encoders) {
      if (enc.runs) options.push({ value: enc.name, text: `${enc.name} · ${enc.hardware ? 'hardware' : 'software'}`, title: enc.summary });
    }
    fillSelect(encoderSelect, options, options.some((o) => o.value === e.default) ? e.default : 'auto');
  } else {
    problems.push(`encoders (${encoders.reason ? encoders.reason.message : 'an unexpected answer'})`);
  }

  if (problems.length) {
    optionsError.textContent = `Could not read the ${problems.join(' and ')}; uploads use the server's defaults.`;
    optionsError.hidden = false;
  }
}

/** onUploaded(video, job) is called with the 201 answer. */
export function initUpload(callbacks = {}) {
  if (callbacks.onUploaded) onUploaded = callbacks.onUploaded;
  input.addEventListener('change', () => {
    const file = input.files && input.files[0];
    start(file);
    input.value = ''; // choosing the same file again is a new upload
  });
  zone.addEventListener('click', (e) => {
    // The label and the input open the picker themselves.
    if (current || e.target.closest('label, input')) return;
    input.click();
  });
  zone.addEventListener('keydown', (e) => {
    if (e.target !== zone || (e.key !== 'Enter' && e.key !== ' ')) return;
    e.preventDefault();
    if (!current) input.click();
  });
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  zone.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = current ? 'none' : 'copy';
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove('dragging');
  });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    const files = e.dataTransfer ? e.dataTransfer.files : null;
    if (!files || files.length === 0) return;
    start(files[0]); // one at a time: the first file of several
  });
  // A file dropped next to the zone must not replace the page with the file.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (hasFiles(e) && !zone.contains(e.target)) {
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'none';
      }
    });
  }
  cancelButton.addEventListener('click', () => {
    if (current) current.abort();
  });
  loadOptions();
}
