// framewise web page: plain JavaScript (an ES module), no framework, nothing loaded from elsewhere.
// It uses the public HTTP API only:
//   POST /v1/clips (multipart `file`, or JSON {path}) → {jobId}; GET /v1/jobs/:id; GET /v1/jobs/:id/events (SSE);
//   GET /v1/jobs/:id/video; POST/GET /v1/batches…; GET /v1/models, POST /v1/models/:name/promote, GET /v1/trainings.
// Views (hash routes): #/ (label a clip), #/jobs/<id>, #/batches, #/batches/<id>, #/models.

const app = document.getElementById('app');
const KEY_STORE = 'framewise.apiKey';
const JOBS_STORE = 'framewise.jobs';
const BATCHES_STORE = 'framewise.batches';
const STAGES = ['decode', 'embed', 'classify'];
const PALETTE = ['#2f6fdb', '#d9822b', '#2a9d6f', '#b5488d', '#7a5cc7', '#c8a21e', '#d1453b', '#1f9fb4', '#6b8e23', '#8c5a3c'];

let apiKey = localStorage.getItem(KEY_STORE) || '';
let webConfig = { pathInput: false, urlInput: false, apiKeyRequired: false, windows: false };
let cleanup = () => {};

// ---------------------------------------------------------------------------------------------
// small helpers

/** Create an element: h('div', {class: 'x', onclick: fn}, 'text', child…). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmtTime = (s) => {
  if (!Number.isFinite(s)) return '–';
  const m = Math.floor(s / 60);
  const sec = s - m * 60;
  return m > 0 ? `${m}:${sec.toFixed(1).padStart(4, '0')}` : `${sec.toFixed(1)} s`;
};
const pct = (p) => `${(100 * p).toFixed(1)} %`;
const shortId = (id) => (id && id.length > 18 ? `${id.slice(0, 14)}…${id.slice(-4)}` : id);

function authHeaders(extra = {}) {
  return apiKey ? { ...extra, authorization: `Bearer ${apiKey}` } : extra;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; JSON in and out; errors become ApiError with the API's {error: {code, message}}. */
async function api(path, opts = {}) {
  const headers = authHeaders(opts.json !== undefined ? { 'content-type': 'application/json' } : {});
  let res;
  try {
    res = await fetch(path, { method: opts.method || 'GET', headers, body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body, signal: opts.signal });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', `cannot reach the server (${err && err.message ? err.message : err})`);
  }
  const text = await res.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = body && body.error ? body.error : { code: `HTTP_${res.status}`, message: typeof body === 'string' && body ? body : res.statusText };
    if (res.status === 401) askForKey(e.message);
    throw new ApiError(res.status, e.code, e.message);
  }
  return body;
}

function errorBox(err) {
  const text = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err && err.message ? err.message : err);
  return h('div', { class: 'box error', role: 'alert' }, text);
}

function remember(store, entry, max = 30) {
  const list = JSON.parse(localStorage.getItem(store) || '[]').filter((e) => e.id !== entry.id);
  list.unshift(entry);
  localStorage.setItem(store, JSON.stringify(list.slice(0, max)));
}
const recall = (store) => JSON.parse(localStorage.getItem(store) || '[]');

/** Download something the API serves (with the API key when one is set) as a file. */
async function download(path, filename) {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, await res.text());
  saveBlob(await res.blob(), filename);
}
function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function askForKey(reason) {
  const v = window.prompt(`${reason ? `${reason}\n\n` : ''}API key for this server (sent as "Authorization: Bearer <key>"; kept in this browser):`, apiKey);
  if (v === null) return;
  apiKey = v.trim();
  if (apiKey) localStorage.setItem(KEY_STORE, apiKey);
  else localStorage.removeItem(KEY_STORE);
  route();
}

/**
 * Server-sent events over fetch (so the API key can be sent, which EventSource cannot do).
 * Calls onEvent(name, data) per event; resolves when the stream ends.
 */
async function streamEvents(path, onEvent, signal) {
  const res = await fetch(path, { headers: authHeaders({ accept: 'text/event-stream' }), signal });
  if (!res.ok || !res.body) throw new ApiError(res.status, `HTTP_${res.status}`, 'the event stream could not be opened');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length === 0) continue; // a comment (keep-alive)
      let parsed;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        parsed = data.join('\n');
      }
      onEvent(event, parsed);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// view: label a clip

