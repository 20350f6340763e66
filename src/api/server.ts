/**
 * The HTTP API of queue mode (fastify): clips and batches in, job status, SSE progress and
 * results out; OpenAPI at /openapi.json (UI at /docs), Bull Board at /admin/queues, Prometheus
 * at /metrics, health at /healthz and /readyz. Batches and stored results: batch-routes.ts.
 * Errors: `{error: {code, message}}` with the HTTP status of the code. Keys: FRAMEWISE_API_KEYS
 * (bearer) protects everything but the health probes. Needs PostgreSQL (DATABASE_URL) from the
 * start: results, batches and their entries live there.
 */
import { basename, extname, join } from 'node:path';
import { rm } from 'node:fs/promises';
import fastifyMultipart from '@fastify/multipart';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Config } from '../config/index.js';
import { getLogger } from '../config/log.js';
import { FramewiseError, isFramewiseError } from '../errors/index.js';
import { probe } from '../media/ffmpeg.js';
import { TemporalHead } from '../ml/head.js';
import { cancelClip, clipStatus, submitClip, toClipWindows } from '../jobs/queue/clips.js';
import { currentModelInfo, type ModelInfo } from '../jobs/queue/model-info.js';
import type { ClipWindows } from '../jobs/queue/payloads.js';
import { ALL_QUEUES } from '../jobs/queue/names.js';
import { openQueueRuntime, withQueue, type QueueRuntime } from '../jobs/queue/runtime.js';
import { runtimeFromConfig } from '../jobs/runtime.js';
import { createAuthHook, createKeyCheck } from './auth.js';
import { batchRoutes } from './batch-routes.js';
import { modelRoutes } from './model-routes.js';
import { trainingRoutes } from './training-routes.js';
import { webPlugin } from './web.js';
import { apiClientErrorHandler, apiErrorHandler, apiNotFoundHandler, safeStatus } from './errors.js';
import { createMetrics } from './metrics.js';
import { createPathGuard } from './path-guard.js';
import { CLIP_JSON_BODY, ERROR_BODY, ID_PARAMS, SUBMITTED_BODY, UPLOAD_QUERY } from './schemas.js';
import { streamJobEvents } from './sse.js';
import { downloadUrl, storeStream, type StoredUpload } from './uploads.js';
import { createNetworkPolicy, hasCredentials } from '../net/net-guard.js';

export interface ApiOptions {
  /** Use this runtime (not closed with the server) instead of opening one. */
  runtime?: QueueRuntime;
  /** Log requests with the process logger (pino, JSON lines on stderr) at this level. @defaultValue no request logs */
  logLevel?: string;
  /** SSE polling interval. @defaultValue 200 */
  ssePollMs?: number;
}

/** What a clip submission may ask for besides its input (JSON fields, or query parameters of an upload). */
interface ClipOptions {
  webhook?: string;
  topK?: number;
  /** `W,S`, `W` or `auto`: label window by window. */
  windows?: string;
  /** The segments' unknown threshold (with `windows`). */
  threshold?: number;
  /** As `label --hysteresis` (with `windows`). */
  hysteresis?: number;
  /** As `label --min-segment`, seconds (with `windows`). */
  minSegment?: number;
}

interface ClipBody extends ClipOptions {
  path?: string;
  url?: string;
}

const VERSION = '0.1.0';

/** How long /readyz waits for Redis (an unreachable Redis is a failed check, not a slow probe). */
const READY_TIMEOUT_MS = 2000;

/** `p`, or a rejection after `ms` (p keeps running). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A webhook URL is http(s) without credentials (its address is checked at each delivery: net-guard.ts). */
function checkWebhook(url: string | undefined): void {
  if (url === undefined) return;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'webhook must be an http(s) URL');
  if (hasCredentials(parsed)) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'webhook URLs with credentials (user:password@) are not accepted: put a secret in the path or query instead');
}

