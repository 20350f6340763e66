/**
 * Batches: a folder, glob or manifest becomes one clip job per file, tracked as one batch that
 * can be paused, resumed and cancelled, with counts, progress and results (JSON Lines or CSV).
 *
 * Redis keeps the batch record (hash), its entries in input order (list of JSON), and the set of
 * its clips that finished (for a timely `batch.completed` webhook). Counts are always computed
 * from the jobs' states, so they stay right whatever happened to a worker.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { Job } from 'bullmq';
import fg from 'fast-glob';
import { FramewiseError, toFramewiseError } from '../../errors/index.js';
import { contentHash as hashFile } from '../../features/feature-store.js';
import { listVideos, readManifest, VIDEO_EXTENSIONS, type InputItem } from '../../features/inputs.js';
import type { LabelResult } from '../label.js';
import { cancelClip, clipStatus, submitClip, toResult, webhookJobId, type ClipState, type ClipStatus } from './clips.js';
import { clipJobId, isBatchId, stageJobIds } from './idempotency.js';
import { currentModelInfo, type ModelInfo } from './model-info.js';
import { JobName, QueueName, STAGE_QUEUES } from './names.js';
import type { ClipWindows, WebhookJobData } from './payloads.js';
import { withQueue, type QueueRuntime } from './runtime.js';

export const BATCH_MODES = ['missing', 'all'] as const;
/** `all`: every file is in the batch (files already labelled by this model reuse their result); `missing`: files already labelled by this model are skipped. */
export type BatchMode = (typeof BATCH_MODES)[number];

export type BatchState = 'submitting' | 'running' | 'paused' | 'cancelled' | 'completed';

/** Exactly one of `path` (a folder, a video or a .csv manifest), `glob` or `manifest`. */
export interface BatchSource {
  path?: string | undefined;
  glob?: string | undefined;
  manifest?: string | undefined;
}

export interface BatchEntry {
  source: string;
  jobId?: string;
  error?: { code: string; message: string };
}

/** Maps a user-given path to the real path that may be read, or throws FW_ERR_PATH_FORBIDDEN. */
export type PathGuard = (path: string) => Promise<string>;

export interface CreateBatchInput {
  source: BatchSource;
  mode: BatchMode;
  webhook?: string | undefined;
  topK?: number | undefined;
  /** The API restricts paths to FRAMEWISE_PATH_ROOTS; the CLI reads what its user can. */
  guard?: PathGuard;
  model?: ModelInfo;
  /** Label every file window by window (see `toClipWindows`); part of the job ids and of the `missing` index. */
  windows?: ClipWindows | undefined;
  /** Files hashed and submitted at once. @defaultValue 4 */
  parallel?: number;
}

export interface BatchCounts {
  total: number;
  queued: number;
  active: number;
  paused: number;
  completed: number;
  failed: number;
  cancelled: number;
}

export interface BatchStatus {
  batchId: string;
  state: BatchState;
  mode: BatchMode;
  source: BatchSource;
  createdAt: string;
  finishedAt: string | null;
  /** Files skipped by `mode: missing` (already labelled by this model). */
  skipped: number;
  counts: BatchCounts;
  /** Finished share of the entries, 0–1. */
  progress: number;
}

export interface CreateBatchOutcome {
  batchId: string;
  /** Entries in the batch (files with a job, and files rejected before queueing). */
  total: number;
  /** New jobs added to the queues. */
  created: number;
  skipped: number;
  /** Files rejected before queueing (outside the roots, unreadable). */
  rejected: number;
}

const newBatchId = (): string => `batch-${randomBytes(16).toString('hex')}`;
const hasGlobChars = (s: string): boolean => /[*?[\]{}]/.test(s);
const isVideoName = (p: string): boolean => VIDEO_EXTENSIONS.has(extname(p).toLowerCase());
const identity: PathGuard = async (p) => p;

/** The static folder of a glob (the part before the first segment with a wildcard). */
export function globBase(pattern: string): string {
  const parts = pattern.split('/');
  const i = parts.findIndex(hasGlobChars);
  const base = parts.slice(0, i < 0 ? parts.length : i).join('/');
  return base === '' ? (pattern.startsWith('/') ? '/' : '.') : base;
}

