/**
 * Batches: a folder, glob or manifest becomes one clip job per file, tracked as one batch that
 * can be paused, resumed and cancelled, with counts, progress and results (JSON Lines or CSV).
 *
 * Creating a batch checks the request and records it — nothing is listed or hashed there, so the
 * answer comes at once whatever the archive's size — and queues its ingest job (ingest.ts), which
 * lists the source as a stream and queues the clips chunk by chunk, holding back while the batch
 * has a window of unfinished files. The entries live in PostgreSQL (batch-store.ts); the status
 * is read from a few Redis counters in one round trip (batch-record.ts), reconciled from the
 * entries and jobs only when asked (`reconcileBatch`).
 */
import { randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { Job } from 'bullmq';
import { FramewiseError, isFramewiseError } from '../../errors/index.js';
import type { WalkGuard } from '../../features/source-walk.js';
import type { LabelResult } from '../label.js';
import { completeBatch, countersFrom, maybeCompleteBatch, readBatchStatus, toBatchStatus, type BatchMode, type BatchSource, type BatchState, type BatchStatus } from './batch-record.js';
import { batchResultLines, entryCounts, insertBatchRow, openJobIds, readBatchRow, updateBatchRow } from './batch-store.js';
import { cancelClip, clipStatus, noteClipFinished } from './clips.js';
import { ingestJobId, isBatchId, stageJobIds } from './idempotency.js';
import { currentModelInfo, type ModelInfo } from './model-info.js';
import { finishClip } from './outcomes.js';
import { JobName, QueueName, STAGE_QUEUES } from './names.js';
import type { ClassifyJobData, ClipRef, ClipWindows, IngestJobData } from './payloads.js';
import { withQueue, type QueueRuntime } from './runtime.js';

export { BATCH_MODES, type BatchCounts, type BatchMode, type BatchSource, type BatchState, type BatchStatus, type IngestProgress, type IngestState } from './batch-record.js';

/** Maps a user-given path to the real path that may be read, or throws FW_ERR_PATH_FORBIDDEN. */
export type PathGuard = WalkGuard;

export interface CreateBatchInput {
  source: BatchSource;
  mode: BatchMode;
  webhook?: string | undefined;
  topK?: number | undefined;
  /** The API restricts paths to FRAMEWISE_PATH_ROOTS; the CLI reads what its user can. */
  guard?: PathGuard;
  /** The roots `guard` allows, for the ingest worker (which applies the same rule to every file). Absent: no restriction (the CLI). */
  roots?: readonly string[] | undefined;
  model?: ModelInfo;
  /** Label every file window by window (see `toClipWindows`); part of the job ids and of `missing`. */
  windows?: ClipWindows | undefined;
}

/** What a batch's ingest needs besides its source (PostgreSQL `batches.options`). */
export interface BatchOptions {
  model: ClassifyJobData['model'];
  backbone: ClipRef['backbone'];
  sampling: ClipRef['sampling'];
  topK: number;
  windows?: ClipWindows | undefined;
  /** The model's per-frame streams (its recorded layout; rgb alone when it records none). */
  streams?: ModelInfo['streams'] | undefined;
  webhook?: string | undefined;
  /** FRAMEWISE_PATH_ROOTS of the API that accepted it; null: no restriction. */
  roots: string[] | null;
}

const newBatchId = (): string => `batch-${randomBytes(16).toString('hex')}`;
const hasGlobChars = (s: string): boolean => /[*?[\]{}]/.test(s);
const identity: PathGuard = async (p) => p;

/** The static folder of a glob (the part before the first segment with a wildcard). */
export function globBase(pattern: string): string {
  const parts = pattern.split('/');
  const i = parts.findIndex(hasGlobChars);
  const base = parts.slice(0, i < 0 ? parts.length : i).join('/');
  return base === '' ? (pattern.startsWith('/') ? '/' : '.') : base;
}

/** The first line of a file (at most 64 KiB), for a manifest's header. */
async function firstLine(file: string): Promise<string> {
  const h = await open(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await h.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8').replace(/^\uFEFF/, '').split(/\r?\n/)[0] ?? '';
  } finally {
    await h.close();
  }
}

/**
 * What can be checked at once, whatever the archive's size: one source given, within the roots,
 * existing, and a manifest with a `path` column. The listing itself is the ingest's.
 */
async function checkSource(source: BatchSource, guard: PathGuard): Promise<void> {
  const given = [source.path, source.glob, source.manifest].filter((v) => v !== undefined);
  if (given.length !== 1) throw new FramewiseError('FW_ERR_REQUEST_INVALID', 'give exactly one of path, glob or manifest');
  if (source.glob !== undefined) {
    await guard(globBase(source.glob));
    return;
  }
  const given0 = given[0] as string;
  const real = await guard(given0);
  const st = await stat(real).catch((err: unknown) => {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file or folder: ${given0}`, { cause: err });
  });
  if (source.manifest !== undefined || (st.isFile() && extname(real).toLowerCase() === '.csv')) {
    if (!st.isFile()) throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `manifest ${given0} is not a file`);
    const header = (await firstLine(real).catch((err: unknown) => {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read manifest ${given0}`, { cause: err });
    }))
      .split(',')
      .map((c) => c.trim().replace(/^"(.*)"$/, '$1').trim().toLowerCase());
    if (!header.includes('path')) throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `manifest ${given0} lacks a \`path\` column (header: ${header.join(',') || 'none'}); expected a CSV header with at least path`);
  }
}