export async function buildServer(config: Config, opts: ApiOptions = {}): Promise<FastifyInstance> {
  const q = config.queue;
  const rt = opts.runtime ?? openQueueRuntime(config, 'producer');
  const ownsRuntime = opts.runtime === undefined;
  // results and batch entries live in PostgreSQL: a missing or unreachable database stops the start here, naming DATABASE_URL
  try {
    await rt.db.ready();
  } catch (err) {
    if (ownsRuntime) await rt.close();
    throw err;
  }
  const guard = createPathGuard(q.pathRoots);
  const tools = runtimeFromConfig(config).tools;
  const uploadsDir = join(q.dataDir, 'uploads');
  const metrics = createMetrics(rt);
  const network = createNetworkPolicy(q.networkAllow);
  /**
   * Uploads this process is submitting, by file: a fresh upload whose submission fails is removed
   * only when no other request of this process holds the same content-addressed file.
   */
  const holds = new Map<string, number>();
  const release = async (file: { path: string; fresh: boolean }, failed: boolean): Promise<void> => {
    const n = (holds.get(file.path) ?? 1) - 1;
    if (n > 0) holds.set(file.path, n);
    else holds.delete(file.path);
    if (failed && file.fresh && n <= 0) await rm(file.path, { force: true }).catch(() => undefined);
  };

  const loggerInstance: FastifyBaseLogger | undefined = opts.logLevel ? getLogger(opts.logLevel).child({ component: 'api' }) : undefined;
  const app: FastifyInstance = Fastify({ ...(loggerInstance ? { loggerInstance } : { logger: false }), bodyLimit: 1 << 20, clientErrorHandler: apiClientErrorHandler, ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array' } } });
  app.setErrorHandler(apiErrorHandler);
  app.setNotFoundHandler(apiNotFoundHandler);
  app.addHook('onRequest', createAuthHook(q.apiKeys));
  app.addHook('onClose', async () => {
    await metrics.close();
    if (ownsRuntime) await rt.close();
  });

  await app.register(fastifyMultipart, { limits: { fileSize: q.maxUploadBytes, files: 1, fields: 8 }, throwFileSizeLimit: true });
  await app.register(fastifySwagger, {
    openapi: {
      info: { title: 'framewise', description: 'Action recognition in video: submit clips and batches, follow jobs, read results.', version: VERSION },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(q.apiKeys.length > 0 ? { security: [{ bearer: [] }] } : {}),
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  /**
   * A submission's options, checked before any input is fetched: the webhook URL, and the windows
   * for the current model (bad values: FW_ERR_REQUEST_INVALID, 400). The model is the one the job
   * then labels with.
   */
  const checkClipOptions = async (o: ClipOptions): Promise<{ webhook?: string | undefined; topK?: number | undefined; windows?: ClipWindows; model?: ModelInfo }> => {
    checkWebhook(o.webhook);
    const common = { webhook: o.webhook, topK: o.topK };
    if (o.windows === undefined && o.threshold === undefined && o.hysteresis === undefined && o.minSegment === undefined) return common;
    const model = await currentModelInfo(config);
    try {
      const windows = toClipWindows(model, o.windows, o.threshold, { hysteresis: o.hysteresis, minSegmentSec: o.minSegment });
      return { ...common, model, ...(windows ? { windows } : {}) };
    } catch (err) {
      if (isFramewiseError(err, 'FW_ERR_CONFIG_INVALID')) throw new FramewiseError('FW_ERR_REQUEST_INVALID', err.message, { cause: err });
      throw err;
    }
  };

  /**
   * Validate by probing, then queue; answers 202 (queued/running) or 200 with the stored result.
   * The answer names the clip as this caller gave it (`source`): the job's bytes may have been
   * submitted before under another name, which is not shown to later callers. A fresh upload whose
   * submission fails (bad video, Redis unreachable) is removed again.
   */
  const submit = async (reply: FastifyReply, file: StoredUpload | { path: string; contentHash?: undefined; fresh: false }, source: string, jobSource: string, body: Awaited<ReturnType<typeof checkClipOptions>>) => {
    const held = 'sizeBytes' in file;
    let failed = true;
    try {
      await probe(file.path, tools);
      const out = await submitClip(rt, {
        path: file.path,
        source: jobSource,
        ...(file.contentHash ? { contentHash: file.contentHash } : {}),
        priority: 'interactive',
        ...(body.webhook ? { webhook: body.webhook } : {}),
        ...(body.topK ? { topK: body.topK } : {}),
        ...(body.model ? { model: body.model } : {}),
        ...(body.windows ? { windows: body.windows } : {}),
      });
      failed = false;
      // an upload belongs to the job made with it: a submission that made none does not keep it
      if (!out.created && held) await rm(file.path, { force: true }).catch(() => undefined);
      const status = await clipStatus(rt, out.jobId);
      void reply.header('location', `/v1/jobs/${out.jobId}`);
      if (status.state === 'completed') return reply.status(200).send({ jobId: out.jobId, created: out.created, state: status.state, source, ...(status.result ? { result: { ...status.result, path: source } } : {}) });
      return reply.status(202).send({ jobId: out.jobId, created: out.created, state: status.state, source });
    } finally {
      if (held) await release(file, failed);
    }
  };

  app.post<{ Body: ClipBody; Querystring: ClipOptions }>(
    '/v1/clips',
    {
      schema: {
        summary: 'Submit a clip: a multipart upload (field `file`; `webhook`, `topK`, `windows`, `threshold` as query parameters), or JSON {path} / {url}',
        tags: ['clips'],
        consumes: ['multipart/form-data', 'application/json'],
        querystring: UPLOAD_QUERY,
        body: { content: { 'application/json': { schema: CLIP_JSON_BODY } } },
        response: { 200: SUBMITTED_BODY, 202: SUBMITTED_BODY, '4xx': ERROR_BODY, '5xx': ERROR_BODY },
      },
    },
    async (req, reply) => {
      if (req.isMultipart()) {
        const part = await req.file();
        if (!part) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'the multipart request has no file part');
        const options = await checkClipOptions(req.query);
        const stored = await storeStream(part.file, uploadsDir, q.maxUploadBytes, part.filename, holds);
        // the job itself carries no uploader's name (the same bytes may come from several people)
        const anonymous = `upload-${stored.contentHash.slice(0, 12)}${extname(stored.path)}`;
        const name = basename(part.filename || '') || anonymous;
        return submit(reply, stored, name, anonymous, options);
      }
      const body = req.body ?? {};
      const options = await checkClipOptions(body);
      if ((body.path === undefined) === (body.url === undefined)) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'send a multipart upload, or JSON with exactly one of `path` or `url`');
      if (body.path !== undefined) {
        const real = await guard(body.path);
        return submit(reply, { path: real, fresh: false }, body.path, body.path, options);
      }
      if (!q.allowUrlInput) throw new FramewiseError('FW_ERR_URL_FORBIDDEN', 'URL input is disabled (set FRAMEWISE_ALLOW_URL_INPUT=true)');
      const stored = await downloadUrl(body.url as string, uploadsDir, q.maxUploadBytes, network, { holds });
      return submit(reply, stored, body.url as string, `download-${stored.contentHash.slice(0, 12)}${extname(stored.path)}`, options);
    },
  );

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', { schema: { summary: 'A job: state, per-stage progress, result or error', tags: ['jobs'], params: ID_PARAMS } }, async (req) => safeStatus(await clipStatus(rt, req.params.id)));

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/events',
    { schema: { summary: 'Server-sent events: `stage` and `state` while it runs, then `result`, `failed` or `cancelled`', tags: ['jobs'], params: ID_PARAMS } },
    async (req, reply) => streamJobEvents(rt, req.params.id, req, reply, opts.ssePollMs !== undefined ? { pollMs: opts.ssePollMs } : {}),
  );

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', { schema: { summary: 'Cancel a job (waiting stages are removed; a running stage fails at its next check)', tags: ['jobs'], params: ID_PARAMS } }, async (req) =>
    safeStatus(await cancelClip(rt, req.params.id)),
  );

  await app.register(batchRoutes, { runtime: rt, config, guard, checkOptions: checkClipOptions, ...(opts.ssePollMs !== undefined ? { ssePollMs: opts.ssePollMs } : {}) });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/healthz', { schema: { summary: 'The process is up', tags: ['ops'] } }, async () => ({ ok: true }));

  /** Heads already loaded once by /readyz, by folder and version (a promotion is checked again). */
  const modelChecks = new Map<string, Promise<void>>();
  /**
   * Readiness: `ok` or `failed` per check, never an error text (it may name hosts, ports or paths);
   * the model's id and version only to callers with a key (or when no keys are configured).
   */
  const hasKey = createKeyCheck(q.apiKeys);
  app.get('/readyz', { schema: { summary: 'Redis and PostgreSQL reachable and the current model loadable', tags: ['ops'] } }, async (req, reply) => {
    const checks: Record<string, string> = {};
    try {
      await withTimeout(withQueue(() => rt.redis.ping()), READY_TIMEOUT_MS);
      checks.redis = 'ok';
    } catch (err) {
      req.log.warn({ err: String(err) }, 'readiness: Redis check failed');
      checks.redis = 'failed';
    }
    try {
      await withTimeout(rt.db.query('SELECT 1'), READY_TIMEOUT_MS);
      checks.database = 'ok';
    } catch (err) {
      req.log.warn({ err: String(err) }, 'readiness: database check failed');
      checks.database = 'failed';
    }
    try {
      const info = await currentModelInfo(config);
      const key = `${info.dir}@${info.model.version}`;
      let check = modelChecks.get(key);
      if (!check) {
        check = TemporalHead.load(info.dir, undefined, config.backend).then((head) => head.dispose());
        check.catch(() => modelChecks.delete(key));
        modelChecks.set(key, check);
      }
      await check;
      checks.model = hasKey(req) ? `ok (${info.model.id} ${info.model.version})` : 'ok';
    } catch (err) {
      req.log.warn({ err: String(err) }, 'readiness: model check failed');
      checks.model = 'failed';
    }
    const ready = checks.redis === 'ok' && checks.database === 'ok' && checks.model?.startsWith('ok') === true;
    return reply.status(ready ? 200 : 503).send({ ready, checks });
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['ops'] } }, async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  const board = new FastifyAdapter();
  board.setBasePath('/admin/queues');
  // @bull-board/fastify 9.10.1 pins its own @bull-board/api 9.10.1 (ours is 9.10.2): same shape, separate declarations
  createBullBoard({ queues: ALL_QUEUES.map((name) => new BullMQAdapter(rt.queues[name])), serverAdapter: board as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'] });
  await app.register(board.registerPlugin(), { prefix: '/admin/queues' });

  await app.register(trainingRoutes, { runtime: rt, config, guard, ...(opts.ssePollMs !== undefined ? { ssePollMs: opts.ssePollMs } : {}) });
  await app.register(modelRoutes, { config });

  // the web page (after the API routes: it adds GET /v1/jobs/:id/video only where the API has none)
  // POST /v1/clips takes `windows`: the page offers it
  await app.register(webPlugin, { runtime: rt, config, windows: true });

  return app;
}

/** Build and listen on FRAMEWISE_API_HOST:FRAMEWISE_API_PORT (or the given ones). */
export async function startServer(config: Config, listen: { host?: string; port?: number } = {}, opts: ApiOptions = {}): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildServer(config, opts);
  const url = await app.listen({ host: listen.host ?? config.queue.apiHost, port: listen.port ?? config.queue.apiPort });
  return { app, url };
}