async function expandSource(source: BatchSource, guard: PathGuard): Promise<{ items: InputItem[]; errors: BatchEntry[] }> {
  const given = [source.path, source.glob, source.manifest].filter((v) => v !== undefined);
  if (given.length !== 1) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'give exactly one of path, glob or manifest');
  const errors: BatchEntry[] = [];
  const items: InputItem[] = [];
  const fromManifest = async (file: string): Promise<void> => {
    const m = await readManifest(await guard(file), { requireLabel: false });
    items.push(...m.items);
    errors.push(...m.errors.map((e) => ({ source: e.source, error: e.error.toJSON() })));
  };
  if (source.manifest !== undefined) await fromManifest(source.manifest);
  else if (source.glob !== undefined) {
    await guard(globBase(source.glob));
    // no symlinked folder is followed, and every match must pass the guard (a `..` inside the
    // pattern, or a symlinked file, could lead out): what does not is left out, unnamed
    const found = (await fg(source.glob, { onlyFiles: true, dot: false, absolute: true, followSymbolicLinks: false })).filter(isVideoName).sort();
    const allowed = await Promise.all(found.map((m) => guard(m).then(() => true, () => false)));
    const matches = found.filter((_, i) => allowed[i]);
    if (matches.length === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files match ${source.glob}`);
    items.push(...matches.map((m) => ({ path: m, source: m, extra: {} })));
  } else {
    const real = await guard(source.path as string);
    const st = await stat(real).catch((err: unknown) => {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file or folder: ${source.path}`, { cause: err });
    });
    if (st.isDirectory()) {
      const vids = await listVideos(real);
      if (vids.length === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_DIR', `no video files in folder ${source.path}`);
      items.push(...vids.map((v) => ({ path: v, source: v, extra: {} })));
    } else if (extname(real).toLowerCase() === '.csv') await fromManifest(real);
    else items.push({ path: real, source: source.path as string, extra: {} });
  }
  return { items, errors };
}

/** Run `fn` over items with at most `n` at once, keeping input order in the output. */
async function mapLimit<T, R>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

const FINAL: readonly ClipState[] = ['completed', 'failed', 'cancelled'];

/**
 * Create a batch: expand the source, skip files already labelled (mode `missing`), and submit
 * one clip job per file at batch priority. Files that cannot be queued become failed entries.
 */
export async function createBatch(rt: QueueRuntime, input: CreateBatchInput): Promise<CreateBatchOutcome> {
  const guard = input.guard ?? identity;
  const model = input.model ?? (await currentModelInfo(rt.config));
  const topK = input.topK ?? rt.config.queue.topK;
  const { items, errors } = await expandSource(input.source, guard);
  const batchId = newBatchId();
  const k = rt.keys;
  const windows = input.windows;
  const modelKey = clipJobId({ contentHash: 'labelled-index', model: model.model, backbone: model.backbone, sampling: model.sampling, topK, windows, streams: model.streams }).slice(5);
  await withQueue(async () => {
    await rt.redis.hset(k.batch(batchId), {
      id: batchId,
      state: 'submitting' satisfies BatchState,
      mode: input.mode,
      source: JSON.stringify(input.source),
      createdAt: new Date().toISOString(),
      ...(input.webhook ? { webhook: input.webhook } : {}),
    });
    await rt.redis.zadd(k.batches(), Date.now(), batchId);
  });
  let skipped = 0;
  let created = 0;
  const entries = await mapLimit(items, input.parallel ?? 4, async (item): Promise<BatchEntry | undefined> => {
    try {
      const real = await guard(item.path);
      const st = await stat(real);
      const indexField = `${real}|${st.size}|${st.mtimeMs}`;
      if (input.mode === 'missing') {
        const known = await rt.redis.hget(k.labelled(modelKey), indexField);
        if (known && (await rt.queues[QueueName.Classify].getJobState(known)) === 'completed') {
          skipped++;
          return undefined;
        }
      }
      const contentHash = await hashFile(real);
      const clipId = clipJobId({ contentHash, model: model.model, backbone: model.backbone, sampling: model.sampling, topK, windows, streams: model.streams });
      if (input.mode === 'missing' && (await rt.queues[QueueName.Classify].getJobState(clipId)) === 'completed') {
        await rt.redis.hset(k.labelled(modelKey), indexField, clipId);
        skipped++;
        return undefined;
      }
      // membership first, so a clip finishing right after submission is counted for this batch
      await rt.redis.sadd(k.clipBatches(clipId), batchId);
      const out = await submitClip(rt, { path: real, source: item.source, contentHash, priority: 'batch', batchId, topK, model, ...(windows ? { windows } : {}) });
      if (out.created) created++;
      else if (FINAL.includes((await clipStatus(rt, clipId)).state)) await rt.redis.sadd(k.batchFinished(batchId), clipId);
      await rt.redis.hset(k.labelled(modelKey), indexField, clipId);
      return { source: item.source, jobId: clipId };
    } catch (err) {
      const e = toFramewiseError(err);
      if (e.code === 'FW_ERR_QUEUE_UNAVAILABLE') throw e;
      return { source: item.source, error: e.toJSON() };
    }
  });
  const all = [...errors, ...entries.filter((e): e is BatchEntry => e !== undefined)];
  const clips = new Set(all.flatMap((e) => (e.jobId ? [e.jobId] : [])));
  await withQueue(async () => {
    if (all.length > 0) await rt.redis.rpush(k.batchEntries(batchId), ...all.map((e) => JSON.stringify(e)));
    await rt.redis.hset(k.batch(batchId), { state: 'running' satisfies BatchState, entries: all.length, clips: clips.size, skipped, created });
  });
  await noteBatchProgress(rt, batchId);
  return { batchId, total: all.length, created, skipped, rejected: all.filter((e) => e.error).length };
}

