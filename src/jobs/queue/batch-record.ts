/**
 * A running batch in Redis: one hash with its record and counters, and two small sets (its clips
 * running a stage now, its clips put aside while paused). Reading a batch's status is one round
 * trip whatever its size (`readBatchStatus`: HGETALL + two SCARD); the counters are kept by the
 * ingest (listing figures, written by the batch's one ingest job) and by the workers (outcomes,
 * added once per entry as PostgreSQL moves it to its final state: batch-store.ts `finishEntries`).
 * Once finished, the batch's final status goes to PostgreSQL and its Redis keys expire after
 * FRAMEWISE_RETENTION_BATCHES_S.
 */
import { entryCounts, openEntryCount, readBatchRow, updateBatchRow, type EntryState } from './batch-store.js';
import { webhookJobId } from './idempotency.js';
import { JobName, QueueName } from './names.js';
import type { WebhookJobData } from './payloads.js';
import { withQueue, type QueueRuntime } from './runtime.js';

export const BATCH_MODES = ['missing', 'all'] as const;
/** `all`: every file is in the batch (files already labelled by this model reuse their result); `missing`: files already labelled by this model are skipped. */
export type BatchMode = (typeof BATCH_MODES)[number];

/** `failed`: the source could not be listed to the end (`ingest.error`); what was queued ran. */
export type BatchState = 'running' | 'paused' | 'cancelled' | 'completed' | 'failed';

/** Where the listing of the source stands. */
export type IngestState = 'queued' | 'running' | 'waiting' | 'paused' | 'done' | 'cancelled' | 'failed';

/** Exactly one of `path` (a folder, a video or a .csv manifest), `glob` or `manifest`. */
export interface BatchSource {
  path?: string | undefined;
  glob?: string | undefined;
  manifest?: string | undefined;
}

export interface BatchCounts {
  /** Entries: files listed (skipped ones aside), and listing problems. */
  total: number;
  queued: number;
  active: number;
  paused: number;
  completed: number;
  /** Failed files, and entries rejected before queueing. */
  failed: number;
  cancelled: number;
}

/** The listing's figures. */
export interface IngestProgress {
  state: IngestState;
  /** Items listed (files, and listing problems). */
  found: number;
  /** Files whose content was hashed (or known from an earlier hash). */
  hashed: number;
  /** Files with a job (new, running, or already labelled). */
  queued: number;
  /** `mode: missing`: files already labelled by this model version. */
  skipped: number;
  /** Items that could not be queued (outside the roots, unreadable, a malformed manifest row), each an entry with its error. */
  rejected: number;
  /** Why the listing stopped, when it failed. */
  error: { code: string; message: string } | null;
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
  /** Finished share of the entries, 0–1 (below 1 until the listing is done). */
  progress: number;
  ingest: IngestProgress;
}

const FINISHED_INGEST: readonly IngestState[] = ['done', 'cancelled', 'failed'];
export const ingestFinished = (s: IngestState): boolean => FINISHED_INGEST.includes(s);

const num = (v: string | undefined): number => (v === undefined || v === '' ? 0 : Number(v));

