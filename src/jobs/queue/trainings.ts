/**
 * Training the head as a queue job: submit, status (per-epoch progress), cancel, list, and the
 * train worker's processor, which calls the same `runTraining` as `framewise train`.
 *
 * - A training is one job in the `train` queue (id `train-<32 hex>`), run by a train worker
 *   (one process per device, concurrency 1). Frame features come from the feature store, so a
 *   run after a crash or a cancellation embeds nothing it has embedded before.
 * - Progress is the job's progress object: the phase, feature extraction counts, and every
 *   finished epoch (loss, accuracy, validation loss and accuracy).
 * - Cancel: a waiting training is removed; a running one stops between batches, keeps the best
 *   epoch so far as a (not promoted) model version and ends `cancelled` with that result.
 */
import { randomBytes } from 'node:crypto';
import { Job, type JobState } from 'bullmq';
import type { Config } from '../../config/index.js';
import { FramewiseError } from '../../errors/index.js';
import { parseSampling } from '../../media/sampling.js';
import type { EpochLog } from '../../ml/head.js';
import { runTraining, type TrainingResult } from '../train.js';
import { parseFailedReason } from './clips.js';
import { JobName, QueueName } from './names.js';
import type { TrainJobData, TrainingRequestOptions } from './payloads.js';
import { withQueue, type QueueRuntime } from './runtime.js';

/** How long a cancelled training is remembered as cancelled. */
const CANCEL_TTL_S = 30 * 24 * 3600;
/** How often a running training looks for its cancellation. */
const CANCEL_POLL_MS = 500;
/** Feature-extraction progress is written at most this often. */
const PROGRESS_EVERY_MS = 500;

export type TrainingPhase = 'queued' | 'features' | 'training' | 'saving' | 'done';
export type TrainingState = 'queued' | 'active' | 'completed' | 'failed' | 'cancelled';

export interface TrainingProgress {
  phase: TrainingPhase;
  /** Labelled inputs whose features are read or computed. */
  items: { done: number; total: number; failed: number };
  /** Every finished epoch, in order. */
  epochs: EpochLog[];
  /** The epoch limit (training may stop earlier on validation loss). */
  maxEpochs: number;
}

/** The job's return value: `runTraining`'s result, in JSON. */
export type TrainingJobResult = Omit<TrainingResult, 'skipped'> & { skipped: Array<{ source: string; error: { code: string; message: string } }> };

export interface TrainingStatus {
  trainingId: string;
  state: TrainingState;
  name: string | null;
  manifest: string | null;
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** True once a cancel was asked for a running training (it stops at its next batch). */
  cancelRequested: boolean;
  progress: TrainingProgress;
  /** The saved model (also for a training cancelled after its first epoch: the best epoch so far). */
  result: TrainingJobResult | null;
  error: { code: string; message: string } | null;
}

export interface SubmitTrainingInput {
  manifest: string;
  manifestBaseDir?: string | undefined;
  valManifest?: string | undefined;
  name: string;
  promote?: boolean;
  options?: TrainingRequestOptions;
}