async function readBatch(rt: QueueRuntime, batchId: string): Promise<{ record: Record<string, string>; entries: BatchEntry[] }> {
  if (!isBatchId(batchId)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId} (batch ids look like batch-<32 hex digits>)`);
  return withQueue(async () => {
    const record = await rt.redis.hgetall(rt.keys.batch(batchId));
    if (!record.id) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId}`);
    const entries = (await rt.redis.lrange(rt.keys.batchEntries(batchId), 0, -1)).map((s) => JSON.parse(s) as BatchEntry);
    return { record, entries };
  });
}

async function statusesOf(rt: QueueRuntime, entries: readonly BatchEntry[]): Promise<Map<string, ClipStatus>> {
  const ids = [...new Set(entries.flatMap((e) => (e.jobId ? [e.jobId] : [])))];
  const statuses = await mapLimit(ids, 16, async (id) => {
    try {
      return await clipStatus(rt, id);
    } catch (err) {
      if (err instanceof FramewiseError && err.code === 'FW_ERR_JOB_NOT_FOUND') return undefined; // removed by hand
      throw err;
    }
  });
  return new Map(ids.flatMap((id, i) => (statuses[i] ? [[id, statuses[i] as ClipStatus]] : [])));
}

/**
 * The state of each clip, as `clipStatus` gives it, read cheaply: a clip whose root (classify)
 * job is completed is completed, whatever its other stages (one Redis call); only the others
 * need the full status. Missing clips are absent from the map.
 */
async function statesOf(rt: QueueRuntime, entries: readonly BatchEntry[]): Promise<Map<string, ClipState>> {
  const ids = [...new Set(entries.flatMap((e) => (e.jobId ? [e.jobId] : [])))];
  const states = await mapLimit(ids, 32, async (id): Promise<ClipState | undefined> => {
    const root = await withQueue(() => rt.queues[QueueName.Classify].getJobState(id));
    if (root === 'completed') return 'completed';
    try {
      return (await clipStatus(rt, id)).state;
    } catch (err) {
      if (err instanceof FramewiseError && err.code === 'FW_ERR_JOB_NOT_FOUND') return undefined; // removed by hand
      throw err;
    }
  });
  return new Map(ids.flatMap((id, i) => (states[i] ? [[id, states[i] as ClipState]] : [])));
}

/** Status computations in progress, by batch: concurrent callers share one. */
const computing = new WeakMap<QueueRuntime, Map<string, Promise<BatchStatus>>>();

/**
 * Counts by state, computed from the jobs (authoritative), and progress. Callers asking for the
 * same batch while its status is being computed share that computation.
 */
export function batchStatus(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  let byId = computing.get(rt);
  if (!byId) computing.set(rt, (byId = new Map()));
  const running = byId.get(batchId);
  if (running) return running;
  const p = computeBatchStatus(rt, batchId).finally(() => byId.delete(batchId));
  byId.set(batchId, p);
  return p;
}

async function computeBatchStatus(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  const { record, entries } = await readBatch(rt, batchId);
  const states = await statesOf(rt, entries);
  const counts: BatchCounts = { total: entries.length, queued: 0, active: 0, paused: 0, completed: 0, failed: 0, cancelled: 0 };
  for (const e of entries) {
    const s = e.jobId ? states.get(e.jobId) : undefined;
    if (!s) counts.failed++;
    else counts[s]++;
  }
  const done = counts.completed + counts.failed + counts.cancelled;
  let state = record.state as BatchState;
  if ((state === 'running' || state === 'paused' || state === 'cancelled') && done === counts.total) {
    // the workers' bookkeeping may have missed a clip (a crash right after it failed): reconcile here
    await completeBatch(rt, batchId);
    state = ((await rt.redis.hget(rt.keys.batch(batchId), 'state')) ?? state) as BatchState;
  }
  const finishedAt = (await rt.redis.hget(rt.keys.batch(batchId), 'finishedAt')) ?? null;
  return {
    batchId,
    state,
    mode: record.mode as BatchMode,
    source: JSON.parse(record.source ?? '{}') as BatchSource,
    createdAt: record.createdAt ?? '',
    finishedAt,
    skipped: Number(record.skipped ?? 0),
    counts,
    progress: counts.total === 0 ? 1 : done / counts.total,
  };
}