/** The status a batch record reads as (pure): counts from the counters and the two set sizes. */
export function toBatchStatus(r: Record<string, string>, activeN: number, pausedN: number): BatchStatus {
  const ingest: IngestProgress = {
    state: (r.ingest ?? 'queued') as IngestState,
    found: num(r.found),
    hashed: num(r.hashed),
    queued: num(r.queued),
    skipped: num(r.skipped),
    rejected: num(r.rejected),
    error: r.ingestError ? (JSON.parse(r.ingestError) as { code: string; message: string }) : null,
  };
  const completed = num(r.completed);
  const failedJobs = num(r.failed);
  const cancelled = num(r.cancelled);
  const inflight = Math.max(0, ingest.queued - completed - failedJobs - cancelled);
  const state = (r.state ?? 'running') as BatchState;
  const paused = state === 'paused' ? Math.min(pausedN, inflight) : 0;
  const active = Math.min(activeN, inflight - paused);
  const total = ingest.queued + ingest.rejected;
  const counts: BatchCounts = { total, queued: inflight - paused - active, active, paused, completed, failed: failedJobs + ingest.rejected, cancelled };
  const done = counts.completed + counts.failed + counts.cancelled;
  const listed = ingestFinished(ingest.state);
  const progress = listed ? (total === 0 ? 1 : done / total) : total === 0 ? 0 : Math.min(0.99, done / total);
  return {
    batchId: r.id ?? '',
    state,
    mode: (r.mode ?? 'all') as BatchMode,
    source: JSON.parse(r.source ?? '{}') as BatchSource,
    createdAt: r.createdAt ?? '',
    finishedAt: r.finishedAt ?? null,
    skipped: ingest.skipped,
    counts,
    progress,
    ingest,
  };
}

/** The batch's status from Redis (one round trip), or undefined when Redis has no record of it. */
export async function readBatchStatus(rt: QueueRuntime, batchId: string): Promise<BatchStatus | undefined> {
  const k = rt.keys;
  const res = await withQueue(() => rt.redis.multi().hgetall(k.batch(batchId)).scard(k.batchActive(batchId)).scard(k.batchPaused(batchId)).exec());
  const [[, record], [, active], [, paused]] = res as [[unknown, Record<string, string>], [unknown, number], [unknown, number]];
  if (!record.id) return undefined;
  return toBatchStatus(record, active, paused);
}

/**
 * Add `n` entries that reached `state` to the batch's counters, and take the clip out of its
 * running and put-aside sets. Nothing is written for a batch Redis no longer holds.
 */
const COUNT_FINISHED = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('SREM', KEYS[3], ARGV[3])
return 1`;

export async function countFinished(rt: QueueRuntime, batchId: string, state: 'completed' | 'failed' | 'cancelled', n: number, clipId: string): Promise<void> {
  const k = rt.keys;
  await withQueue(() => rt.redis.eval(COUNT_FINISHED, 3, k.batch(batchId), k.batchActive(batchId), k.batchPaused(batchId), state, n, clipId));
}

const ADD_IF_RUNNING = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('SADD', KEYS[2], ARGV[1]) end
return 0`;

/**
 * A stage of the clip starts: it counts as active in its batch until `done` (the clip's final state
 * also takes it out). Clips without a batch, or of a batch Redis no longer holds, are not tracked.
 */
export async function markActive(rt: QueueRuntime, clip: { clipId: string; batchId?: string | undefined }): Promise<() => Promise<void>> {
  const batchId = clip.batchId;
  if (!batchId) return async () => undefined;
  const k = rt.keys;
  await withQueue(() => rt.redis.eval(ADD_IF_RUNNING, 2, k.batch(batchId), k.batchActive(batchId), clip.clipId)).catch(() => undefined);
  return async () => {
    await withQueue(() => rt.redis.srem(k.batchActive(batchId), clip.clipId)).catch(() => undefined);
  };
}

/** A worker put the clip aside because its batch is paused (counted as paused until resumed or finished). */
export async function markPutAside(rt: QueueRuntime, clip: { clipId: string; batchId?: string | undefined }): Promise<void> {
  const batchId = clip.batchId;
  if (!batchId) return;
  await withQueue(() => rt.redis.eval(ADD_IF_RUNNING, 2, rt.keys.batch(batchId), rt.keys.batchPaused(batchId), clip.clipId));
}

/** Add entries that reached their final state without a worker (their clips were already finished when listed). */
export async function addFinishedCounts(rt: QueueRuntime, batchId: string, n: Partial<Record<'completed' | 'failed' | 'cancelled', number>>): Promise<void> {
  const entries = Object.entries(n).filter(([, v]) => v !== undefined && v > 0) as Array<[string, number]>;
  if (entries.length === 0) return;
  const m = rt.redis.multi();
  for (const [state, v] of entries) m.hincrby(rt.keys.batch(batchId), state, v);
  await withQueue(() => m.exec());
}