/**
 * Create a batch: check the request, record it (PostgreSQL and Redis) and queue its ingest job.
 * Answers at once with the batch's status; the files are listed, hashed and queued by the ingest
 * worker (`ingest` in `framewise worker`), its figures in the status as it goes.
 */
export async function createBatch(rt: QueueRuntime, input: CreateBatchInput): Promise<BatchStatus> {
  await checkSource(input.source, input.guard ?? identity);
  const model = input.model ?? (await currentModelInfo(rt.config));
  const options: BatchOptions = {
    model: { ...model.model, dir: model.dir },
    backbone: model.backbone,
    sampling: model.sampling,
    topK: input.topK ?? rt.config.queue.topK,
    ...(input.windows ? { windows: input.windows } : {}),
    streams: model.streams,
    ...(input.webhook ? { webhook: input.webhook } : {}),
    roots: input.roots ? [...input.roots] : null,
  };
  const batchId = newBatchId();
  const createdAt = new Date().toISOString();
  const source: BatchSource = Object.fromEntries(Object.entries(input.source).filter(([, v]) => v !== undefined));
  await insertBatchRow(rt.db, { batchId, createdAt, state: 'running', mode: input.mode, source, options });
  const record = { id: batchId, state: 'running' satisfies BatchState, mode: input.mode, source: JSON.stringify(source), createdAt, ingest: 'queued', found: 0, hashed: 0, queued: 0, skipped: 0, rejected: 0, completed: 0, failed: 0, cancelled: 0 };
  const q = rt.config.queue;
  await withQueue(async () => {
    await rt.redis.hset(rt.keys.batch(batchId), record);
    const data: IngestJobData = { batchId };
    await rt.queues[QueueName.Ingest].add(JobName.Ingest, data, { jobId: ingestJobId(batchId), attempts: q.attempts, backoff: { type: 'exponential', delay: q.backoffMs }, removeOnComplete: rt.jobOptions.removeOnComplete, removeOnFail: rt.jobOptions.removeOnFail });
  });
  return toBatchStatus(Object.fromEntries(Object.entries(record).map(([k, v]) => [k, String(v)])), 0, 0);
}

function checkId(batchId: string): void {
  if (!isBatchId(batchId)) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId} (batch ids look like batch-<32 hex digits>)`);
}

/**
 * The batch's status: counts by state, progress and the listing's figures. A running (or
 * recently finished) batch is read from its Redis counters in one round trip, whatever its size;
 * an older one from its final status in PostgreSQL.
 */
export async function batchStatus(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  checkId(batchId);
  const live = await readBatchStatus(rt, batchId);
  if (live) return live;
  const row = await readBatchRow(rt.db, batchId);
  if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId}`);
  if (row.status) return row.status as unknown as BatchStatus;
  // Redis lost the record of a batch that had not finished (a flush, a new Redis): rebuild it
  return reconcileBatch(rt, batchId);
}

/**
 * Recount the batch from its entries (PostgreSQL) and its clips' jobs, and write the counters
 * again: for a batch whose counters a crash may have left behind. Unfinished entries whose job
 * has finished are settled; those whose job no longer exists anywhere fail (FW_ERR_JOB_NOT_FOUND).
 */
