/**
 * The worker processes of queue mode. Each start function opens what its stage needs once per
 * process (the embed worker its backbone and keypoint streams, warmed: `embed-models.ts`; the
 * classify worker its head, warmed) and then carries the plain stage functions of `stages.ts`
 * (`stream-stages.ts` for a model over more than rgb, `window-stages.ts` for windowed clips) in a
 * BullMQ `Worker`.
 *
 * - decode: concurrency FRAMEWISE_DECODE_CONCURRENCY (≈ cores; ffmpeg runs in its own processes).
 * - embed: FRAMEWISE_EMBED_CONCURRENCY jobs held at once, feeding ONE backbone through the
 *   batching embedder (model concurrency 1, frames batched across jobs: rgb and motion frames
 *   alike), and one model per keypoint stream (pose, hands). A windowed clip's pass
 *   (decode + embed, streaming) holds one of them; one too long for the feature store also loads
 *   the job's head for the time of the pass.
 * - classify: concurrency 1; writes each outcome to PostgreSQL before its job completes (outcomes.ts).
 * - ingest: FRAMEWISE_INGEST_CONCURRENCY batches listed at once (ingest.ts).
 * Errors: a FramewiseError that is `permanent` becomes `UnrecoverableError('<code>: <message>')`
 * (no retries, `failedReason` starts with the code); others are retried (`attempts`, exponential
 * backoff). A failed stage releases its parent, which fails with the same reason, so the root
 * job's `failedReason` is the original error. Locks: FRAMEWISE_LOCK_DURATION_MS (generous,
 * because TF.js wasm blocks the event loop during a backbone call) and stalled-job recovery
 * every FRAMEWISE_STALLED_INTERVAL_MS: a worker killed mid-job loses the lock and the job is
 * run again by another worker.
 */
import { hostname } from 'node:os';
import { DelayedError, UnrecoverableError, Worker, type Job, type Processor } from 'bullmq';
import { loadConfig, type Config } from '../../config/index.js';
import { getLogger, type Logger } from '../../config/log.js';
import { FramewiseError, toFramewiseError } from '../../errors/index.js';
import type { Backbone } from '../../ml/backbone.js';
import { TemporalHead } from '../../ml/head.js';
import { layoutRawDim } from '../../ml/stream-layout.js';
import { runtimeFromConfig } from '../runtime.js';
import { clipArtifactKeys } from './artifact-store.js';
import type { BatchingBackbone } from './batching-embedder.js';
import { EmbedModels } from './embed-models.js';
import { formatFailedReason, noteClipFinished } from './clips.js';
import { currentModelInfo, readModelInfo } from './model-info.js';
import { QueueName } from './names.js';
import type { ClassifyJobData, ClassifyJobResult, ClipRef, DecodeJobData, DecodeJobResult, EmbedJobData, EmbedJobResult, IngestJobData, StreamsDecodeJobResult, TrainJobData, WebhookJobData, WindowsDecodeJobResult } from './payloads.js';
import { openQueueRuntime, workerConnection, type QueueRuntime } from './runtime.js';
import { shutdownOnSignals, startHoldingSignals, type ShutdownOutcome } from './shutdown.js';
import { classifyStage, decodeStage, embedStage, type StageDeps } from './stages.js';
import { classifyStreamsStage, decodeStreamsStage, embedStreamsStage, hasStreams } from './stream-stages.js';
import { classifyWindowsStage, decodeWindowsStage, embedWindowsStage, isWindowed, type WindowsEmbedOptions } from './window-stages.js';
import type { WindowsProgress } from '../windows.js';
import { runTrainJob, type TrainingJobResult } from './trainings.js';
import { markActive, markPutAside } from './batch-record.js';
import { runIngest, type IngestSummary } from './ingest.js';
import { writeResult } from './outcomes.js';
import { startUploadSweeper } from './retention.js';
import { createNetworkPolicy, guardedRequest, hasCredentials, redactUrl, type NetworkPolicy } from '../../net/net-guard.js';

export const WORKER_KINDS = ['decode', 'embed', 'classify', 'webhook', 'train', 'ingest'] as const;
export type WorkerKind = (typeof WORKER_KINDS)[number];
/** What `framewise worker all` runs: every stage, webhooks, training and batch ingest. */
export const ALL_WORKER_KINDS: readonly WorkerKind[] = ['decode', 'embed', 'classify', 'webhook', 'train', 'ingest'];
/** Workers that keep results and batch entries in PostgreSQL (they check DATABASE_URL at start-up). */
const DATABASE_KINDS: readonly WorkerKind[] = ['classify', 'ingest'];