/** The outcome counters of a batch, as PostgreSQL counts its entries (the reconciliation writes these). */
export function countersFrom(byState: Record<EntryState, number>, hashed: number): Record<string, number> {
  const withJob = byState.submitting + byState.queued + byState.completed + byState.failed + byState.cancelled;
  const found = withJob + byState.skipped + byState.rejected;
  return { found, hashed, queued: withJob, skipped: byState.skipped, rejected: byState.rejected, completed: byState.completed, failed: byState.failed, cancelled: byState.cancelled };
}

/** Complete the batch if its listing is over and none of its entries is unfinished. */
export async function maybeCompleteBatch(rt: QueueRuntime, batchId: string): Promise<void> {
  const [state, ingest, finishedAt] = await withQueue(() => rt.redis.hmget(rt.keys.batch(batchId), 'state', 'ingest', 'finishedAt'));
  if (state === null || finishedAt !== null || !ingestFinished((ingest ?? 'queued') as IngestState)) return;
  if ((await openEntryCount(rt.db, batchId)) > 0) return;
  await completeBatch(rt, batchId);
}

/**
 * Finish a batch record once, in one step: `finishedAt`, the final state (`completed`, or `failed`
 * when its listing failed; a cancelled batch stays `cancelled`) and the exact outcome counters.
 * Returns 1 the first time, 0 after.
 */
const FINISH = `
if redis.call('HSETNX', KEYS[1], 'finishedAt', ARGV[1]) == 0 then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'cancelled' then
  if redis.call('HGET', KEYS[1], 'ingest') == 'failed' then state = 'failed' else state = 'completed' end
end
redis.call('HSET', KEYS[1], 'state', state, 'completed', ARGV[2], 'failed', ARGV[3], 'cancelled', ARGV[4])
return 1`;

/**
 * Mark the batch finished (once): `completed` (or `failed` when its listing failed; a cancelled
 * batch stays `cancelled`), its final status to PostgreSQL, its Redis keys to expire, and its webhook.
 */
export async function completeBatch(rt: QueueRuntime, batchId: string): Promise<void> {
  const k = rt.keys;
  const now = new Date().toISOString();
  // the counters as PostgreSQL counts the entries (all final now): a crash between an entry's move and its count cannot leave them short
  const exact = countersFrom((await entryCounts(rt.db, batchId)).byState, 0);
  const first = await withQueue(() => rt.redis.eval(FINISH, 1, k.batch(batchId), now, exact.completed ?? 0, exact.failed ?? 0, exact.cancelled ?? 0));
  if (first !== 1) return;
  const status = (await readBatchStatus(rt, batchId)) as BatchStatus;
  await updateBatchRow(rt.db, batchId, { state: status.state, finishedAt: now, status });
  const ttl = rt.config.queue.retention.batchesS;
  await withQueue(() => rt.redis.multi().expire(k.batch(batchId), Math.max(1, ttl)).del(k.batchActive(batchId), k.batchPaused(batchId)).exec());
  const webhook = (await readBatchRow(rt.db, batchId))?.options.webhook;
  if (typeof webhook !== 'string') return;
  const data: WebhookJobData = { url: webhook, event: 'batch.completed', body: { event: 'batch.completed', batchId, state: status.state, counts: status.counts, skipped: status.skipped } };
  await withQueue(() => rt.queues[QueueName.Webhook].add(JobName.Webhook, data, { jobId: webhookJobId(batchId, webhook, status.state), attempts: rt.config.queue.webhookAttempts, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: rt.jobOptions.removeOnComplete, removeOnFail: rt.jobOptions.removeOnFail }));
}