export async function reconcileBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  checkId(batchId);
  const row = await readBatchRow(rt.db, batchId);
  if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId}`);
  const k = rt.keys;
  let exists = (await withQueue(() => rt.redis.exists(k.batch(batchId)))) === 1;
  if (!exists && row.status) return row.status as unknown as BatchStatus;
  if (!exists) {
    const lost = { code: 'FW_ERR_JOB_NOT_FOUND', message: 'the batch was lost from Redis before its listing finished; what was recorded stands' };
    await withQueue(() => rt.redis.hset(k.batch(batchId), { id: batchId, state: row.state, mode: row.mode, source: JSON.stringify(row.source), createdAt: row.createdAt, ingest: 'failed', ingestError: JSON.stringify(lost) }));
    exists = true;
  }
  const open = new Set(await openJobIds(rt.db, batchId, 'queued'));
  for (const jobId of open) {
    let state: string | undefined;
    try {
      state = (await clipStatus(rt, jobId)).state;
    } catch (err) {
      if (!isFramewiseError(err, 'FW_ERR_JOB_NOT_FOUND')) throw err;
      await finishClip(rt, jobId, 'failed'); // its line: FW_ERR_JOB_NOT_FOUND (no result recorded)
      continue;
    }
    if (state === 'completed') await finishClip(rt, jobId, 'completed');
    else if (state === 'failed' || state === 'cancelled') await noteClipFinished(rt, jobId);
  }
  const { byState, hashed } = await entryCounts(rt.db, batchId);
  const still = new Set(await openJobIds(rt.db, batchId, 'queued'));
  await withQueue(async () => {
    await rt.redis.hset(k.batch(batchId), countersFrom(byState, hashed));
    for (const set of [k.batchActive(batchId), k.batchPaused(batchId)]) {
      const gone = (await rt.redis.smembers(set)).filter((id) => !still.has(id));
      if (gone.length > 0) await rt.redis.srem(set, ...gone);
    }
  });
  await maybeCompleteBatch(rt, batchId);
  return (await readBatchStatus(rt, batchId)) as BatchStatus;
}

/** The batch's finished entries as result lines (`path` as listed), in listing order, streamed from PostgreSQL. */
export async function* streamBatchResults(rt: QueueRuntime, batchId: string, page: { after?: number | undefined; limit?: number | undefined } = {}): AsyncGenerator<{ cursor: number; line: LabelResult }> {
  checkId(batchId);
  if (!(await readBatchRow(rt.db, batchId))) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId}`);
  yield* batchResultLines(rt.db, batchId, page);
}

/** Every finished entry's result line, in memory (small batches and tests; exports stream: `streamBatchResults`). */
export async function batchResults(rt: QueueRuntime, batchId: string): Promise<LabelResult[]> {
  const out: LabelResult[] = [];
  for await (const { line } of streamBatchResults(rt, batchId)) out.push(line);
  return out;
}

export { resultsToCsv } from '../result-csv.js';


async function setState(rt: QueueRuntime, batchId: string, from: readonly BatchState[], to: BatchState): Promise<void> {
  checkId(batchId);
  const state = (await withQueue(() => rt.redis.hget(rt.keys.batch(batchId), 'state'))) as BatchState | null;
  if (state === null) {
    const row = await readBatchRow(rt.db, batchId);
    if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId}`);
    if (row.state === to) return;
    throw new FramewiseError('FW_ERR_JOB_CONFLICT', `batch ${batchId} is ${row.state}; it cannot become ${to}`);
  }
  if (state === to) return;
  if (!from.includes(state)) throw new FramewiseError('FW_ERR_JOB_CONFLICT', `batch ${batchId} is ${state}; it cannot become ${to}`);
  await withQueue(() => rt.redis.hset(rt.keys.batch(batchId), 'state', to));
  await updateBatchRow(rt.db, batchId, { state: to });
}

/** Pause: the ingest stops queueing, workers put the batch's jobs aside (delayed) as they reach them; running stages finish. */
export async function pauseBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['running'], 'paused');
  return batchStatus(rt, batchId);
}

/** Resume: the jobs put aside run again at once, and the ingest goes on. */
export async function resumeBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['paused'], 'running');
  const ids = await openJobIds(rt.db, batchId);
  await withQueue(async () => {
    for (let i = 0; i < ids.length; i += 64) {
      await Promise.all(
        ids.slice(i, i + 64).map(async (clipId) => {
          const stageIds = stageJobIds(clipId);
          for (const q of STAGE_QUEUES) {
            const job = await Job.fromId(rt.queues[q], stageIds[q]);
            if (job && (await job.getState()) === 'delayed') await job.promote().catch(() => undefined);
          }
        }),
      );
    }
    await rt.redis.del(rt.keys.batchPaused(batchId));
  });
  return batchStatus(rt, batchId);
}

/** Cancel: the ingest stops, every unfinished clip of the batch is cancelled; finished ones keep their results. */
export async function cancelBatch(rt: QueueRuntime, batchId: string): Promise<BatchStatus> {
  await setState(rt, batchId, ['running', 'paused'], 'cancelled');
  // an ingest that has not started will not: it is removed (a running one stops at its next step)
  const removed = await withQueue(() => rt.queues[QueueName.Ingest].remove(ingestJobId(batchId)).catch(() => 0));
  if (removed === 1) await withQueue(() => rt.redis.hset(rt.keys.batch(batchId), 'ingest', 'cancelled'));
  const ids = await openJobIds(rt.db, batchId, 'queued');
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(
      ids.slice(i, i + 16).map((id) =>
        cancelClip(rt, id).catch((err: unknown) => {
          if (!isFramewiseError(err, 'FW_ERR_JOB_CONFLICT') && !isFramewiseError(err, 'FW_ERR_JOB_NOT_FOUND')) throw err;
        }),
      ),
    );
  }
  await maybeCompleteBatch(rt, batchId);
  return batchStatus(rt, batchId);
}

export { completeBatch };