/** How long a job of a paused batch is put aside before it is looked at again (resume promotes it at once). */
export const PAUSE_RECHECK_MS = 60_000;

export interface WorkerStats {
  /** Jobs this worker finished successfully. */
  completed: number;
  /** Jobs that failed here (each attempt). */
  failed: number;
  /** decode: clips decoded with ffmpeg; embed: clips embedded. */
  computed: number;
  /** decode/embed: clips whose features were already in the feature store. */
  storeHits: number;
  frames: number;
}

export interface WorkerHandle {
  readonly kind: WorkerKind;
  readonly worker: Worker;
  readonly stats: WorkerStats;
}

export interface WorkerGroup {
  readonly rt: QueueRuntime;
  readonly handles: readonly WorkerHandle[];
  /** The embed worker's batching embedder, when one runs here (for stats). */
  readonly embedder: BatchingBackbone | undefined;
  /** Stop taking jobs, wait for the running ones (unless `force`), release models and connections. */
  close(force?: boolean): Promise<void>;
  /**
   * A forced shutdown, also while `close` is still waiting: the jobs running here go back to their
   * queues at once when Redis answers within `returnMs` (another worker takes them; otherwise their
   * locks expire and the stalled check brings them back), then every connection is cut.
   * Resolves with the number of jobs handed back.
   */
  forceClose(returnMs?: number): Promise<number>;
}

export interface StartWorkersOptions {
  log?: Logger;
  /** Per-kind concurrency overrides (tests, bench). */
  concurrency?: Partial<Record<WorkerKind, number>>;
  /**
   * A windowed clip's pass goes to the feature store (and the classify worker scores it) when it
   * has at most this many frames; longer ones are scored in the embed worker (tests).
   * @defaultValue 4096, as inline `label --windows`
   */
  windowsMaxStoredFrames?: number;
  /** Wraps the embed worker's backbone under its batcher (tests count the backbone calls). @defaultValue none */
  wrapBackbone?: (backbone: Backbone) => Backbone;
}

/** How often a windows pass writes its progress and looks for a cancellation. */
const PROGRESS_INTERVAL_MS = 500;

const newStats = (): WorkerStats => ({ completed: 0, failed: 0, computed: 0, storeHits: 0, frames: 0 });

/** Throw what BullMQ understands: UnrecoverableError for permanent errors, a coded Error otherwise. */
function toStageError(err: unknown): Error {
  if (err instanceof DelayedError || err instanceof UnrecoverableError) return err;
  const e = toFramewiseError(err);
  return e.permanent ? new UnrecoverableError(formatFailedReason(e)) : new Error(formatFailedReason(e));
}

/** The clip's cancellation (it, or its batch, was cancelled), or undefined; and its batch's state. */
async function runState(rt: QueueRuntime, clip: ClipRef): Promise<{ cancelled: FramewiseError | undefined; batchState: string | null }> {
  const [cancelled, batchState] = await Promise.all([rt.redis.exists(rt.keys.cancelled(clip.clipId)), clip.batchId ? rt.redis.hget(rt.keys.batch(clip.batchId), 'state') : Promise.resolve(null)]);
  const stop = cancelled || batchState === 'cancelled' ? new FramewiseError('FW_ERR_JOB_CANCELLED', `job ${clip.clipId} was cancelled${batchState === 'cancelled' ? ` (batch ${clip.batchId})` : ''}`) : undefined;
  return { cancelled: stop, batchState };
}

/** Before a stage runs: cancelled clip → fail; paused batch → put the job aside. */
async function checkRunnable(rt: QueueRuntime, job: Job, token: string | undefined, clip: ClipRef): Promise<void> {
  const { cancelled, batchState } = await runState(rt, clip);
  if (cancelled) throw cancelled;
  if (batchState === 'paused') {
    await markPutAside(rt, clip);
    await job.moveToDelayed(Date.now() + PAUSE_RECHECK_MS, token);
    throw new DelayedError();
  }
}

/** A failed child stage ends this stage with the same reason (its code first). */
async function passOnChildFailure(job: Job): Promise<void> {
  const failures = Object.values(await job.getIgnoredChildrenFailures());
  if (failures.length > 0) throw new UnrecoverableError(failures[0] as string);
}