function viewUpload() {
  const fileInput = h('input', { type: 'file', accept: 'video/*,.mp4,.mov,.mkv,.webm,.avi', id: 'clip-file', required: true });
  const topK = h('input', { type: 'number', min: 1, max: 100, value: 3, id: 'top-k', style: { width: '5rem' } });
  // long videos: window by window (only when the API accepts `windows`)
  const windows = h('input', { type: 'text', id: 'windows', value: 'auto', style: { width: '6rem' }, title: 'W,S in seconds, or auto (2 s windows every 1 s)' });
  const useWindows = h('input', { type: 'checkbox', id: 'use-windows', checked: true });
  const windowsField = webConfig.windows ? h('label', { class: 'field' }, h('span', {}, useWindows, ' windows (W,S)'), windows) : null;
  const windowsValue = () => (webConfig.windows && useWindows.checked && windows.value.trim() ? windows.value.trim() : undefined);
  const status = h('div', { id: 'upload-status' });
  const uploadBar = h('div', { class: 'bar' }, h('span'));
  const submitButton = h('button', { type: 'submit', id: 'upload-button' }, 'Upload and label');
  const uploadForm = h(
    'form',
    {
      id: 'upload-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        const file = fileInput.files && fileInput.files[0];
        if (!file) return;
        submitButton.disabled = true;
        status.replaceChildren(h('div', { class: 'row small muted' }, `uploading ${file.name} (${(file.size / 1e6).toFixed(1)} MB)`), uploadBar);
        uploadClip(file, { topK: Number(topK.value) || undefined, windows: windowsValue() }, (p) => (uploadBar.firstChild.style.width = `${Math.round(p * 100)}%`))
          .then((out) => {
            remember(JOBS_STORE, { id: out.jobId, name: file.name, at: new Date().toISOString() });
            location.hash = `#/jobs/${out.jobId}`;
          })
          .catch((err) => {
            status.replaceChildren(errorBox(err));
            submitButton.disabled = false;
          });
      },
    },
    h('div', { class: 'row' }, h('label', { class: 'field' }, 'Video file', fileInput), h('label', { class: 'field' }, 'Top K', topK), windowsField, submitButton),
  );

  const cards = [h('h1', {}, 'Label a clip'), h('section', { class: 'card' }, h('h2', {}, 'Upload a video'), uploadForm, status)];

  if (webConfig.pathInput) {
    const pathInput = h('input', { type: 'text', id: 'server-path', placeholder: '/archive/clip.mp4 (within FRAMEWISE_PATH_ROOTS)' });
    const pathStatus = h('div');
    cards.push(
      h(
        'section',
        { class: 'card' },
        h('h2', {}, 'Or a file on the server'),
        h(
          'form',
          {
            id: 'path-form',
            onsubmit: (ev) => {
              ev.preventDefault();
              const path = pathInput.value.trim();
              if (!path) return;
              api('/v1/clips', { method: 'POST', json: { path, topK: Number(topK.value) || undefined, windows: windowsValue() } })
                .then((out) => {
                  remember(JOBS_STORE, { id: out.jobId, name: path, at: new Date().toISOString() });
                  location.hash = `#/jobs/${out.jobId}`;
                })
                .catch((err) => pathStatus.replaceChildren(errorBox(err)));
            },
          },
          h('div', { class: 'row' }, h('label', { class: 'field' }, 'Server path', pathInput), h('button', { type: 'submit' }, 'Label')),
        ),
        pathStatus,
      ),
    );
  }

  const recent = recall(JOBS_STORE);
  cards.push(
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Recent jobs (this browser)'),
      recent.length === 0
        ? h('p', { class: 'muted' }, 'None yet.')
        : h(
            'table',
            {},
            h('tr', {}, h('th', {}, 'Clip'), h('th', {}, 'Job'), h('th', {}, 'Submitted')),
            recent.map((j) => h('tr', {}, h('td', {}, j.name), h('td', {}, h('a', { href: `#/jobs/${j.id}`, class: 'mono' }, shortId(j.id))), h('td', { class: 'muted' }, new Date(j.at).toLocaleString()))),
          ),
    ),
  );
  app.replaceChildren(...cards);
  return () => {};
}