const TRAINING_ID = /^train-[0-9a-f]{32}$/;
export const isTrainingId = (id: string): boolean => TRAINING_ID.test(id);
const iso = (ms: number | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

const emptyProgress = (maxEpochs = 0): TrainingProgress => ({ phase: 'queued', items: { done: 0, total: 0, failed: 0 }, epochs: [], maxEpochs });

/** Queue a training; returns its id. Trainings are not deduplicated: each request is a new run. */
export async function submitTraining(rt: QueueRuntime, input: SubmitTrainingInput): Promise<{ trainingId: string }> {
  const trainingId = `train-${randomBytes(16).toString('hex')}`;
  const data: TrainJobData = {
    trainingId,
    manifest: input.manifest,
    ...(input.manifestBaseDir !== undefined ? { manifestBaseDir: input.manifestBaseDir } : {}),
    ...(input.valManifest !== undefined ? { valManifest: input.valManifest } : {}),
    name: input.name,
    promote: input.promote === true,
    options: input.options ?? {},
    createdAt: new Date().toISOString(),
  };
  // one attempt: a failure is reported as it is; a worker that dies mid-run loses its lock and the
  // stalled job runs again elsewhere (the stored features make that cheap)
  await withQueue(() => rt.queues[QueueName.Train].add(JobName.Train, data, { jobId: trainingId, attempts: 1, removeOnComplete: false, removeOnFail: false }));
  return { trainingId };
}

interface CancelRecord {
  at: number;
  data: TrainJobData | null;
}

function stateOf(raw: JobState | 'unknown', job: Job<TrainJobData, TrainingJobResult> | undefined, cancelled: boolean): TrainingState {
  if (raw === 'completed') return job?.returnvalue?.cancelled ? 'cancelled' : 'completed';
  if (raw === 'failed') return parseFailedReason(job?.failedReason).code === 'FW_ERR_JOB_CANCELLED' ? 'cancelled' : 'failed';
  if (raw === 'active') return 'active';
  if (raw === 'unknown') return cancelled ? 'cancelled' : 'queued';
  return 'queued';
}

/** The status of a training from what Redis holds of it: the job (and its state) and the cancellation record. */
function toTrainingStatus(trainingId: string, raw: JobState | 'unknown', job: Job<TrainJobData, TrainingJobResult> | undefined, record: CancelRecord | undefined): TrainingStatus {
  const data = job?.data ?? record?.data ?? null;
  const state = stateOf(job ? raw : 'unknown', job, record !== undefined);
  const progress = job && typeof job.progress === 'object' && job.progress !== null ? (job.progress as unknown as TrainingProgress) : emptyProgress(data?.options.training?.epochs);
  return {
    trainingId,
    state,
    name: data?.name ?? null,
    manifest: data?.manifest ?? null,
    createdAt: data?.createdAt ?? null,
    startedAt: iso(job?.processedOn),
    finishedAt: iso(job?.finishedOn) ?? (record && !job ? new Date(record.at).toISOString() : null),
    cancelRequested: record !== undefined,
    progress,
    result: raw === 'completed' && job?.returnvalue ? job.returnvalue : null,
    error: raw === 'failed' ? parseFailedReason(job?.failedReason) : state === 'cancelled' && !job ? { code: 'FW_ERR_JOB_CANCELLED', message: 'cancelled before it started' } : null,
  };
}

const readCancelRecord = async (rt: QueueRuntime, trainingId: string): Promise<CancelRecord | undefined> => {
  const raw = await rt.redis.get(rt.keys.trainingCancelled(trainingId));
  return raw ? (JSON.parse(raw) as CancelRecord) : undefined;
};

/** A training's state, progress (every epoch so far), and result or error. */
export async function trainingStatus(rt: QueueRuntime, trainingId: string): Promise<TrainingStatus> {
  if (!isTrainingId(trainingId)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no training ${trainingId} (training ids look like train-<32 hex digits>)`);
  return withQueue(async () => {
    const queue = rt.queues[QueueName.Train];
    // the state first, then the job: a job seen completed has its return value in what is read after
    const raw = await queue.getJobState(trainingId);
    const [job, record] = await Promise.all([Job.fromId<TrainJobData, TrainingJobResult>(queue, trainingId), readCancelRecord(rt, trainingId)]);
    if (!job && !record) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no training ${trainingId}`);
    return toTrainingStatus(trainingId, raw, job, record);
  });
}

/** Cancel a training: a waiting one is removed; a running one stops at its next batch and keeps its best epoch. */
export async function cancelTraining(rt: QueueRuntime, trainingId: string): Promise<TrainingStatus> {
  const status = await trainingStatus(rt, trainingId);
  if (status.state === 'cancelled' || status.cancelRequested) return status;
  if (status.state === 'completed' || status.state === 'failed') {
    throw new FramewiseError('FW_ERR_JOB_CONFLICT', `training ${trainingId} has already ${status.state === 'completed' ? 'completed' : 'failed'}; nothing to cancel`);
  }
  await withQueue(async () => {
    const job = await Job.fromId<TrainJobData>(rt.queues[QueueName.Train], trainingId);
    const record: CancelRecord = { at: Date.now(), data: job?.data ?? null };
    await rt.redis.set(rt.keys.trainingCancelled(trainingId), JSON.stringify(record), 'EX', CANCEL_TTL_S);
    // a waiting job goes now; a running one (locked) stays and stops itself
    await rt.queues[QueueName.Train].remove(trainingId).catch(() => 0);
  });
  return trainingStatus(rt, trainingId);
}