/** Results of the finished entries, in input order (`path` is the file as listed in the batch). */
export async function batchResults(rt: QueueRuntime, batchId: string): Promise<LabelResult[]> {
  const { entries } = await readBatch(rt, batchId);
  const statuses = await statusesOf(rt, entries);
  const out: LabelResult[] = [];
  for (const e of entries) {
    if (e.error) {
      out.push({ path: e.source, ok: false, error: e.error });
      continue;
    }
    const s = e.jobId ? statuses.get(e.jobId) : undefined;
    if (!s) {
      out.push({ path: e.source, ok: false, error: { code: 'FW_ERR_JOB_NOT_FOUND', message: `job ${e.jobId} no longer exists` } });
      continue;
    }
    const r = toResult(s, e.source);
    if (r) out.push(r);
  }
  return out;
}

export { resultsToCsv } from '../result-csv.js';

export const resultsToJsonl = (results: readonly LabelResult[]): string => results.map((r) => `${JSON.stringify(r)}\n`).join('');

async function setState(rt: QueueRuntime, batchId: string, from: readonly BatchState[], to: BatchState): Promise<void> {
  const { record } = await readBatch(rt, batchId);
  const state = record.state as BatchState;
  if (state === to) return;
  if (!from.includes(state)) throw new FramewiseError('FW_ERR_JOB_CONFLICT', `batch ${batchId} is ${state}; it cannot become ${to}`);
  await withQueue(() => rt.redis.hset(rt.keys.batch(batchId), 'state', to));
}

/** Pause: workers put the batch's jobs aside (delayed) as they reach them; running stages finish. */
export async function pauseBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['running'], 'paused');
  return computeBatchStatus(rt, batchId);
}

/** Resume: the jobs put aside run again at once. */
export async function resumeBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['paused'], 'running');
  const { entries } = await readBatch(rt, batchId);
  const ids = [...new Set(entries.flatMap((e) => (e.jobId ? [e.jobId] : [])))];
  await withQueue(() =>
    mapLimit(ids, 16, async (clipId) => {
      const stageIds = stageJobIds(clipId);
      for (const q of STAGE_QUEUES) {
        const job = await Job.fromId(rt.queues[q], stageIds[q]);
        if (job && (await job.getState()) === 'delayed') await job.promote().catch(() => undefined);
      }
    }),
  );
  return computeBatchStatus(rt, batchId);
}

/** Cancel: every unfinished clip of the batch is cancelled; finished ones keep their results. */
export async function cancelBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['submitting', 'running', 'paused'], 'cancelled');
  const { entries } = await readBatch(rt, batchId);
  const statuses = await statusesOf(rt, entries);
  for (const s of statuses.values()) {
    if (!FINAL.includes(s.state)) await cancelClip(rt, s.jobId).catch(() => undefined);
  }
  return computeBatchStatus(rt, batchId);
}

/** Called when one of the batch's clips finished: completes the batch once all have. */
export async function noteBatchProgress(rt: QueueRuntime, batchId: string): Promise<void> {
  const [state, clips, finished] = await Promise.all([rt.redis.hget(rt.keys.batch(batchId), 'state'), rt.redis.hget(rt.keys.batch(batchId), 'clips'), rt.redis.scard(rt.keys.batchFinished(batchId))]);
  if (state !== 'running' && state !== 'paused' && state !== 'cancelled') return;
  if (finished < Number(clips ?? Infinity)) return;
  await completeBatch(rt, batchId);
}

/** Mark the batch finished (once) and queue its webhook. */
async function completeBatch(rt: QueueRuntime, batchId: string): Promise<void> {
  const first = await rt.redis.hsetnx(rt.keys.batch(batchId), 'finishedAt', new Date().toISOString());
  if (first !== 1) return;
  const state = await rt.redis.hget(rt.keys.batch(batchId), 'state');
  if (state !== 'cancelled') await rt.redis.hset(rt.keys.batch(batchId), 'state', 'completed' satisfies BatchState);
  const webhook = await rt.redis.hget(rt.keys.batch(batchId), 'webhook');
  if (!webhook) return;
  const status = await computeBatchStatus(rt, batchId);
  const data: WebhookJobData = { url: webhook, event: 'batch.completed', body: { event: 'batch.completed', batchId, state: status.state, counts: status.counts, skipped: status.skipped } };
  await rt.queues[QueueName.Webhook].add(JobName.Webhook, data, { jobId: webhookJobId(batchId, webhook, status.state), attempts: rt.config.queue.webhookAttempts, backoff: { type: 'exponential', delay: 1000 } });
}
