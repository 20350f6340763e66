/**
 * The one place that reads the environment. Every variable is validated here, all problems are
 * reported at once, and a frozen typed object is handed down. No other module reads `process.env`.
 */
import { homedir, availableParallelism } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { FramewiseError } from '../errors/index.js';
import { BACKBONE_IDS, ENGINES, FEATURE_KINDS } from '../ml/backbone.js';
import { validateCidrs } from '../net/net-guard.js';

/** The project root (where package.json, pretrained/ and samples/ live), from src/ or dist/src/. */
export const PROJECT_ROOT = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/config -> root, dist/src/config -> root
  return here.includes(`${join('dist', 'src')}`) ? resolve(here, '..', '..', '..') : resolve(here, '..', '..');
})();

export const DEFAULT_MODEL_DIR = join(PROJECT_ROOT, 'pretrained', 'heads', 'motion4');

/**
 * The per-frame feature `train`, `cv` and `extract` use when neither --feature nor
 * FRAMEWISE_FEATURE says (chosen on evidence: docs/training.md). `label`/`eval` use the model's.
 */
export const DEFAULT_TRAIN_FEATURE = 'grid' as const satisfies (typeof FEATURE_KINDS)[number];

export const TFJS_BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type TfjsBackendChoice = (typeof TFJS_BACKENDS)[number];

const intFromString = (min: number) => z.coerce.number().int().min(min);
const boolFromString = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Split a comma-separated list (API keys, path roots), dropping blanks. */
const listOf = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

/**
 * Documented environment variables (README "Configuration"). The key is the variable name.
 * A test checks that every variable here is documented and that docker-compose.yml sets only these.
 */
export const ENV_SCHEMA = z.object({
  FRAMEWISE_CACHE_DIR: z.string().min(1).optional(),
  FRAMEWISE_ENGINE: z.enum(ENGINES).default('onnx'),
  FRAMEWISE_BACKEND: z.enum(TFJS_BACKENDS).default('auto'),
  FRAMEWISE_BACKBONE: z.enum(BACKBONE_IDS).default('mobilenet_v2_mid'),
  FRAMEWISE_FEATURE: z.enum(FEATURE_KINDS).default('pooled'),
  FRAMEWISE_MODEL: z.string().min(1).optional(),
  FRAMEWISE_MODEL_DIR: z.string().min(1).optional(),
  FRAMEWISE_MODELS_DIR: z.string().min(1).optional(),
  FRAMEWISE_THREADS: intFromString(1).optional(),
  FRAMEWISE_BATCH_SIZE: intFromString(1).default(8),
  FRAMEWISE_MAX_PIXELS: intFromString(1).default(7680 * 4320),
  FRAMEWISE_DECODE_TIMEOUT_MS: intFromString(1000).default(10 * 60 * 1000),
  FRAMEWISE_FFMPEG_PATH: z.string().min(1).optional(),
  FRAMEWISE_FFPROBE_PATH: z.string().min(1).optional(),
  FRAMEWISE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  FRAMEWISE_TFHUB_MOBILENET_URL: z.string().min(1).optional(),
  // queue mode (BullMQ workers and the HTTP API)
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'expected redis://host:port[/db] or rediss://...').default('redis://127.0.0.1:6379'),
  FRAMEWISE_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only').default('fw'),
  FRAMEWISE_API_HOST: z.string().min(1).default('127.0.0.1'),
  FRAMEWISE_API_PORT: intFromString(0).max(65535).default(8080),
  FRAMEWISE_API_KEYS: z.string().optional(),
  FRAMEWISE_DATA_DIR: z.string().min(1).optional(),
  FRAMEWISE_PATH_ROOTS: z.string().optional(),
  FRAMEWISE_ALLOW_URL_INPUT: boolFromString.default(false),
  FRAMEWISE_MAX_UPLOAD_BYTES: intFromString(1).default(1024 * 1024 * 1024),
  FRAMEWISE_DECODE_CONCURRENCY: intFromString(1).optional(),
  FRAMEWISE_EMBED_CONCURRENCY: intFromString(1).default(4),
  FRAMEWISE_EMBED_BATCH_FRAMES: intFromString(1).default(32),
  FRAMEWISE_EMBED_BATCH_WAIT_MS: intFromString(0).default(20),
  FRAMEWISE_TOP_K: intFromString(1).default(3),
  FRAMEWISE_JOB_ATTEMPTS: intFromString(1).default(3),
  FRAMEWISE_JOB_BACKOFF_MS: intFromString(0).default(5000),
  FRAMEWISE_LOCK_DURATION_MS: intFromString(1000).default(120_000),
  FRAMEWISE_STALLED_INTERVAL_MS: intFromString(500).default(30_000),
  FRAMEWISE_WEBHOOK_ATTEMPTS: intFromString(1).default(5),
  FRAMEWISE_WEBHOOK_TIMEOUT_MS: intFromString(100).default(10_000),
  FRAMEWISE_SHUTDOWN_TIMEOUT_MS: intFromString(0).max(60_000).default(8000),
  // results (PostgreSQL), ingest and retention (queue mode)
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected postgres://user:password@host:port/database')
    .optional(),
  FRAMEWISE_DB_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _ (a PostgreSQL schema name)').default('framewise'),
  FRAMEWISE_DB_POOL_SIZE: intFromString(1).max(100).default(8),
  FRAMEWISE_INGEST_CONCURRENCY: intFromString(1).default(4),
  FRAMEWISE_INGEST_HASH_CONCURRENCY: intFromString(1).default(8),
  FRAMEWISE_INGEST_CHUNK: intFromString(1).max(10_000).default(500),
  FRAMEWISE_INGEST_WINDOW: intFromString(1).default(4000),
  FRAMEWISE_RETENTION_JOBS_AGE_S: intFromString(0).default(3600),
  FRAMEWISE_RETENTION_JOBS_COUNT: intFromString(0).default(1000),
  FRAMEWISE_RETENTION_UPLOADS_S: intFromString(0).default(3600),
  FRAMEWISE_RETENTION_BATCHES_S: intFromString(0).default(7 * 24 * 3600),
  FRAMEWISE_NETWORK_ALLOW: z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      for (const problem of validateCidrs(listOf(v))) ctx.addIssue({ code: 'custom', message: problem });
    }),
});

