/** JSON schemas of the API's requests (validated by fastify, published in /openapi.json). */

const webhook = { type: 'string', format: 'uri', description: 'http(s) URL called (POST, JSON) when the job or batch finishes; retried with backoff' } as const;
const topK = { type: 'integer', minimum: 1, maximum: 100, description: 'how many classes each result lists (default FRAMEWISE_TOP_K)' } as const;
const windows = {
  type: 'string',
  minLength: 1,
  maxLength: 40,
  description: 'label window by window ("which action, when", as `label --windows`): `W,S` seconds (e.g. `2,1`), `W` (S = W/2) or `auto` (2,1); the result adds `windows`, `segments` and `segmentation`',
} as const;
const threshold = { type: 'number', minimum: 0, maximum: 1, description: 'with `windows`: the segments\' unknown threshold (as `label --threshold`; default the model\'s unknownThreshold, else 0.5)' } as const;
const hysteresis = { type: 'number', minimum: 0, maximum: 1, description: 'with `windows`: a class holds down to threshold − hysteresis (as `label --hysteresis`; default 0.1, at most the threshold)' } as const;
const minSegment = { type: 'number', minimum: 0, maximum: 86400, description: 'with `windows`: shorter segments are absorbed by a neighbour, seconds (as `label --min-segment`; default the window length)' } as const;

export const CLIP_JSON_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    path: { type: 'string', minLength: 1, description: 'a video file on the server, within FRAMEWISE_PATH_ROOTS' },
    url: { type: 'string', format: 'uri', description: 'an http(s) URL to download (only when FRAMEWISE_ALLOW_URL_INPUT is true)' },
    webhook,
    topK,
    windows,
    threshold,
    hysteresis,
    minSegment,
  },
} as const;

export const BATCH_BODY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    path: { type: 'string', minLength: 1, description: 'a folder (its videos, recursively), a video or a .csv manifest, within FRAMEWISE_PATH_ROOTS' },
    glob: { type: 'string', minLength: 1, description: 'an absolute glob, e.g. /archive/2024/**/*.mp4 (its folder within the roots)' },
    manifest: { type: 'string', minLength: 1, description: 'a CSV with a `path` column (relative to the CSV)' },
    mode: { type: 'string', enum: ['missing', 'all'], default: 'all', description: '`missing` skips files already labelled by the current model version' },
    webhook,
    topK,
    windows,
    threshold,
    hysteresis,
    minSegment,
  },
} as const;

export const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: { type: 'string' } } } as const;

const format = { type: 'string', enum: ['jsonl', 'csv'], default: 'jsonl' } as const;
const limit = { type: 'integer', minimum: 1, maximum: 10000, description: 'one page of at most this many results (the next page: `after` = the `X-Next-After` header); absent: every result, streamed' } as const;
const after = { type: 'integer', minimum: 0, description: 'the page after this cursor (`X-Next-After` of the previous page)' } as const;

export const RESULTS_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { format },
} as const;

export const BATCH_RESULTS_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { format, limit, after },
} as const;

export const BATCH_STATUS_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { reconcile: { type: 'boolean', default: false, description: 'recount the batch from its entries and jobs (after a crash; costs a read of the unfinished entries)' } },
} as const;

export const RESULTS_FILTER_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: {
    label: { type: 'string', minLength: 1, description: 'results with this label' },
    minConfidence: { type: 'number', minimum: 0, maximum: 1, description: 'results at least this confident' },
    model: { type: 'string', minLength: 1, description: 'NAME (any version) or NAME@VERSION' },
    batch: { type: 'string', pattern: '^batch-[0-9a-f]{32}$', description: "this batch's files (their path as the batch listed them)" },
    pathPrefix: { type: 'string', minLength: 1, description: 'paths starting with this text' },
    since: { type: 'string', minLength: 1, description: 'finished at or after this time (ISO 8601)' },
    until: { type: 'string', minLength: 1, description: 'finished before this time (ISO 8601)' },
    ok: { type: 'boolean', description: 'successes only (true) or failures only (false)' },
    format,
    limit,
    after,
  },
} as const;

export const UPLOAD_QUERY = {
  type: 'object',
  additionalProperties: false,
  properties: { webhook, topK, windows, threshold, hysteresis, minSegment },
} as const;

export const ERROR_BODY = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
} as const;

export const SUBMITTED_BODY = {
  type: 'object',
  properties: {
    jobId: { type: 'string' },
    created: { type: 'boolean', description: 'false when the same bytes had been submitted before (same model): the same job' },
    state: { type: 'string' },
    source: { type: 'string', description: 'the clip as this request named it (the file name of an upload, the path or URL given)' },
    result: { type: 'object', additionalProperties: true, description: 'present when the job had already completed (its `path` is this request\'s `source`)' },
  },
} as const;