/** POST /v1/clips as multipart with upload progress (XMLHttpRequest: fetch cannot report upload progress). */
function uploadClip(file, params, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    xhr.open('POST', `/v1/clips${query.size > 0 ? `?${query}` : ''}`);
    if (apiKey) xhr.setRequestHeader('authorization', `Bearer ${apiKey}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed (network)'));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status === 200 || xhr.status === 202) return resolve(body);
      if (xhr.status === 401) askForKey(body && body.error ? body.error.message : 'API key needed');
      const e = body && body.error ? body.error : { code: `HTTP_${xhr.status}`, message: xhr.statusText };
      reject(new ApiError(xhr.status, e.code, e.message));
    };
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------------------------------------
// view: one job (progress, then the video with its timeline)

function viewJob(id) {
  const ctl = new AbortController();
  const badge = h('span', { class: 'badge', id: 'job-state' }, '…');
  const title = h('span', { class: 'mono' }, shortId(id));
  const rows = {};
  const stageGrid = h(
    'div',
    { class: 'stages', id: 'stages' },
    STAGES.map((s) => {
      const bar = h('div', { class: 'bar', dataset: { stage: s } }, h('span'));
      const text = h('span', { class: 'small muted' }, 'waiting');
      rows[s] = { bar, text };
      return [h('span', {}, s), bar, text];
    }),
  );
  const cancelButton = h('button', { class: 'danger', type: 'button', onclick: () => api(`/v1/jobs/${id}`, { method: 'DELETE' }).catch((e) => message.replaceChildren(errorBox(e))) }, 'Cancel');
  const message = h('div');
  const resultArea = h('div', { id: 'result' });
  app.replaceChildren(
    h('h1', {}, 'Job ', title, ' ', badge),
    h('section', { class: 'card', id: 'progress' }, h('div', { class: 'row', style: { justifyContent: 'space-between' } }, h('h2', {}, 'Progress'), cancelButton), stageGrid, message),
    resultArea,
  );

  let finished = false;
  const setStage = (stage, state, progress, detail) => {
    const r = rows[stage];
    if (!r) return;
    const p = state === 'completed' ? 100 : Math.max(0, Math.min(100, Number(progress) || 0));
    r.bar.firstChild.style.width = `${p}%`;
    r.bar.classList.toggle('done', state === 'completed');
    r.bar.classList.toggle('failed', state === 'failed');
    r.bar.dataset.state = state;
    // a windows pass says how far into the video it is
    const seconds = detail && detail.durationSec > 0 ? ` · ${Number(detail.doneSec).toFixed(1)} / ${Number(detail.durationSec).toFixed(1)} s` : '';
    r.text.textContent = state === 'active' ? `running ${p}%${seconds}` : state;
  };
  const setState = (state) => {
    badge.textContent = state;
    badge.className = `badge ${state}`;
    if (['completed', 'failed', 'cancelled'].includes(state)) cancelButton.remove();
  };
  const applyStatus = (st) => {
    // the name this browser submitted it under (the server names uploads by content only)
    const mine = recall(JOBS_STORE).find((j) => j.id === id);
    if (mine || st.source) title.textContent = mine ? mine.name : st.source;
    for (const s of STAGES) if (st.stages && st.stages[s]) setStage(s, st.stages[s].state, st.stages[s].progress, st.stages[s].detail);
    setState(st.state);
    if (st.state === 'completed' && st.result) finish(st.result);
    else if (st.state === 'failed' || st.state === 'cancelled') finishWithError(st.error);
  };
  const finish = (result) => {
    if (finished) return;
    finished = true;
    setState('completed');
    for (const s of STAGES) setStage(s, 'completed', 100);
    renderResult(resultArea, id, result);
  };
  const finishWithError = (error) => {
    if (finished) return;
    finished = true;
    message.replaceChildren(errorBox(new ApiError(0, (error && error.code) || 'FAILED', (error && error.message) || 'the job failed')));
  };

  const poll = async () => {
    while (!finished && !ctl.signal.aborted) {
      try {
        applyStatus(await api(`/v1/jobs/${id}`, { signal: ctl.signal }));
      } catch (err) {
        if (ctl.signal.aborted) return;
        message.replaceChildren(errorBox(err));
        if (err instanceof ApiError && err.status === 404) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };

  api(`/v1/jobs/${id}`, { signal: ctl.signal })
    .then((st) => {
      applyStatus(st);
      if (finished) return;
      return streamEvents(
        `/v1/jobs/${id}/events`,
        (event, data) => {
          if (event === 'stage') setStage(data.stage, data.state, data.progress, data.detail);
          else if (event === 'state') setState(data.state);
          else if (event === 'result') finish(data.result || data.line);
          else if (event === 'failed' || event === 'cancelled') {
            setState(event);
            finishWithError(data.error);
          }
        },
        ctl.signal,
      ).then(() => {
        if (!finished) return poll(); // the stream ended early: keep going by polling
      });
    })
    .catch((err) => {
      if (ctl.signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) {
        message.replaceChildren(errorBox(err));
        return;
      }
      return poll();
    });
  return () => ctl.abort();
}

/**
 * A label's colour, the same on every page of this browser: the first time a label is seen it
 * takes a free palette colour (labels of the result first, in order), remembered in localStorage.
 */
const COLORS_STORE = 'framewise.colors';
const colorFor = (labels) => {
  const known = JSON.parse(localStorage.getItem(COLORS_STORE) || '{}');
  const take = (label) => {
    if (known[label]) return known[label];
    const used = new Set(Object.values(known));
    known[label] = PALETTE.find((c) => !used.has(c)) || PALETTE[Object.keys(known).length % PALETTE.length];
    localStorage.setItem(COLORS_STORE, JSON.stringify(known));
    return known[label];
  };
  for (const l of labels) take(l);
  return take;
};

/** The result of a job: the video, the segments timeline under it, windows, top-k, provenance. */
function renderResult(area, jobId, r) {
  const duration = (r.video && r.video.durationSec) || r.durationSec || 0;
  const labels = r.labels || r.topK.map((t) => t.label);
  const color = colorFor(labels);
  // a clip-level result is one segment over the whole clip
  const segments = r.segments && r.segments.length > 0 ? r.segments : [{ label: r.label, start: 0, end: duration, confidence: r.confidence }];
  const windowed = Array.isArray(r.windows);

  const video = h('video', { controls: true, preload: 'metadata', id: 'video', playsinline: true });
  const setVideoSource = async () => {
    if (!apiKey) {
      video.src = `/v1/jobs/${jobId}/video`;
      return;
    }
    // <video> cannot send the API key: fetch the file and play it from memory
    const res = await fetch(`/v1/jobs/${jobId}/video`, { headers: authHeaders() });
    if (res.ok) video.src = URL.createObjectURL(await res.blob());
  };
  setVideoSource().catch(() => undefined);

  const playhead = h('div', { class: 'playhead' });
  const span = duration > 0 ? duration : Math.max(...segments.map((s) => s.end), 1);
  const seek = (t) => {
    video.currentTime = Math.min(Math.max(0, t + 0.001), span);
    video.play().catch(() => undefined);
  };
  const timeline = h(
    'div',
    { class: 'timeline', id: 'timeline', role: 'list', 'aria-label': 'segments' },
    segments.map((s) =>
      h(
        'button',
        {
          type: 'button',
          role: 'listitem',
          class: `segment${s.label === 'unknown' ? ' unknown' : ''}`,
          dataset: { label: s.label, start: s.start, end: s.end, confidence: s.confidence },
          title: `${s.label} · ${fmtTime(s.start)} – ${fmtTime(s.end)} · confidence ${pct(s.confidence)} (click to play from here)`,
          style: { left: `${(100 * s.start) / span}%`, width: `${(100 * (s.end - s.start)) / span}%`, ...(s.label === 'unknown' ? {} : { background: color(s.label) }) },
          onclick: () => seek(s.start),
        },
        s.label,
      ),
    ),
    playhead,
  );
  video.addEventListener('timeupdate', () => (playhead.style.left = `${(100 * video.currentTime) / span}%`));
  const ticks = 6;
  const axis = h('div', { class: 'axis' }, Array.from({ length: ticks + 1 }, (_, i) => h('span', { style: { left: `${(100 * i) / ticks}%` } }, fmtTime((span * i) / ticks))));

  const legend = h(
    'div',
    { class: 'legend' },
    [...new Set([...labels, ...segments.map((s) => s.label)])].map((l) => h('span', {}, h('i', { style: { background: l === 'unknown' ? '#9aa3b2' : color(l) } }), l)),
  );

  const segTable = h(
    'table',
    { id: 'segments' },
    h('tr', {}, h('th', {}, 'Segment'), h('th', { class: 'num' }, 'Start'), h('th', { class: 'num' }, 'End'), h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Confidence')),
    segments.map((s) =>
      h(
        'tr',
        { class: 'clickable', onclick: () => seek(s.start), dataset: { label: s.label } },
        h('td', {}, h('i', { style: { display: 'inline-block', width: '0.7rem', height: '0.7rem', marginRight: '0.4rem', background: s.label === 'unknown' ? '#9aa3b2' : color(s.label) } }), s.label),
        h('td', { class: 'num' }, fmtTime(s.start)),
        h('td', { class: 'num' }, fmtTime(s.end)),
        h('td', { class: 'num' }, fmtTime(s.end - s.start)),
        h('td', { class: 'num' }, pct(s.confidence)),
      ),
    ),
  );

  const heat = windowed ? h('canvas', { class: 'heat', id: 'windows-heat' }) : null;

  const topk = h(
    'ul',
    { class: 'topk', id: 'topk' },
    r.topK.map((t) =>
      h('li', { dataset: { label: t.label } }, h('div', { class: 'row', style: { justifyContent: 'space-between' } }, h('span', {}, t.label), h('span', { class: 'mono' }, pct(t.p))), h('div', { class: 'bar' }, h('span', { style: { width: `${100 * t.p}%`, background: color(t.label) } }))),
    ),
  );

  const facts = h(
    'dl',
    { class: 'facts' },
    [
      ['model', `${r.model.id} ${r.model.version}`],
      ['backbone', `${r.backbone.id} (${r.backbone.featureKind}) · ${r.backbone.engine}${r.backbone.backend ? ` / ${r.backbone.backend}` : ''}`],
      ['sampling', `${r.sampling.policy} · ${r.sampling.size}px ${r.sampling.crop}`],
      ['frames', `${r.frames}${r.cached ? ' (from the feature store)' : ''}`],
      ['duration', fmtTime(duration)],
      r.video ? ['video', `${r.video.width}×${r.video.height} @ ${r.video.fps} fps`] : null,
      r.segmentation ? ['segments', `threshold ${r.segmentation.threshold} (${r.segmentation.thresholdSource}) · hysteresis ${r.segmentation.hysteresis} · min ${r.segmentation.minSegmentSec} s`] : null,
      r.aggregate ? ['top-k from', r.aggregate] : null,
    ]
      .filter(Boolean)
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
  );

  const jsonLink = h('a', { href: `/v1/jobs/${jobId}`, target: '_blank', rel: 'noopener', id: 'json-link' }, 'JSON (GET /v1/jobs/…)');
  const saveLink = h('a', { href: '#', onclick: (e) => (e.preventDefault(), saveBlob(new Blob([`${JSON.stringify(r, null, 2)}\n`], { type: 'application/json' }), `${jobId}.json`)) }, 'download result JSON');

  area.replaceChildren(
    h(
      'div',
      { class: 'grid2' },
      h(
        'section',
        { class: 'card player' },
        video,
        timeline,
        axis,
        legend,
        !windowed ? h('p', { class: 'small muted' }, 'A clip-level result: one label for the whole clip (long videos labelled with windows show their segments here).') : null,
        heat ? [h('div', { class: 'small muted', style: { marginTop: '0.6rem' } }, 'Per-window scores (one row per class, darker = more probable)'), heat] : null,
      ),
      h(
        'div',
        {},
        h('section', { class: 'card' }, h('h2', {}, 'Clip: ', h('span', { id: 'clip-label' }, r.label), ' ', h('span', { class: 'muted small' }, pct(r.confidence))), topk),
        h('section', { class: 'card' }, h('h2', {}, 'Provenance'), facts, h('p', { class: 'small' }, jsonLink, ' · ', saveLink)),
      ),
    ),
    h('section', { class: 'card' }, h('h2', {}, `Segments (${segments.length})`), segTable),
  );
  if (heat) requestAnimationFrame(() => drawWindows(heat, r, span, color));
}

/** One row per class, one cell per window (its centre stride; the first and last reach the ends), shade = score. */
function drawWindows(canvas, r, span, color) {
  const labels = r.labels || [];
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth || 600);
  const rowH = 16;
  const labelW = 80;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round((rowH * labels.length + 2) * dpr);
  canvas.style.height = `${rowH * labels.length + 2}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.scale(dpr, dpr);
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  const x = (t) => labelW + ((width - labelW) * t) / span;
  const stride = (r.sampling && r.sampling.strideSec) || 0;
  const n = r.windows.length;
  labels.forEach((label, c) => {
    ctx.globalAlpha = 1;
    ctx.fillStyle = '#1c2330';
    ctx.fillText(label, 4, c * rowH + rowH / 2 + 1);
    r.windows.forEach((w, i) => {
      const mid = (w.start + w.end) / 2;
      const a = stride > 0 && i > 0 ? Math.max(w.start, mid - stride / 2) : w.start;
      const b = stride > 0 && i < n - 1 ? Math.min(w.end, mid + stride / 2) : w.end;
      ctx.globalAlpha = Math.max(0.04, w.scores[c] || 0);
      ctx.fillStyle = color(label);
      ctx.fillRect(x(a), c * rowH + 1, Math.max(1, x(b) - x(a)), rowH - 2);
    });
  });
  ctx.globalAlpha = 1;
}

// ---------------------------------------------------------------------------------------------
// views: batches

function countsGrid(counts, skipped) {
  const order = ['total', 'queued', 'active', 'paused', 'completed', 'failed', 'cancelled'];
  return h('div', { class: 'counts' }, order.map((k) => h('div', { dataset: { count: k } }, h('b', {}, String(counts && counts[k] !== undefined ? counts[k] : 0)), k)), skipped !== undefined ? h('div', { dataset: { count: 'skipped' } }, h('b', {}, String(skipped)), 'skipped') : null);
}

function viewBatches() {
  let timer;
  const kind = h('select', { id: 'batch-kind' }, h('option', { value: 'path' }, 'folder or file'), h('option', { value: 'glob' }, 'glob'), h('option', { value: 'manifest' }, 'manifest CSV'));
  const source = h('input', { type: 'text', id: 'batch-source', placeholder: '/archive/2024 (within FRAMEWISE_PATH_ROOTS)' });
  const mode = h('select', { id: 'batch-mode' }, h('option', { value: 'all' }, 'all files'), h('option', { value: 'missing' }, 'missing only (not labelled by the current model)'));
  const status = h('div');
  const openId = h('input', { type: 'text', id: 'batch-id', placeholder: 'batch-…' });
  const list = h('div', { id: 'batch-list' });
  app.replaceChildren(
    h('h1', {}, 'Batches'),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Label a folder, glob or manifest on the server'),
      webConfig.pathInput ? null : h('p', { class: 'box info small' }, 'This server reads no server paths (FRAMEWISE_PATH_ROOTS is not set): batches will be refused.'),
      h(
        'form',
        {
          id: 'batch-form',
          onsubmit: (ev) => {
            ev.preventDefault();
            const value = source.value.trim();
            if (!value) return;
            api('/v1/batches', { method: 'POST', json: { [kind.value]: value, mode: mode.value } })
              .then((out) => {
                remember(BATCHES_STORE, { id: out.batchId, name: value, at: new Date().toISOString() });
                location.hash = `#/batches/${out.batchId}`;
              })
              .catch((err) => status.replaceChildren(errorBox(err)));
          },
        },
        h('div', { class: 'row' }, h('label', { class: 'field' }, 'Kind', kind), h('label', { class: 'field' }, 'Source', source), h('label', { class: 'field' }, 'Mode', mode), h('button', { type: 'submit' }, 'Start batch')),
      ),
      status,
    ),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Batches (this browser)'),
      h('form', { class: 'row', onsubmit: (ev) => (ev.preventDefault(), openId.value.trim() && (location.hash = `#/batches/${openId.value.trim()}`)) }, h('label', { class: 'field' }, 'Open a batch by id', openId), h('button', { type: 'submit', class: 'secondary' }, 'Open')),
      list,
    ),
  );
  const refresh = async () => {
    const known = recall(BATCHES_STORE);
    if (known.length === 0) {
      list.replaceChildren(h('p', { class: 'muted' }, 'None yet.'));
      return;
    }
    const rows = await Promise.all(known.map((b) => api(`/v1/batches/${b.id}`).then((s) => ({ b, s }), (e) => ({ b, e }))));
    list.replaceChildren(
      h(
        'table',
        {},
        h('tr', {}, h('th', {}, 'Batch'), h('th', {}, 'Source'), h('th', {}, 'State'), h('th', {}, 'Progress'), h('th', { class: 'num' }, 'Done / total'), h('th', { class: 'num' }, 'Failed')),
        rows.map(({ b, s, e }) =>
          h(
            'tr',
            { class: 'clickable', onclick: () => (location.hash = `#/batches/${b.id}`) },
            h('td', { class: 'mono' }, shortId(b.id)),
            h('td', {}, b.name),
            h('td', {}, s ? h('span', { class: `badge ${s.state}` }, s.state) : h('span', { class: 'badge failed' }, e.code)),
            h('td', {}, s ? h('div', { class: 'bar' }, h('span', { style: { width: `${Math.round(100 * (s.progress > 1 ? s.progress / 100 : s.progress))}%` } })) : ''),
            h('td', { class: 'num' }, s ? `${s.counts.completed + s.counts.failed + s.counts.cancelled} / ${s.counts.total}` : ''),
            h('td', { class: 'num' }, s ? String(s.counts.failed) : ''),
          ),
        ),
      ),
    );
  };
  const loop = () => refresh().finally(() => (timer = setTimeout(loop, 2000)));
  loop();
  return () => clearTimeout(timer);
}