export type EnvConfig = z.infer<typeof ENV_SCHEMA>;

export interface Config {
  readonly cacheDir: string;
  readonly engine: EnvConfig['FRAMEWISE_ENGINE'];
  readonly backend: TfjsBackendChoice;
  readonly backbone: EnvConfig['FRAMEWISE_BACKBONE'];
  readonly featureKind: EnvConfig['FRAMEWISE_FEATURE'];
  /** Feature kind for training (`train`, `cv`, `extract`): FRAMEWISE_FEATURE when set, else {@link DEFAULT_TRAIN_FEATURE}. */
  readonly trainFeatureKind: EnvConfig['FRAMEWISE_FEATURE'];
  /**
   * The model queue mode labels with (FRAMEWISE_MODEL): a registry NAME (its promoted version,
   * looked up again at every submission, so promoting switches new jobs), NAME@VERSION, or a head
   * folder. Unset: {@link modelDir}.
   */
  readonly model: string | undefined;
  /** The default head folder (FRAMEWISE_MODEL_DIR, else the bundled head). */
  readonly modelDir: string;
  /** Root of the model registry (`<root>/<name>/<version>/`). */
  readonly modelsDir: string;
  readonly threads: number;
  readonly batchSize: number;
  readonly maxPixels: number;
  readonly decodeTimeoutMs: number;
  readonly ffmpegPath: string;
  readonly ffprobePath: string;
  readonly logLevel: EnvConfig['FRAMEWISE_LOG_LEVEL'];
  readonly tfhubMobilenetUrl: string | undefined;
  /** Queue mode: see {@link QueueConfig}. */
  readonly queue: QueueConfig;
}