/**
 * Follow a windows pass (minutes for a long video): its progress becomes the job's progress
 * `{percent, doneSec, durationSec, frames, windows}` (GET /v1/jobs/:id and SSE show `percent` as
 * the stage's progress, the rest as its `detail`), written at most every PROGRESS_INTERVAL_MS;
 * at the same pace a cancelled clip aborts the pass (ffmpeg is stopped at its next batch).
 * `finish` writes the last figures once the pass is over.
 */
function followWindowsPass(rt: QueueRuntime, job: Job, clip: ClipRef): Pick<WindowsEmbedOptions, 'signal' | 'onProgress'> & { finish: () => Promise<void> } {
  const ctl = new AbortController();
  let last = 0;
  let latest: WindowsProgress | undefined;
  const write = (p: WindowsProgress, percent: number): Promise<void> =>
    job.updateProgress({ percent, doneSec: Math.round(p.doneSec * 100) / 100, durationSec: p.durationSec, frames: p.frames, windows: p.windows }).catch(() => undefined);
  const onProgress = (p: WindowsProgress): void => {
    latest = p;
    const now = Date.now();
    if (now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    void write(p, p.durationSec > 0 ? Math.min(99, Math.round((100 * p.doneSec) / p.durationSec)) : 0);
    runState(rt, clip).then(
      ({ cancelled }) => cancelled && ctl.abort(cancelled),
      () => undefined,
    );
  };
  const finish = async (): Promise<void> => {
    if (latest) await write({ ...latest, doneSec: latest.durationSec || latest.doneSec }, 100);
  };
  return { signal: ctl.signal, onProgress, finish };
}

/** The folder of a job's model version (it travels with the job; older jobs: the current model's), checked to hold that version still. */
async function jobModelDir(config: Config, model: ClassifyJobData['model']): Promise<string> {
  const info = model.dir !== undefined ? await readModelInfo(config, model.dir) : await currentModelInfo(config);
  if (info.model.version !== model.version || info.model.id !== model.id) {
    throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the job asks for model ${model.id} ${model.version}; ${info.dir} holds ${info.model.id} ${info.model.version}`);
  }
  return info.dir;
}

async function onlyChildValue<T>(job: Job): Promise<T> {
  const values = Object.values(await job.getChildrenValues<T>());
  if (values.length !== 1) throw new FramewiseError('FW_ERR_INTERNAL', `job ${job.id} expected one finished child stage, found ${values.length}`);
  return values[0] as T;
}

function stageProcessor<D extends { clip: ClipRef }, R>(rt: QueueRuntime, fn: (job: Job<D, R>, signal: AbortSignal | undefined) => Promise<R>): Processor<D, R> {
  return async (job, token, signal) => {
    let done: (() => Promise<void>) | undefined;
    try {
      await checkRunnable(rt, job, token, job.data.clip);
      done = await markActive(rt, job.data.clip);
      return await fn(job, signal);
    } catch (err) {
      throw toStageError(err);
    } finally {
      await done?.();
    }
  };
}

export async function startWorkers(kinds: readonly WorkerKind[], config: Config, opts: StartWorkersOptions = {}): Promise<WorkerGroup> {
  const log = opts.log ?? getLogger(config.logLevel);
  const rt = openQueueRuntime(config, 'worker');
  const q = config.queue;
  const webhookPolicy = createNetworkPolicy(q.networkAllow);
  const deps: StageDeps = { tools: runtimeFromConfig(config).tools, store: rt.store, artifacts: rt.artifacts };
  const handles: WorkerHandle[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  let embedModels: EmbedModels | undefined;
  // results and batch entries: a missing or unreachable database stops the start here, naming DATABASE_URL
  if (kinds.some((k) => DATABASE_KINDS.includes(k))) {
    try {
      await rt.db.ready();
    } catch (err) {
      await rt.close();
      throw err;
    }
  }
  /** The jobs running in this process, with their lock tokens (a forced shutdown hands them back). */
  const running = new Map<Job, string | undefined>();

  const make = <D, R>(kind: WorkerKind, queue: QueueName, processor: Processor<D, R>, concurrency: number, stats: WorkerStats): Worker => {
    const tracked: Processor<D, R> = async (job, token, signal) => {
      running.set(job as Job, token);
      try {
        return await processor(job, token, signal);
      } finally {
        running.delete(job as Job);
      }
    };
    const worker = new Worker<D, R>(queue, tracked, {
      connection: workerConnection(config),
      prefix: rt.prefix,
      concurrency: opts.concurrency?.[kind] ?? concurrency,
      lockDuration: q.lockDurationMs,
      stalledInterval: q.stalledIntervalMs,
      maxStalledCount: 1,
      name: `${hostname()}:${process.pid}:${kind}`,
    });
    worker.on('error', (err) => log.warn({ kind, err: err.message }, 'worker connection error'));
    worker.on('completed', () => {
      stats.completed++;
    });
    worker.on('failed', (job, err) => {
      stats.failed++;
      if (!job || err instanceof DelayedError || err.name === 'DelayedError') return;
      log.info({ kind, jobId: job.id, attempt: job.attemptsMade, reason: err.message.slice(0, 300) }, 'job failed');
      const clipId = (job.data as { clip?: ClipRef }).clip?.clipId;
      if (!clipId) return;
      // a final failure (no retry left) finishes the clip: webhooks, batch completion, and its
      // decoded frames will never be embedded
      void job
        .getState()
        .then(async (state) => {
          // 'unknown': removed as it failed for good (FRAMEWISE_RETENTION_JOBS_COUNT=0)
          if (state !== 'failed' && state !== 'unknown') return;
          if (kind === 'embed') for (const key of clipArtifactKeys(clipId)) await rt.artifacts.delete(key);
          await noteClipFinished(rt, clipId);
        })
        .catch((e: unknown) => log.warn({ kind, clipId, err: String(e) }, 'bookkeeping after a failure did not complete'));
    });
    handles.push({ kind, worker: worker as unknown as Worker, stats });
    return worker as unknown as Worker;
  };

  try {
    for (const kind of new Set(kinds)) {
      const stats = newStats();
      if (kind === 'decode') {
        make<DecodeJobData, DecodeJobResult | StreamsDecodeJobResult | WindowsDecodeJobResult>(
          kind,
          QueueName.Decode,
          stageProcessor(rt, async (job, signal) => {
            await job.updateProgress(5);
            const { clip } = job.data;
            // a windowed clip is decoded by its embed stage, streaming (see window-stages.ts)
            const out = isWindowed(clip) ? await decodeWindowsStage(clip, deps) : hasStreams(clip) ? await decodeStreamsStage(clip, deps, signal) : await decodeStage(clip, deps, signal);
            if (out.hit) stats.storeHits++;
            else if ('count' in out) {
              stats.computed++;
              stats.frames += out.count;
            }
            await job.updateProgress(100);
            return out;
          }),
          q.decodeConcurrency,
          stats,
        );
      } else if (kind === 'embed') {
        const models = new EmbedModels({ runtime: runtimeFromConfig(config), batching: { maxFrames: q.embedBatchFrames, waitMs: q.embedBatchWaitMs }, log, wrapBackbone: opts.wrapBackbone });
        embedModels = models;
        // load and warm the current model's backbone and keypoint streams before taking jobs
        const current = await currentModelInfo(config).catch(() => undefined);
        if (current) await models.warm(current);
        cleanups.push(() => models.dispose());
        make<EmbedJobData, EmbedJobResult>(
          kind,
          QueueName.Embed,
          stageProcessor(rt, async (job) => {
            await passOnChildFailure(job);
            const { clip, model } = job.data;
            await job.updateProgress(10);
            let out: EmbedJobResult;
            if (isWindowed(clip)) {
              const { finish, ...follow } = followWindowsPass(rt, job, clip);
              out = await embedWindowsStage(clip, await onlyChildValue<WindowsDecodeJobResult>(job), deps, models.forClip(clip), {
                openHead: async () => {
                  if (!model) throw new FramewiseError('FW_ERR_INTERNAL', `embed job ${job.id} of a windowed clip carries no model`);
                  return TemporalHead.load(await jobModelDir(config, model), undefined, config.backend);
                },
                embedBatch: q.embedBatchFrames,
                ...(opts.windowsMaxStoredFrames !== undefined ? { maxStoredFrames: opts.windowsMaxStoredFrames } : {}),
                ...follow,
              });
              await finish();
            } else if (hasStreams(clip)) out = await embedStreamsStage(clip, await onlyChildValue<StreamsDecodeJobResult>(job), deps, models.forClip(clip));
            else out = await embedStage(clip, await onlyChildValue<DecodeJobResult>(job), deps, await models.backbone(clip));
            if (out.cached) stats.storeHits++;
            else {
              stats.computed++;
              stats.frames += out.frames;
            }
            return out;
          }),
          q.embedConcurrency,
          stats,
        );
      } else if (kind === 'classify') {
        let head: TemporalHead | undefined;
        const load = async (dir: string): Promise<TemporalHead> => {
          const next = await TemporalHead.load(dir, undefined, config.backend);
          await next.predict([{ data: new Float32Array(layoutRawDim(next.streams)), count: 1 }]); // warm-up: one step of every stream it reads
          log.info({ model: next.metadata.id, version: next.metadata.version, dir }, 'classify worker: head ready');
          return next;
        };
        // load and warm the current model before taking jobs; without one yet (a registry name
        // with no promoted version), jobs load theirs
        try {
          head = await load((await currentModelInfo(config)).dir);
        } catch (err) {
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'classify worker: no current model yet; heads load with their jobs');
        }
        /** The head of the job's model version (its folder travels with the job; older jobs: the current model's). */
        const headFor = async (model: ClassifyJobData['model']): Promise<TemporalHead> => {
          if (head && head.metadata.version === model.version && head.metadata.id === model.id) return head;
          const next = await load(await jobModelDir(config, model));
          head?.dispose();
          head = next;
          return head;
        };
        cleanups.push(async () => head?.dispose());
        // uploads whose jobs ended are deleted once their retention window has passed
        cleanups.push(startUploadSweeper(rt, log));
        const w = make<ClassifyJobData, ClassifyJobResult>(
          kind,
          QueueName.Classify,
          // the outcome goes to PostgreSQL before the job completes (outcomes.ts)
          stageProcessor(rt, (job) =>
            writeResult(rt, job, async () => {
              await passOnChildFailure(job);
              const embedded = await onlyChildValue<EmbedJobResult>(job);
              const h = await headFor(job.data.model);
              const { clip, topK } = job.data;
              if (isWindowed(clip)) return classifyWindowsStage(clip, embedded, h, topK, deps);
              return hasStreams(clip) ? classifyStreamsStage(clip, embedded, h, topK, deps) : classifyStage(clip, embedded, h, topK, deps);
            }),
          ),
          1,
          stats,
        );
        w.on('completed', (job) => {
          const clipId = (job.data as ClassifyJobData).clip.clipId;
          noteClipFinished(rt, clipId).catch((e: unknown) => log.warn({ clipId, err: String(e) }, 'bookkeeping after completion did not complete'));
        });
      } else if (kind === 'webhook') {
        make<WebhookJobData, { status: number }>(
          kind,
          QueueName.Webhook,
          async (job) => {
            try {
              return await deliverWebhook(job.data, q.webhookTimeoutMs, webhookPolicy);
            } catch (err) {
              throw toStageError(err);
            }
          },
          4,
          stats,
        );
      } else if (kind === 'ingest') {
        make<IngestJobData, IngestSummary>(
          kind,
          QueueName.Ingest,
          async (job) => {
            try {
              const out = await runIngest(job, rt, { log });
              log.info({ ...out }, 'batch listed');
              return out;
            } catch (err) {
              throw toStageError(err);
            }
          },
          q.ingestConcurrency,
          stats,
        );
      } else if (kind === 'train') {
        make<TrainJobData, TrainingJobResult>(
          kind,
          QueueName.Train,
          async (job) => {
            try {
              const out = await runTrainJob(job, rt, config);
              log.info({ trainingId: job.data.trainingId, name: out.id, version: out.version, epochs: out.epochs, cancelled: out.cancelled, validation: out.metrics.validation }, 'training finished');
              return out;
            } catch (err) {
              throw toStageError(err);
            }
          },
          1,
          stats,
        );
      }
    }
    await Promise.all(handles.map((h) => h.worker.waitUntilReady()));
    log.info({ kinds: handles.map((h) => h.kind) }, 'workers ready');
  } catch (err) {
    await Promise.allSettled(handles.map((h) => h.worker.close()));
    for (const c of cleanups) await c().catch(() => undefined);
    await rt.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    rt,
    handles,
    get embedder() {
      return embedModels?.embedder;
    },
    close(force = false) {
      closing ??= (async () => {
        await Promise.allSettled(handles.map((h) => h.worker.close(force)));
        for (const c of cleanups) await c().catch(() => undefined);
        await rt.close();
      })();
      return closing;
    },
    async forceClose(returnMs = 1000) {
      const held = [...running];
      let returned = 0;
      if (held.length > 0) {
        const handBack = Promise.allSettled(held.map(([job, token]) => job.moveToWait(token))).then((r) => (returned = r.filter((x) => x.status === 'fulfilled').length));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([handBack, new Promise((res) => (timer = setTimeout(res, returnMs)))]);
        clearTimeout(timer);
        log.warn({ running: held.map(([job]) => job.id), returned }, returned === held.length ? 'closing now: running jobs handed back to their queues' : 'closing now: running jobs not handed back (Redis unreachable); they come back once their locks expire');
      }
      for (const h of handles) void h.worker.disconnect().catch(() => undefined);
      rt.disconnect();
      return returned;
    },
  };
}

/**
 * Shutdown of a worker process (see shutdown.ts): the first SIGTERM/SIGINT stops taking jobs and
 * waits for the running ones (`group.close()`) for at most FRAMEWISE_SHUTDOWN_TIMEOUT_MS; past
 * that, or on a second signal, the running jobs are handed back to their queues (when Redis
 * answers) and the connections are cut (`group.forceClose()`), exit code 1.
 */
export function closeOnSignals(group: WorkerGroup, signals: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'], log: Logger = getLogger()): Promise<ShutdownOutcome> {
  const kinds = group.handles.map((h) => h.kind).join(',');
  return shutdownOnSignals(
    `worker ${kinds}`,
    {
      graceful: () => group.close(),
      force: async () => {
        await group.forceClose();
      },
    },
    { timeoutMs: group.rt.config.queue.shutdownTimeoutMs, log, signals },
  );
}

/**
 * POST the webhook body; anything but a 2xx is FW_ERR_WEBHOOK_FAILED (retried with backoff).
 * Internal addresses are refused after DNS resolution, on every redirect hop, unless `policy`
 * (FRAMEWISE_NETWORK_ALLOW) opens them; a refused address, a refused connection and a timeout
 * read the same, so that webhooks cannot be used to map internal ports.
 */
export async function deliverWebhook(data: WebhookJobData, timeoutMs: number, policy: NetworkPolicy = createNetworkPolicy()): Promise<{ status: number }> {
  const unreachable = (cause?: unknown): FramewiseError => new FramewiseError('FW_ERR_WEBHOOK_FAILED', `webhook ${redactUrl(data.url)} unreachable (no answer in time, connection refused, or an address FRAMEWISE_NETWORK_ALLOW does not allow)`, { cause });
  let url: URL;
  try {
    url = new URL(data.url);
  } catch (err) {
    throw unreachable(err);
  }
  if (hasCredentials(url)) throw new FramewiseError('FW_ERR_WEBHOOK_FAILED', `webhook ${redactUrl(data.url)}: URLs with credentials are not delivered`);
  let status: number;
  try {
    const res = await guardedRequest(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'framewise-webhook/1', 'x-framewise-event': data.event },
        body: JSON.stringify(data.body),
        signal: AbortSignal.timeout(timeoutMs),
      },
      policy,
    );
    status = res.status;
    res.body.destroy();
  } catch (err) {
    throw unreachable(err);
  }
  if (status < 200 || status > 299) throw new FramewiseError('FW_ERR_WEBHOOK_FAILED', `webhook ${redactUrl(data.url)} answered HTTP ${status}`);
  return { status };
}

/**
 * The body of a worker process (workers/*.worker.ts): start the given workers with the
 * environment's configuration and run until SIGTERM/SIGINT; a start-up failure is one line on
 * stderr and exit code 3.
 */
export async function runWorkerProcess(kinds: readonly WorkerKind[], name: string): Promise<void> {
  try {
    const config = loadConfig();
    const log = getLogger(config.logLevel);
    await startHoldingSignals(() => startWorkers(kinds, config, { log }), (group) => closeOnSignals(group, undefined, log), { timeoutMs: config.queue.shutdownTimeoutMs, log });
  } catch (err) {
    const e = toFramewiseError(err);
    process.stderr.write(`framewise ${name} worker: ${e.code}: ${e.message}\n`);
    process.exitCode = 3;
  }
}