const batchDone = (s) => s.finishedAt != null || s.state === 'completed' || s.state === 'cancelled' || s.state === 'failed';
const progressFraction = (s) => (s.progress > 1 ? s.progress / 100 : s.progress || 0);

function viewBatch(id) {
  let timer;
  let stopped = false;
  const badge = h('span', { class: 'badge', id: 'batch-state' }, '…');
  const bar = h('div', { class: 'bar', id: 'batch-progress' }, h('span'));
  const countsBox = h('div', { id: 'batch-counts' });
  const facts = h('dl', { class: 'facts' });
  const message = h('div');
  const results = h('div', { id: 'batch-results' });
  const act = (action) => api(`/v1/batches/${id}/${action}`, { method: 'POST' }).then(refresh, (e) => message.replaceChildren(errorBox(e)));
  const controls = [
    h('button', { type: 'button', class: 'secondary', id: 'batch-pause', onclick: () => act('pause') }, 'Pause'),
    h('button', { type: 'button', class: 'secondary', id: 'batch-resume', onclick: () => act('resume') }, 'Resume'),
    h('button', { type: 'button', class: 'danger', id: 'batch-cancel', onclick: () => act('cancel') }, 'Cancel'),
  ];
  const actions = h(
    'div',
    { class: 'row' },
    controls,
    h('span', { class: 'spacer' }),
    h('a', { class: 'button secondary', id: 'download-jsonl', href: `/v1/batches/${id}/results?format=jsonl`, onclick: (e) => (e.preventDefault(), download(`/v1/batches/${id}/results?format=jsonl`, `${id}.jsonl`).catch((err) => message.replaceChildren(errorBox(err)))) }, 'Download JSONL'),
    h('a', { class: 'button secondary', id: 'download-csv', href: `/v1/batches/${id}/results?format=csv`, onclick: (e) => (e.preventDefault(), download(`/v1/batches/${id}/results?format=csv`, `${id}.csv`).catch((err) => message.replaceChildren(errorBox(err)))) }, 'Download CSV'),
  );
  app.replaceChildren(
    h('h1', {}, 'Batch ', h('span', { class: 'mono' }, shortId(id)), ' ', badge),
    h('section', { class: 'card' }, bar, h('div', { style: { height: '0.8rem' } }), countsBox, h('div', { style: { height: '0.8rem' } }), actions, message),
    h('div', { class: 'grid2' }, h('section', { class: 'card' }, h('h2', {}, 'Results so far'), results), h('section', { class: 'card' }, h('h2', {}, 'Batch'), facts)),
  );
  let shownResults = -1;
  async function refresh() {
    let s;
    try {
      s = await api(`/v1/batches/${id}`);
    } catch (err) {
      message.replaceChildren(errorBox(err));
      if (err instanceof ApiError && err.status === 404) stopped = true;
      return;
    }
    badge.textContent = s.state;
    badge.className = `badge ${s.state}`;
    bar.firstChild.style.width = `${Math.round(100 * progressFraction(s))}%`;
    bar.classList.toggle('done', s.state === 'completed');
    countsBox.replaceChildren(countsGrid(s.counts, s.skipped));
    facts.replaceChildren(
      ...[
        ['source', Object.entries(s.source || {}).filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`).join(', ')],
        ['mode', s.mode],
        ['listing', s.ingest ? `${s.ingest.state}: ${s.ingest.found} found, ${s.ingest.hashed} hashed, ${s.ingest.queued} queued, ${s.ingest.skipped} skipped, ${s.ingest.rejected} rejected${s.ingest.error ? ` (${s.ingest.error.code})` : ''}` : '–'],
        ['created', s.createdAt ? new Date(s.createdAt).toLocaleString() : '–'],
        ['finished', s.finishedAt ? new Date(s.finishedAt).toLocaleString() : '–'],
      ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    );
    const done = s.counts.completed + s.counts.failed + s.counts.cancelled;
    if (done !== shownResults) {
      shownResults = done;
      // the first page only: a batch may hold a million files (the downloads stream them all)
      const res = await fetch(`/v1/batches/${id}/results?format=jsonl&limit=300`, { headers: authHeaders() });
      const text = res.ok ? await res.text() : '';
      const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const more = res.headers.get('x-next-after') ? [h('p', { class: 'muted small' }, `… and ${done - lines.length} more (download for all)`)] : [];
      results.replaceChildren(
        lines.length === 0
          ? h('p', { class: 'muted' }, 'No finished files yet.')
          : h(
              'table',
              {},
              h('tr', {}, h('th', {}, 'File'), h('th', {}, 'Label'), h('th', { class: 'num' }, 'Confidence')),
              lines.slice(0, 300).map((r) => h('tr', { dataset: { ok: String(r.ok) } }, h('td', {}, r.path), r.ok ? [h('td', {}, r.label), h('td', { class: 'num' }, pct(r.confidence))] : h('td', { colspan: 2, class: 'small', style: { color: 'var(--bad)' } }, `${r.error.code}: ${r.error.message}`))),
            ),
        ...more,
      );
    }
    const [pause, resume] = controls;
    pause.disabled = s.state !== 'running';
    resume.disabled = s.state !== 'paused';
    for (const b of controls.slice(2)) b.disabled = batchDone(s);
    if (batchDone(s)) stopped = true;
  }
  const loop = () =>
    refresh().finally(() => {
      if (!stopped) timer = setTimeout(loop, 1500);
    });
  loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------------------------------------
// view: models

/** Open a report (HTML) in a new tab: fetched with the API key, shown from a blob. */
async function openReport(url) {
  const res = await fetch(url, { headers: authHeaders() });
  if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, 'the report could not be read');
  window.open(URL.createObjectURL(await res.blob()), '_blank', 'noopener');
}

const num = (x) => (typeof x === 'number' ? pct(x) : '–');

function modelCard(m, current, reload) {
  const msg = h('div');
  const fail = (err) => msg.replaceChildren(errorBox(err));
  return h(
    'section',
    { class: 'card', dataset: { model: m.name } },
    h('h2', {}, m.name, m.promoted ? [' ', h('span', { class: 'muted small' }, `promoted: ${m.promoted}`)] : [' ', h('span', { class: 'badge' }, 'no promoted version')]),
    h(
      'table',
      {},
      h(
        'tr',
        {},
        h('th', {}, 'Version'),
        h('th', {}, 'Created'),
        h('th', {}, 'Labels'),
        h('th', { class: 'num' }, 'Top-1'),
        h('th', { class: 'num' }, 'Top-5'),
        h('th', { class: 'num' }, 'Mean class acc.'),
        h('th', { class: 'num' }, 'Baseline top-1'),
        h('th', { class: 'num' }, 'Unknown below'),
        h('th', {}, 'Report'),
        h('th', {}, ''),
      ),
      m.versions.map((v) => {
        const val = (v.metrics && v.metrics.validation) || {};
        const base = v.metrics && v.metrics.baseline && v.metrics.baseline.validation;
        const inUse = current && current.id === m.name && current.version === v.version;
        return h(
          'tr',
          { dataset: { version: v.version } },
          h(
            'td',
            { class: 'mono' },
            v.version,
            v.promoted ? [' ', h('span', { class: 'badge ok' }, 'promoted')] : null,
            inUse ? [' ', h('span', { class: 'badge ok' }, 'in use')] : null,
            v.training && v.training.cancelled ? [' ', h('span', { class: 'badge', title: `cancelled after epoch ${v.training.cancelled.afterEpoch}; best epoch ${v.training.cancelled.bestEpoch} kept` }, 'cancelled')] : null,
          ),
          h('td', { class: 'muted' }, v.created ? new Date(v.created).toLocaleString() : '–'),
          h('td', {}, (v.labels || []).join(', ')),
          h('td', { class: 'num' }, num(val.top1)),
          h('td', { class: 'num' }, num(val.top5)),
          h('td', { class: 'num' }, num(val.meanClassAccuracy)),
          h('td', { class: 'num' }, num(base && base.top1)),
          h('td', { class: 'num' }, typeof v.unknownThreshold === 'number' && v.unknownThreshold > 0 ? v.unknownThreshold.toFixed(3) : '–'),
          h('td', {}, v.reportUrl ? h('a', { href: v.reportUrl, class: 'report-link', onclick: (ev) => (ev.preventDefault(), openReport(v.reportUrl).catch(fail)) }, 'report') : h('span', { class: 'muted' }, '–')),
          h(
            'td',
            {},
            v.promoted
              ? ''
              : h(
                  'button',
                  {
                    type: 'button',
                    class: 'secondary',
                    onclick: () => api(`/v1/models/${encodeURIComponent(m.name)}/promote`, { method: 'POST', json: { version: v.version } }).then(reload, fail),
                  },
                  'Promote',
                ),
          ),
        );
      }),
    ),
    msg,
  );
}

function trainingsTable(trainings, reload) {
  if (trainings.length === 0) return h('p', { class: 'muted' }, 'No trainings yet (POST /v1/trainings, see the API docs).');
  return h(
    'table',
    { id: 'trainings' },
    h('tr', {}, h('th', {}, 'Training'), h('th', {}, 'Model'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Epochs'), h('th', { class: 'num' }, 'Val. acc.'), h('th', {}, 'Version'), h('th', {}, '')),
    trainings.map((t) => {
      const epochs = (t.progress && t.progress.epochs) || [];
      const lastEpoch = epochs[epochs.length - 1];
      const running = t.state === 'queued' || t.state === 'active';
      return h(
        'tr',
        { dataset: { training: t.trainingId, state: t.state } },
        h('td', { class: 'mono', title: t.trainingId }, shortId(t.trainingId)),
        h('td', {}, t.name || '–'),
        h('td', {}, h('span', { class: `badge ${t.state}` }, t.state), t.error ? [' ', h('span', { class: 'muted small' }, t.error.code)] : null),
        h('td', { class: 'num' }, `${epochs.length}${t.progress && t.progress.maxEpochs ? ` / ${t.progress.maxEpochs}` : ''}`),
        h('td', { class: 'num' }, lastEpoch && typeof lastEpoch.valAcc === 'number' ? pct(lastEpoch.valAcc) : '–'),
        h('td', { class: 'mono' }, t.result ? t.result.version : '–'),
        h('td', {}, running ? h('button', { type: 'button', class: 'secondary', onclick: () => api(`/v1/trainings/${t.trainingId}`, { method: 'DELETE' }).then(reload, reload) }, 'Cancel') : ''),
      );
    }),
  );
}

function viewModels() {
  const area = h('div', { id: 'models' }, h('p', { class: 'muted' }, 'Loading…'));
  app.replaceChildren(h('h1', {}, 'Models'), area);
  let timer;
  let stopped = false;
  const load = () =>
    Promise.all([api('/v1/models'), api('/v1/trainings')])
      .then(([body, tr]) => {
        if (stopped) return;
        const current = body.current || {};
        const trainings = tr.trainings || [];
        area.replaceChildren(
          h(
            'div',
            { class: current.error ? 'box error' : 'box info', id: 'current-model' },
            current.error ? `New jobs have no model: ${current.error.code}: ${current.error.message}` : ['New jobs are labelled with ', h('b', { class: 'mono' }, `${current.id} ${current.version}`), current.ref ? ` (FRAMEWISE_MODEL=${current.ref})` : ''],
          ),
          ...(body.models.length === 0 ? [h('div', { class: 'box info' }, 'The registry has no models yet: train one (framewise train --register NAME, or POST /v1/trainings).')] : body.models.map((m) => modelCard(m, current, load))),
          h('h2', {}, 'Trainings'),
          trainingsTable(trainings, load),
        );
        // follow running trainings
        if (trainings.some((t) => t.state === 'queued' || t.state === 'active')) timer = setTimeout(load, 1000);
      })
      .catch((err) => {
        if (!stopped) area.replaceChildren(errorBox(err));
      });
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---------------------------------------------------------------------------------------------
// routing and start

function route() {
  cleanup();
  cleanup = () => {};
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  const section = parts[0] === 'batches' ? 'batches' : parts[0] === 'models' ? 'models' : 'clip';
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === section);
  try {
    if (parts[0] === 'jobs' && parts[1]) cleanup = viewJob(parts[1]);
    else if (parts[0] === 'batches' && parts[1]) cleanup = viewBatch(parts[1]);
    else if (parts[0] === 'batches') cleanup = viewBatches();
    else if (parts[0] === 'models') cleanup = viewModels();
    else cleanup = viewUpload();
  } catch (err) {
    app.replaceChildren(errorBox(err));
  }
}

async function start() {
  document.getElementById('key-button').addEventListener('click', () => askForKey());
  try {
    webConfig = { ...webConfig, ...(await api('/v1/web/config')) };
  } catch {
    /* older server or no key yet: defaults */
  }
  // with the key, /readyz names the model (`ok (<id> <version>)`); without, only `ok`
  fetch('/readyz', { headers: authHeaders() })
    .then((r) => r.json())
    .then((body) => {
      const m = body && body.checks && body.checks.model;
      if (typeof m === 'string') document.getElementById('model-info').textContent = m.startsWith('ok (') ? `model ${m.replace(/^ok \(|\)$/g, '')}` : m === 'ok' ? 'model ready' : 'model not loadable';
    })
    .catch(() => undefined);
  window.addEventListener('hashchange', route);
  route();
}

start();