/** Settings of queue mode (workers, API); only read when a queue command runs. */
export interface QueueConfig {
  readonly redisUrl: string;
  /** BullMQ key prefix: every queue and framewise key lives under `<prefix>:`. */
  readonly prefix: string;
  readonly apiHost: string;
  readonly apiPort: number;
  /** Bearer keys accepted by the API; empty = no authentication. */
  readonly apiKeys: readonly string[];
  /** Uploads, decoded-frame artifacts and result files (shared by the API and the workers). */
  readonly dataDir: string;
  /** Folders whose files the API may read for `{path}` clips and batches (real paths); empty = none. */
  readonly pathRoots: readonly string[];
  readonly allowUrlInput: boolean;
  readonly maxUploadBytes: number;
  readonly decodeConcurrency: number;
  /** Embed jobs one embed worker holds at once (their frames are batched into shared backbone calls). */
  readonly embedConcurrency: number;
  /** Most frames per batched backbone call. */
  readonly embedBatchFrames: number;
  /** How long the embed batcher waits for more jobs' frames before a call. */
  readonly embedBatchWaitMs: number;
  readonly topK: number;
  readonly attempts: number;
  readonly backoffMs: number;
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
  readonly webhookAttempts: number;
  readonly webhookTimeoutMs: number;
  /** How long `serve` and `worker` wait for a graceful close on SIGTERM/SIGINT before they force it. */
  readonly shutdownTimeoutMs: number;
  /**
   * Address ranges (CIDRs) that webhooks and URL input may reach although they are loopback,
   * private, link-local or otherwise internal (refused by default); empty = public addresses only.
   */
  readonly networkAllow: readonly string[];
  /** PostgreSQL (results, batch entries): the API, the classify and ingest workers and `framewise results` need it. */
  readonly databaseUrl: string | undefined;
  /** The PostgreSQL schema framewise's tables live in (several deployments can share a database). */
  readonly dbSchema: string;
  /** Connections per process. */
  readonly dbPoolSize: number;
  /** Batches one ingest worker lists at once. */
  readonly ingestConcurrency: number;
  /** Files one ingest hashes at once. */
  readonly ingestHashConcurrency: number;
  /** Files per ingest step (listed, hashed, recorded and queued together). */
  readonly ingestChunk: number;
  /** Backpressure: ingest stops adding a batch's files while this many of them are unfinished. */
  readonly ingestWindow: number;
  /** Retention in Redis (see {@link RetentionConfig}). */
  readonly retention: RetentionConfig;
}

/** How long things are kept (FRAMEWISE_RETENTION_*); results themselves live in PostgreSQL. */
export interface RetentionConfig {
  /** Finished jobs stay in Redis at most this long (seconds) … */
  readonly jobsAgeS: number;
  /** … and at most this many per queue and outcome. */
  readonly jobsCount: number;
  /** An uploaded file is deleted this long (seconds) after its job ends (0: at once). */
  readonly uploadsS: number;
  /** A finished batch's record leaves Redis after this long (its status and results stay in PostgreSQL). */
  readonly batchesS: number;
}

