/**
 * One clip in queue mode: submit (idempotent), status, cancel, wait, and the bookkeeping done
 * when a clip reaches a final state (webhooks, its outcome in PostgreSQL and its batches).
 * A clip whose jobs have left Redis (retention) is read from PostgreSQL: its status, its result,
 * and whether a new submission of the same bytes has anything left to do.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Job, type FlowJob, type JobState } from 'bullmq';
import { FramewiseError } from '../../errors/index.js';
import { contentHash as hashFile } from '../../features/feature-store.js';
import { formatSampling, parseWindows } from '../../media/sampling.js';
import { validateThreshold } from '../segments.js';
import { segmentationFor, type LabelFailure, type LabelResult, type LabelSuccess } from '../label.js';
import { isRgbLayout } from '../../features/stream-keys.js';
import { clipArtifactKeys } from './artifact-store.js';
import { failureIsFinal, formatFailedReason, parseFailedReason } from './failed-reason.js';
import { clipJobId, isClipId, stageJobIds, webhookJobId } from './idempotency.js';
import { finishClip, recordOutcome } from './outcomes.js';
import { readResult, type StoredResult } from './results-store.js';
import { currentModelInfo, type ModelInfo } from './model-info.js';
import { JobName, PRIORITY, QueueName, STAGE_QUEUES, type PriorityClass, type StageQueue } from './names.js';
import type { ClassifyJobData, ClipRef, ClipWindows, DecodeJobData, EmbedJobData, WebhookJobData } from './payloads.js';
import { withQueue, type QueueRuntime } from './runtime.js';

/** How long a cancelled clip is remembered as cancelled. */
const CANCEL_TTL_S = 30 * 24 * 3600;

/** What is kept of a cancelled clip (its jobs may be gone). */
interface CancelRecord {
  at: number;
  source: string | null;
}

export interface SubmitClipInput {
  /** Absolute path the workers can read. */
  path: string;
  /** Name reported in the result (`path` of the result). */
  source: string;
  /** sha256 of the bytes when already known (uploads hash while streaming). */
  contentHash?: string;
  /** `interactive` (single clips) runs ahead of `batch`. @defaultValue 'interactive' */
  priority?: PriorityClass;
  batchId?: string;
  /** Called when the clip finishes (also when it had already finished). */
  webhook?: string;
  /** @defaultValue FRAMEWISE_TOP_K */
  topK?: number;
  /** The model to label with. @defaultValue the model in FRAMEWISE_MODEL_DIR */
  model?: ModelInfo;
  /** Label window by window (built for `model`: see `toClipWindows`). @defaultValue one clip-level label */
  windows?: ClipWindows;
}

export type ClipState = 'queued' | 'active' | 'paused' | 'completed' | 'failed' | 'cancelled';

export interface SubmitClipOutcome {
  jobId: string;
  /** False when the same bytes (same model, sampling, top-k) were already submitted: no new work. */
  created: boolean;
}

export interface StageStatus {
  state: JobState | 'unknown' | 'missing';
  /** 0–100. */
  progress: number;
  /** What a long stage reports besides its percentage (a windowed clip's embed stage: `doneSec`, `durationSec`, `frames`, `windows`), or null. */
  detail: Record<string, number> | null;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  error: { code: string; message: string } | null;
}

export interface ClipStatus {
  jobId: string;
  state: ClipState;
  /** The stage running or next to run (null when finished). */
  stage: StageQueue | null;
  source: string | null;
  batchId: string | null;
  createdAt: string | null;
  finishedAt: string | null;
  stages: Record<StageQueue, StageStatus>;
  result: LabelSuccess | null;
  error: { code: string; message: string } | null;
}

export { failureIsFinal, formatFailedReason, parseFailedReason };

/** The flow tree of a clip: classify (root) ◄─ embed ◄─ decode (leaf). */
export function buildClipFlow(rt: QueueRuntime, clip: ClipRef, model: ClassifyJobData['model'], topK: number, priority: PriorityClass): FlowJob {
  const ids = stageJobIds(clip.clipId);
  const base = { ...rt.jobOptions, priority: PRIORITY[priority] };
  // a failed child releases its parent, whose processor passes the failure up (same failedReason)
  const child = { ignoreDependencyOnFailure: true };
  const decode: DecodeJobData = { clip };
  // a windowed clip too long for the feature store is scored in the embed stage: it needs the model
  const embed: EmbedJobData = clip.windows ? { clip, model } : { clip };
  const classify: ClassifyJobData = { clip, model, topK };
  return {
    name: JobName.Classify,
    queueName: QueueName.Classify,
    data: classify,
    opts: { ...base, jobId: ids.classify },
    children: [
      {
        name: JobName.Embed,
        queueName: QueueName.Embed,
        data: embed,
        opts: { ...base, ...child, jobId: ids.embed },
        children: [{ name: JobName.Decode, queueName: QueueName.Decode, data: decode, opts: { ...base, ...child, jobId: ids.decode } }],
      },
    ],
  };
}

