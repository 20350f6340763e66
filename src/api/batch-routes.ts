/**
 * Batches and results over HTTP:
 *
 *   POST /v1/batches                          a folder, glob or manifest on the server → 202 at once (the ingest worker lists it)
 *   GET  /v1/batches/:id[?reconcile=true]     status from a few Redis counters (O(1)); `reconcile` recounts from the entries
 *   GET  /v1/batches/:id/events               SSE: `progress` as the counts or the listing move, `state`, then the final status
 *   GET  /v1/batches/:id/results              the finished files' results (JSON Lines or CSV), streamed from PostgreSQL, or a page
 *   POST /v1/batches/:id/pause|resume|cancel
 *   GET  /v1/results                          results by label, confidence, model, batch, path prefix, time (JSON Lines or CSV)
 *
 * Result bodies are streamed from a server-side cursor (flat memory at any size); with `limit` they
 * are one page, the next page's cursor in `X-Next-After` (and a `Link: rel="next"`).
 */
import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify/sync';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import type { LabelResult } from '../jobs/label.js';
import { batchStatus, cancelBatch, createBatch, pauseBatch, reconcileBatch, resumeBatch, streamBatchResults, type BatchMode, type BatchStatus, type PathGuard } from '../jobs/queue/batches.js';
import { readBatchRow } from '../jobs/queue/batch-store.js';
import type { ModelInfo } from '../jobs/queue/model-info.js';
import type { ClipWindows } from '../jobs/queue/payloads.js';
import { queryResults, type ResultsFilter } from '../jobs/queue/results-store.js';
import type { QueueRuntime } from '../jobs/queue/runtime.js';
import { csvHeader, resultCsvRows } from '../jobs/result-csv.js';
import { safeStatus } from './errors.js';
import { BATCH_BODY, BATCH_RESULTS_QUERY, BATCH_STATUS_QUERY, ID_PARAMS, RESULTS_FILTER_QUERY } from './schemas.js';
import { streamPolled, type EventStream } from './sse.js';

/** A submission's checked options (the API's `checkClipOptions`). */
export interface CheckedOptions {
  webhook?: string | undefined;
  topK?: number | undefined;
  windows?: ClipWindows;
  model?: ModelInfo;
}

export interface BatchRoutesOptions {
  runtime: QueueRuntime;
  config: Config;
  guard: PathGuard;
  /** Checks webhook, topK and windows as `POST /v1/clips` does (400 on bad values). */
  checkOptions: (o: { webhook?: string; topK?: number; windows?: string; threshold?: number; hysteresis?: number; minSegment?: number }) => Promise<CheckedOptions>;
  /** SSE polling interval. @defaultValue 200 */
  ssePollMs?: number;
}

interface BatchBody {
  path?: string;
  glob?: string;
  manifest?: string;
  mode?: BatchMode;
  webhook?: string;
  topK?: number;
  windows?: string;
  threshold?: number;
  hysteresis?: number;
  minSegment?: number;
}

interface Page {
  format?: 'jsonl' | 'csv';
  limit?: number;
  after?: number;
}

type Lines = AsyncIterable<{ cursor: number; line: LabelResult }>;

async function* jsonl(lines: Lines): AsyncGenerator<string> {
  for await (const { line } of lines) yield `${JSON.stringify(safeStatus(line))}\n`;
}

async function* csv(lines: Lines, segments: boolean): AsyncGenerator<string> {
  yield csvHeader(segments);
  for await (const { line } of lines) yield stringify(resultCsvRows(safeStatus(line), segments));
}

/**
 * Send result lines: streamed as they are read (no `limit`), or one page of at most `limit` rows
 * with the next page's cursor in `X-Next-After` and `Link` (absent on the last page).
 */
async function sendLines(reply: FastifyReply, url: string, lines: Lines, page: Page, segments: boolean): Promise<FastifyReply> {
  const type = page.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8';
  void reply.type(type);
  const encode = (src: Lines): AsyncGenerator<string> => (page.format === 'csv' ? csv(src, segments) : jsonl(src));
  if (page.limit === undefined) return reply.send(Readable.from(encode(lines), { objectMode: false }));
  // one page: read one row past it to know whether another page follows
  const rows: Array<{ cursor: number; line: LabelResult }> = [];
  for await (const r of lines) {
    rows.push(r);
    if (rows.length > page.limit) break;
  }
  const more = rows.length > page.limit;
  if (more) rows.length = page.limit;
  const next = rows.at(-1)?.cursor;
  if (more && next !== undefined) {
    const u = new URL(url, 'http://local');
    u.searchParams.set('after', String(next));
    void reply.header('x-next-after', String(next)).header('link', `<${u.pathname}${u.search}>; rel="next"`);
  }
  let body = '';
  for await (const chunk of encode((async function* () { yield* rows; })())) body += chunk;
  return reply.send(body);
}