/** The latest trainings still in the queue (newest first; one removed while waiting is only found by its id). */
export async function listTrainings(rt: QueueRuntime, limit = 50): Promise<TrainingStatus[]> {
  return withQueue(async () => {
    const jobs = (await rt.queues[QueueName.Train].getJobs(['active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed'], 0, limit - 1, false)) as Array<Job<TrainJobData, TrainingJobResult> | undefined>;
    const all = await Promise.all(
      jobs.flatMap((job) => (job?.id && isTrainingId(job.id) ? [job] : [])).map(async (job) => {
        const [raw, record] = await Promise.all([job.getState(), readCancelRecord(rt, job.id as string)]);
        return toTrainingStatus(job.id as string, raw, job, record);
      }),
    );
    return all.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''));
  });
}

/**
 * The train worker's processor: `runTraining` on the job's data, registering the model under its
 * name, with progress (phase, items, every epoch) on the job and cancellation polled from Redis.
 */
export async function runTrainJob(job: Job<TrainJobData, TrainingJobResult>, rt: QueueRuntime, config: Config): Promise<TrainingJobResult> {
  const d = job.data;
  const o = d.options;
  const progress = emptyProgress(o.training?.epochs ?? 0);
  progress.phase = 'features';
  let lastWrite = 0;
  const write = async (force: boolean): Promise<void> => {
    if (!force && Date.now() - lastWrite < PROGRESS_EVERY_MS) return;
    lastWrite = Date.now();
    await job.updateProgress(progress as unknown as object);
  };
  const abort = new AbortController();
  const checkCancel = async (): Promise<void> => {
    if (!abort.signal.aborted && (await rt.redis.exists(rt.keys.trainingCancelled(d.trainingId)))) abort.abort();
  };
  await checkCancel();
  if (abort.signal.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', `training ${d.trainingId} was cancelled`);
  const poll = setInterval(() => void checkCancel().catch(() => undefined), CANCEL_POLL_MS);
  await write(true);
  try {
    const result = await runTraining(
      {
        config,
        manifest: d.manifest,
        ...(d.manifestBaseDir !== undefined ? { manifestBaseDir: d.manifestBaseDir } : {}),
        ...(d.valManifest !== undefined ? { valManifest: d.valManifest } : {}),
        register: d.name,
        promote: d.promote,
        ...(o.split ? { split: o.split } : {}),
        ...(o.sampling ? { sampling: parseSampling(o.sampling) } : {}),
        ...(o.feature ? { runtime: { featureKind: o.feature } } : {}),
        head: o.head ?? {},
        training: o.training ?? {},
        ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
        ...(o.augment ? { augment: o.augment } : {}),
        // the training default (DEFAULT_STREAMS) unless the request names its streams: the queue's workers serve any set
        ...(o.streams ? { streams: o.streams } : {}),
      },
      {
        signal: abort.signal,
        onItem: (done, total, _item, ok) => {
          progress.items = { done, total, failed: progress.items.failed + (ok ? 0 : 1) };
          if (done === total) progress.phase = 'training';
          void write(done === total).catch(() => undefined);
        },
        onEpoch: async (log) => {
          progress.phase = 'training';
          progress.epochs.push(log);
          await write(true);
        },
      },
    );
    progress.phase = 'done';
    await write(true);
    return { ...result, skipped: result.skipped.map((s) => ({ source: s.source, error: { code: s.error.code, message: s.error.message } })) };
  } finally {
    clearInterval(poll);
  }
}