/**
 * The windows of a submission for this model, as `label --windows W,S --threshold P` builds them:
 * `windows` is `W,S` (seconds), `W` (S = W/2) or `auto` (2,1), each window sampled with the
 * model's `uniform:N`; `threshold` (the segments' unknown threshold, [0, 1]) needs `windows`.
 * Undefined when neither is given; bad values are FW_ERR_CONFIG_INVALID (the API answers 400).
 */
export function toClipWindows(model: ModelInfo, windows: string | undefined, threshold: number | undefined, merge: { hysteresis?: number | undefined; minSegmentSec?: number | undefined } = {}): ClipWindows | undefined {
  const { hysteresis, minSegmentSec } = merge;
  if (windows === undefined) {
    if (threshold !== undefined || hysteresis !== undefined || minSegmentSec !== undefined) {
      throw new FramewiseError('FW_ERR_CONFIG_INVALID', '`threshold`, `hysteresis` and `minSegment` apply to the segments of windowed labelling: use them with `windows`');
    }
    return undefined;
  }
  const { policy } = model.sampling;
  if (policy.kind !== 'uniform') throw new FramewiseError('FW_ERR_CONFIG_INVALID', `windows need a head trained with uniform:N sampling (model ${model.model.id} ${model.model.version}: ${formatSampling(policy)})`);
  if (threshold !== undefined) validateThreshold(threshold, '`threshold`');
  const out: ClipWindows = {
    policy: parseWindows(windows, policy.frames),
    ...(threshold !== undefined ? { threshold } : {}),
    ...(hysteresis !== undefined ? { hysteresis } : {}),
    ...(minSegmentSec !== undefined ? { minSegmentSec } : {}),
  };
  // the merge settings as the classify stage will build them: bad combinations fail here, not in a job
  segmentationFor(model, out);
  return out;
}

/** Remove every job of a clip's flow (for a resubmission after a retryable failure). */
export async function removeClipJobs(rt: QueueRuntime, clipId: string): Promise<void> {
  const ids = stageJobIds(clipId);
  await rt.queues[QueueName.Classify].remove(ids.classify, { removeChildren: true }).catch(() => 0);
  await rt.queues[QueueName.Embed].remove(ids.embed, { removeChildren: true }).catch(() => 0);
  await rt.queues[QueueName.Decode].remove(ids.decode).catch(() => 0);
}

/**
 * Submit one clip: its job id comes from the bytes and the model, so the same bytes submitted
 * twice give the same job (and one decode, one result). A clip that failed for a reason a retry
 * can fix (transient errors, cancellation) is run again; a bad input keeps its failure. A clip
 * whose jobs have left Redis is judged by its result in PostgreSQL.
 */