export const batchRoutes: FastifyPluginAsync<BatchRoutesOptions> = async (app, opts) => {
  const rt = opts.runtime;
  const q = opts.config.queue;

  app.post<{ Body: BatchBody }>(
    '/v1/batches',
    {
      schema: {
        summary: 'Label a folder, glob or manifest on the server (within FRAMEWISE_PATH_ROOTS): answers 202 at once; the ingest worker lists, hashes and queues the files (one job per file)',
        tags: ['batches'],
        body: BATCH_BODY,
      },
    },
    async (req, reply) => {
      const b = req.body;
      const o = await opts.checkOptions(b);
      const out = await createBatch(rt, {
        source: { path: b.path, glob: b.glob, manifest: b.manifest },
        mode: b.mode ?? 'all',
        webhook: o.webhook,
        topK: o.topK,
        guard: opts.guard,
        roots: q.pathRoots,
        ...(o.model ? { model: o.model } : {}),
        ...(o.windows ? { windows: o.windows } : {}),
      });
      void reply.header('location', `/v1/batches/${out.batchId}`);
      return reply.status(202).send(out);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { reconcile?: boolean } }>(
    '/v1/batches/:id',
    { schema: { summary: 'A batch: state, counts by state, progress and the listing (found, hashed, queued, skipped, rejected); `reconcile=true` recounts from the entries and jobs', tags: ['batches'], params: ID_PARAMS, querystring: BATCH_STATUS_QUERY } },
    async (req) => (req.query.reconcile ? reconcileBatch(rt, req.params.id) : batchStatus(rt, req.params.id)),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/batches/:id/events',
    { schema: { summary: 'Server-sent events: `progress` (the status, when its counts or listing figures change), `state`, then one final `completed`, `cancelled` or `failed` event with the status', tags: ['batches'], params: ID_PARAMS } },
    async (req, reply) => {
      const id = req.params.id;
      const first = await batchStatus(rt, id); // 404 before the stream starts
      let last = '';
      let lastState = '';
      const emit = (stream: EventStream, s: BatchStatus): boolean => {
        const snapshot = JSON.stringify([s.state, s.counts, s.ingest, s.progress]);
        if (snapshot !== last) {
          last = snapshot;
          stream.send('progress', s);
        }
        if (s.state !== lastState) {
          lastState = s.state;
          stream.send('state', { batchId: id, state: s.state });
        }
        if (s.finishedAt !== null) {
          stream.send(s.state, s);
          return true;
        }
        return false;
      };
      await streamPolled(req, reply, first, () => batchStatus(rt, id), emit, { batchId: id }, opts.ssePollMs !== undefined ? { pollMs: opts.ssePollMs } : {});
    },
  );

  app.get<{ Params: { id: string }; Querystring: Page }>(
    '/v1/batches/:id/results',
    {
      schema: {
        summary: 'Results of the finished files, in listing order (JSON Lines or CSV, as `framewise label` writes them), streamed; `limit` (and `after`) for one page',
        tags: ['batches'],
        params: ID_PARAMS,
        querystring: BATCH_RESULTS_QUERY,
      },
    },
    async (req, reply) => {
      const row = await readBatchRow(rt.db, req.params.id);
      if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${req.params.id}`);
      // a page reads one row past its end (to know whether another follows), and no further
      const limit = req.query.limit !== undefined ? req.query.limit + 1 : undefined;
      return sendLines(reply, req.url, streamBatchResults(rt, req.params.id, { after: req.query.after, limit }), req.query, row.options.windows !== undefined);
    },
  );

  for (const [action, fn] of [
    ['pause', pauseBatch],
    ['resume', resumeBatch],
    ['cancel', cancelBatch],
  ] as const) {
    app.post<{ Params: { id: string } }>(`/v1/batches/:id/${action}`, { schema: { summary: `${action[0]?.toUpperCase()}${action.slice(1)} a batch (its ingest too)`, tags: ['batches'], params: ID_PARAMS } }, async (req) => fn(rt, req.params.id));
  }

  app.get<{ Querystring: Omit<ResultsFilter, 'limit' | 'after'> & Page }>(
    '/v1/results',
    {
      schema: {
        summary: 'Stored results (PostgreSQL) by label, minimum confidence, model (NAME or NAME@VERSION), batch, path prefix and time (since/until on when they finished), JSON Lines or CSV, streamed; `limit` (and `after`) for one page',
        tags: ['results'],
        querystring: RESULTS_FILTER_QUERY,
      },
    },
    async (req, reply) => {
      const { format, limit, after, ...filter } = req.query;
      if (filter.batch !== undefined && !(await readBatchRow(rt.db, filter.batch))) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${filter.batch}`);
      // the query is checked (dates) before the answer starts
      const lines = queryResults(rt.db, { ...filter, after, ...(limit !== undefined ? { limit: limit + 1 } : {}) });
      const first = await lines.next();
      const all = (async function* () {
        if (!first.done) yield first.value;
        yield* lines;
      })();
      return sendLines(reply, req.url, all, { ...(format ? { format } : {}), ...(limit !== undefined ? { limit } : {}) }, false);
    },
  );
};