/** Validate an environment (default: process.env) into a frozen Config; all problems in one error. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(ENV_SCHEMA.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') picked[key] = value;
  }
  const parsed = ENV_SCHEMA.safeParse(picked);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const home = env.HOME && env.HOME !== '' ? env.HOME : homedir();
  const xdg = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME !== '' ? env.XDG_CACHE_HOME : join(home, '.cache');
  const cacheDir = resolve(e.FRAMEWISE_CACHE_DIR ?? join(xdg, 'framewise'));
  return Object.freeze({
    cacheDir,
    engine: e.FRAMEWISE_ENGINE,
    backend: e.FRAMEWISE_BACKEND,
    backbone: e.FRAMEWISE_BACKBONE,
    featureKind: e.FRAMEWISE_FEATURE,
    trainFeatureKind: picked.FRAMEWISE_FEATURE !== undefined ? e.FRAMEWISE_FEATURE : DEFAULT_TRAIN_FEATURE,
    model: e.FRAMEWISE_MODEL,
    modelDir: resolve(e.FRAMEWISE_MODEL_DIR ?? DEFAULT_MODEL_DIR),
    modelsDir: resolve(e.FRAMEWISE_MODELS_DIR ?? join(cacheDir, 'models')),
    threads: e.FRAMEWISE_THREADS ?? availableParallelism(),
    batchSize: e.FRAMEWISE_BATCH_SIZE,
    maxPixels: e.FRAMEWISE_MAX_PIXELS,
    decodeTimeoutMs: e.FRAMEWISE_DECODE_TIMEOUT_MS,
    ffmpegPath: e.FRAMEWISE_FFMPEG_PATH ?? 'ffmpeg',
    ffprobePath: e.FRAMEWISE_FFPROBE_PATH ?? 'ffprobe',
    logLevel: e.FRAMEWISE_LOG_LEVEL,
    tfhubMobilenetUrl: e.FRAMEWISE_TFHUB_MOBILENET_URL,
    queue: Object.freeze({
      redisUrl: e.REDIS_URL,
      prefix: e.FRAMEWISE_QUEUE_PREFIX,
      apiHost: e.FRAMEWISE_API_HOST,
      apiPort: e.FRAMEWISE_API_PORT,
      apiKeys: Object.freeze(listOf(e.FRAMEWISE_API_KEYS)),
      dataDir: resolve(e.FRAMEWISE_DATA_DIR ?? join(env.XDG_DATA_HOME && env.XDG_DATA_HOME !== '' ? env.XDG_DATA_HOME : join(home, '.local', 'share'), 'framewise')),
      pathRoots: Object.freeze(listOf(e.FRAMEWISE_PATH_ROOTS).map((p) => resolve(p))),
      allowUrlInput: e.FRAMEWISE_ALLOW_URL_INPUT,
      maxUploadBytes: e.FRAMEWISE_MAX_UPLOAD_BYTES,
      decodeConcurrency: e.FRAMEWISE_DECODE_CONCURRENCY ?? availableParallelism(),
      embedConcurrency: e.FRAMEWISE_EMBED_CONCURRENCY,
      embedBatchFrames: e.FRAMEWISE_EMBED_BATCH_FRAMES,
      embedBatchWaitMs: e.FRAMEWISE_EMBED_BATCH_WAIT_MS,
      topK: e.FRAMEWISE_TOP_K,
      attempts: e.FRAMEWISE_JOB_ATTEMPTS,
      backoffMs: e.FRAMEWISE_JOB_BACKOFF_MS,
      lockDurationMs: e.FRAMEWISE_LOCK_DURATION_MS,
      stalledIntervalMs: e.FRAMEWISE_STALLED_INTERVAL_MS,
      webhookAttempts: e.FRAMEWISE_WEBHOOK_ATTEMPTS,
      webhookTimeoutMs: e.FRAMEWISE_WEBHOOK_TIMEOUT_MS,
      shutdownTimeoutMs: e.FRAMEWISE_SHUTDOWN_TIMEOUT_MS,
      networkAllow: Object.freeze(listOf(e.FRAMEWISE_NETWORK_ALLOW)),
      databaseUrl: e.DATABASE_URL,
      dbSchema: e.FRAMEWISE_DB_SCHEMA,
      dbPoolSize: e.FRAMEWISE_DB_POOL_SIZE,
      ingestConcurrency: e.FRAMEWISE_INGEST_CONCURRENCY,
      ingestHashConcurrency: e.FRAMEWISE_INGEST_HASH_CONCURRENCY,
      ingestChunk: e.FRAMEWISE_INGEST_CHUNK,
      ingestWindow: e.FRAMEWISE_INGEST_WINDOW,
      retention: Object.freeze({
        jobsAgeS: e.FRAMEWISE_RETENTION_JOBS_AGE_S,
        jobsCount: e.FRAMEWISE_RETENTION_JOBS_COUNT,
        uploadsS: e.FRAMEWISE_RETENTION_UPLOADS_S,
        batchesS: e.FRAMEWISE_RETENTION_BATCHES_S,
      }),
    }),
  });
}