export async function submitClip(rt: QueueRuntime, input: SubmitClipInput): Promise<SubmitClipOutcome> {
  const model = input.model ?? (await currentModelInfo(rt.config));
  const topK = input.topK ?? rt.config.queue.topK;
  const contentHash = input.contentHash ?? (await hashFile(input.path).catch((err: unknown) => {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read ${input.source}`, { cause: err });
  }));
  const clipId = clipJobId({ contentHash, model: model.model, backbone: model.backbone, sampling: model.sampling, topK, windows: input.windows, streams: model.streams });
  const done = async (): Promise<SubmitClipOutcome> => {
    if (input.webhook) await queueWebhooks(rt, clipId, [input.webhook]);
    return { jobId: clipId, created: false };
  };
  const existing = await withQueue(async () => {
    if (input.webhook) await rt.redis.sadd(rt.keys.clipWebhooks(clipId), input.webhook);
    return Job.fromId(rt.queues[QueueName.Classify], clipId);
  });
  if (existing) {
    const state = await withQueue(() => existing.getState());
    if (state !== 'failed' || failureIsFinal(parseFailedReason(existing.failedReason).code)) {
      if (state === 'completed' || state === 'failed') return done();
      return { jobId: clipId, created: false };
    }
    await withQueue(() => removeClipJobs(rt, clipId));
  } else {
    // its jobs may have left Redis (retention): the stored outcome decides
    const stored = await readResult(rt.db, clipId);
    if (stored && (stored.ok || failureIsFinal(stored.errorCode ?? ''))) return done();
  }
  return withQueue(async () => {
    await rt.redis.del(rt.keys.cancelled(clipId));
    const clip: ClipRef = {
      clipId,
      path: input.path,
      source: input.source,
      contentHash,
      backbone: model.backbone,
      sampling: model.sampling,
      ...(input.batchId ? { batchId: input.batchId } : {}),
      ...(input.windows ? { windows: input.windows } : {}),
      // the stages compute exactly the model's streams (absent: rgb alone)
      ...(isRgbLayout(model.streams) ? {} : { streams: model.streams }),
    };
    await rt.flow.add(buildClipFlow(rt, clip, { ...model.model, dir: model.dir }, topK, input.priority ?? 'interactive'));
    return { jobId: clipId, created: true };
  });
}

const iso = (ms: number | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

/** A stage's progress: a percentage, or `{percent, ...numbers}` (see `StageStatus.detail`). */
export function readProgress(raw: unknown): { progress: number; detail: Record<string, number> | null } {
  if (typeof raw === 'number') return { progress: raw, detail: null };
  if (!raw || typeof raw !== 'object') return { progress: 0, detail: null };
  const { percent, ...rest } = raw as Record<string, unknown>;
  const detail = Object.fromEntries(Object.entries(rest).filter((e): e is [string, number] => typeof e[1] === 'number'));
  return { progress: typeof percent === 'number' ? percent : 0, detail: Object.keys(detail).length > 0 ? detail : null };
}

function stageStatus(job: Job | undefined, raw: JobState | 'unknown'): StageStatus {
  if (!job || raw === 'unknown') return { state: 'missing', progress: 0, detail: null, attempts: 0, startedAt: null, finishedAt: null, error: null };
  // a prioritized job is a waiting job (BullMQ keeps them in another set)
  const state = raw === 'prioritized' ? 'waiting' : raw;
  const { progress, detail } = readProgress(job.progress);
  return {
    state,
    progress: state === 'completed' ? 100 : progress,
    detail,
    attempts: job.attemptsMade,
    startedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
    error: state === 'failed' ? parseFailedReason(job.failedReason) : null,
  };
}

const removedStage = (state: StageStatus['state'], at: string | null, error: StageStatus['error'] = null): StageStatus => ({ state, progress: state === 'completed' ? 100 : 0, detail: null, attempts: 0, startedAt: null, finishedAt: at, error });

/** The status of a clip whose jobs have left Redis, from its stored outcome. */
function storedStatus(stored: StoredResult): ClipStatus {
  const line = stored.line;
  const error = line.ok ? null : line.error;
  const state: ClipState = line.ok ? 'completed' : error?.code === 'FW_ERR_JOB_CANCELLED' ? 'cancelled' : 'failed';
  const at = stored.finishedAt;
  const stages: Record<StageQueue, StageStatus> = line.ok
    ? { [QueueName.Decode]: removedStage('completed', null), [QueueName.Embed]: removedStage('completed', null), [QueueName.Classify]: removedStage('completed', at) }
    : { [QueueName.Decode]: removedStage('missing', null), [QueueName.Embed]: removedStage('missing', null), [QueueName.Classify]: removedStage('failed', at, error) };
  return { jobId: stored.jobId, state, stage: null, source: line.path, batchId: stored.batchId, createdAt: stored.createdAt, finishedAt: at, stages, result: line.ok ? line : null, error };
}

/** The state of a clip's flow, its stages, and its result or error. */
export async function clipStatus(rt: QueueRuntime, clipId: string): Promise<ClipStatus> {
  if (!isClipId(clipId)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no job ${clipId} (job ids look like clip-<32 hex digits>)`);
  return withQueue(async () => {
    const ids = stageJobIds(clipId);
    // states first, then the jobs: a job seen completed has its return value in what is read after
    const [decodeState, embedState, classifyState] = await Promise.all(STAGE_QUEUES.map((q) => rt.queues[q].getJobState(ids[q])));
    const [classify, embed, decode, cancelRaw] = await Promise.all([
      Job.fromId(rt.queues[QueueName.Classify], ids.classify),
      Job.fromId(rt.queues[QueueName.Embed], ids.embed),
      Job.fromId(rt.queues[QueueName.Decode], ids.decode),
      rt.redis.get(rt.keys.cancelled(clipId)),
    ]);
    const cancelled = cancelRaw ? (JSON.parse(cancelRaw) as CancelRecord) : undefined;
    if (!classify && !embed && !decode && !cancelled) {
      // its jobs have left Redis (retention): the outcome is in PostgreSQL
      const stored = await readResult(rt.db, clipId);
      if (!stored) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no job ${clipId}`);
      return storedStatus(stored);
    }
    const stages: Record<StageQueue, StageStatus> = {
      [QueueName.Decode]: stageStatus(decode, decodeState ?? 'unknown'),
      [QueueName.Embed]: stageStatus(embed, embedState ?? 'unknown'),
      [QueueName.Classify]: stageStatus(classify, classifyState ?? 'unknown'),
    };
    // a finished stage may leave Redis before the later ones finish (retention by count): one
    // whose later stage is there has run
    for (const [i, q] of STAGE_QUEUES.entries()) {
      if (stages[q].state === 'missing' && STAGE_QUEUES.slice(i + 1).some((later) => stages[later].state !== 'missing')) stages[q] = { ...stages[q], state: 'completed', progress: 100 };
    }
    const data = (classify?.data ?? embed?.data ?? decode?.data) as { clip?: ClipRef } | undefined;
    const clip = data?.clip;
    const root = stages[QueueName.Classify];
    const failedStage = STAGE_QUEUES.find((s) => stages[s].state === 'failed');
    let state: ClipState;
    let error: ClipStatus['error'] = null;
    let result: LabelSuccess | null = null;
    // when it finished: stable across calls (webhook ids depend on it)
    let finishedAt: string | null = null;
    if (root.state === 'completed') {
      state = 'completed';
      result = (classify?.returnvalue ?? null) as LabelSuccess | null;
      finishedAt = root.finishedAt;
    } else if (cancelled) {
      state = 'cancelled';
      error = { code: 'FW_ERR_JOB_CANCELLED', message: `job ${clipId} was cancelled` };
      finishedAt = iso(cancelled.at);
    } else if (failedStage) {
      // the first failing stage holds the original error (later stages pass it on unchanged)
      state = 'failed';
      error = stages[failedStage].error;
      if (error?.code === 'FW_ERR_JOB_CANCELLED') state = 'cancelled';
      finishedAt = stages[failedStage].finishedAt;
    } else if (STAGE_QUEUES.some((s) => stages[s].state === 'active')) {
      state = 'active';
    } else if (clip?.batchId && STAGE_QUEUES.some((s) => stages[s].state === 'delayed') && (await rt.redis.hget(rt.keys.batch(clip.batchId), 'state')) === 'paused') {
      state = 'paused';
    } else state = 'queued';
    const finished = state === 'completed' || state === 'failed' || state === 'cancelled';
    const stage = finished ? null : (STAGE_QUEUES.find((s) => stages[s].state !== 'completed') ?? null);
    return {
      jobId: clipId,
      state,
      stage,
      source: clip?.source ?? cancelled?.source ?? null,
      batchId: clip?.batchId ?? null,
      createdAt: iso(decode?.timestamp ?? classify?.timestamp),
      finishedAt,
      stages,
      result,
      error,
    };
  });
}

/** A finished clip as a result line (`LabelResult`); undefined while it is not finished. */
export function toResult(status: ClipStatus, source?: string): LabelResult | undefined {
  const path = source ?? status.source ?? status.jobId;
  if (status.state === 'completed' && status.result) return { ...status.result, path };
  if (status.state === 'failed' || status.state === 'cancelled') {
    const failure: LabelFailure = { path, ok: false, error: status.error ?? { code: 'FW_ERR_INTERNAL', message: 'failed' } };
    return failure;
  }
  return undefined;
}

/** Cancel a clip: waiting jobs are removed; a running stage fails at its next check. */
export async function cancelClip(rt: QueueRuntime, clipId: string): Promise<ClipStatus> {
  const status = await clipStatus(rt, clipId);
  if (status.state === 'cancelled') return status;
  if (status.state === 'completed' || status.state === 'failed') {
    throw new FramewiseError('FW_ERR_JOB_CONFLICT', `job ${clipId} has already ${status.state === 'completed' ? 'completed' : 'failed'}; nothing to cancel`);
  }
  const data = await withQueue(async () => (await Job.fromId(rt.queues[QueueName.Classify], clipId))?.data as ClassifyJobData | undefined);
  const removed = await withQueue(async () => {
    const record: CancelRecord = { at: Date.now(), source: status.source };
    await rt.redis.set(rt.keys.cancelled(clipId), JSON.stringify(record), 'EX', CANCEL_TTL_S);
    // removes the root and its children unless a worker holds one of them (then it fails at its next check)
    const n = await rt.queues[QueueName.Classify].remove(clipId, { removeChildren: true }).catch(() => 0);
    if (n === 1) for (const key of clipArtifactKeys(clipId)) await rt.artifacts.delete(key); // decoded frames nobody will embed
    return n === 1;
  });
  const after = await clipStatus(rt, clipId);
  // removed: nobody else will record it; otherwise the running stage fails at its next check and its worker does
  if (removed) {
    const error = { code: 'FW_ERR_JOB_CANCELLED', message: `job ${clipId} was cancelled` };
    if (data) await recordOutcome(rt, { data, result: { path: data.clip.source, ok: false, error } });
    else await finishClip(rt, clipId, 'cancelled');
  }
  await noteClipFinished(rt, clipId);
  return after;
}

/** Poll until the clip is finished (completed, failed or cancelled). */
export async function waitForClip(rt: QueueRuntime, clipId: string, opts: { timeoutMs?: number; pollMs?: number; signal?: AbortSignal } = {}): Promise<ClipStatus> {
  const deadline = Date.now() + (opts.timeoutMs ?? Infinity);
  for (;;) {
    let status: ClipStatus | undefined;
    try {
      status = await clipStatus(rt, clipId);
    } catch (err) {
      if (!(err instanceof FramewiseError && err.code === 'FW_ERR_QUEUE_UNAVAILABLE')) throw err;
    }
    if (status && (status.state === 'completed' || status.state === 'failed' || status.state === 'cancelled')) return status;
    if (Date.now() > deadline) throw new FramewiseError('FW_ERR_JOB_CONFLICT', `job ${clipId} did not finish in ${opts.timeoutMs} ms (state ${status?.state ?? 'unknown'})`);
    if (opts.signal?.aborted) throw opts.signal.reason;
    await sleep(opts.pollMs ?? 250);
  }
}

/** Queue the clip's webhooks (job id per clip and URL: each is sent once). */
async function queueWebhooks(rt: QueueRuntime, clipId: string, urls: readonly string[]): Promise<void> {
  if (urls.length === 0) return;
  const status = await clipStatus(rt, clipId);
  const result = toResult(status);
  if (!result) return;
  const event = status.state === 'completed' ? 'job.completed' : 'job.failed';
  for (const url of urls) {
    const data: WebhookJobData = { url, event, body: { event, jobId: clipId, state: status.state, result } };
    await withQueue(() =>
      rt.queues[QueueName.Webhook].add(JobName.Webhook, data, {
        jobId: webhookJobId(clipId, url, `${status.state}@${status.finishedAt}`),
        attempts: rt.config.queue.webhookAttempts,
        backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: rt.jobOptions.removeOnComplete,
        removeOnFail: rt.jobOptions.removeOnFail,
      }),
    );
  }
}

/**
 * Bookkeeping when a clip reaches a final state: its webhooks, and for a failure or cancellation
 * its outcome in PostgreSQL and its batch entries (a success was written by the classify worker
 * before its job completed: outcomes.ts `writeResult`). Idempotent (upserts, guarded moves and
 * deterministic job ids), so every worker that sees the final state may call it.
 */
export async function noteClipFinished(rt: QueueRuntime, clipId: string): Promise<void> {
  const status = await clipStatus(rt, clipId);
  if (status.state === 'failed' || status.state === 'cancelled') {
    const data = await withQueue(async () => (await Job.fromId(rt.queues[QueueName.Classify], clipId))?.data as ClassifyJobData | undefined);
    const error = status.error ?? { code: 'FW_ERR_INTERNAL', message: 'failed' };
    if (data?.clip) await recordOutcome(rt, { data, result: { path: data.clip.source, ok: false, error } });
    else await finishClip(rt, clipId, status.state);
  }
  await withQueue(async () => {
    const key = rt.keys.clipWebhooks(clipId);
    await queueWebhooks(rt, clipId, await rt.redis.smembers(key));
    // the registrations are kept as long as the finished jobs are (a re-run registers again)
    await rt.redis.expire(key, Math.max(60, rt.config.queue.retention.jobsAgeS));
  });
}

export { webhookJobId };
