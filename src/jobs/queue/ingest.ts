/**
 * A batch's ingest, as a job (queue `ingest`, run by the ingest worker, never in the API): list
 * the source as a stream (source-walk.ts), and chunk by chunk
 *   1. leave out what an earlier run of this ingest already recorded (a restart after a crash);
 *   2. check each file (within the roots, readable), and for `mode: missing` skip files this model
 *      version has labelled, by (real path, size, mtime) without reading them;
 *   3. hash the others, several at once (sha256 of the bytes: the job id);
 *   4. record every item as a batch entry (PostgreSQL: one statement per chunk);
 *   5. queue the clips that need work (one `addBulk` of flows per chunk), attach those already
 *      running, and settle those already labelled (`all` reuses their result);
 * then wait while the batch has FRAMEWISE_INGEST_WINDOW unfinished entries (backpressure: Redis
 * holds a window of a million-file batch, not all of it), and stop while it is paused or once
 * it is cancelled. Its figures (found, hashed, queued, skipped, rejected) go to the batch's
 * counters after each chunk and to the job's progress.
 *
 * Crash safety: entries are recorded before their jobs are queued, in state `submitting`; a
 * restarted ingest first queues what it left `submitting`, then walks the source again and skips
 * every item it has an entry for — no file is queued twice (job ids are the content, entries are
 * unique per item) and none is left out (the walk is complete).
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Job, type FlowJob } from 'bullmq';
import type { Logger } from '../../config/log.js';
import { FramewiseError, toFramewiseError } from '../../errors/index.js';
import { walkSource, type ListedItem, type WalkGuard } from '../../features/source-walk.js';
import { createPathGuard } from '../../api/path-guard.js';
import { addFinishedCounts, maybeCompleteBatch, type BatchSource, type IngestState } from './batch-record.js';
import { entryCounts, existingEntries, insertEntries, knownLabelled, openEntryCount, readBatchRow, rememberFiles, settleSubmitting, submittingEntries, type NewEntry, type StoredEntry } from './batch-store.js';
import type { BatchOptions } from './batches.js';
import { buildClipFlow, removeClipJobs } from './clips.js';
import { isRgbLayout } from '../../features/stream-keys.js';
import { failureIsFinal, parseFailedReason } from './failed-reason.js';
import { clipJobId } from './idempotency.js';
import { QueueName } from './names.js';
import type { ClipRef, IngestJobData } from './payloads.js';
import { readOutcomes } from './results-store.js';
import { withQueue, type QueueRuntime } from './runtime.js';

/** What an ingest did (its job's return value). */
export interface IngestSummary {
  batchId: string;
  state: IngestState;
  found: number;
  hashed: number;
  queued: number;
  skipped: number;
  rejected: number;
}

export interface IngestOptions {
  log?: Logger | undefined;
  /** How often a waiting ingest looks at the batch again (ms). @defaultValue 250 */
  pollMs?: number;
}

/** Open for reading without blocking (a FIFO named like a video must not hang the ingest: it is refused once open). */
const openNonBlocking = (path: string) => open(path, constants.O_RDONLY | constants.O_NONBLOCK);

/** sha256 of a file's bytes, with the size and mtime of what was read. */
async function hashFile(path: string): Promise<{ hash: string; size: number; mtimeMs: number }> {
  const handle = await openNonBlocking(path);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${path}`);
    const hash = createHash('sha256');
    // a read buffer the file's size (archives of small clips: no 1 MiB buffer per file to collect)
    const highWaterMark = Math.max(16 * 1024, Math.min(st.size + 1, 1 << 20));
    for await (const chunk of handle.createReadStream({ highWaterMark, autoClose: false })) hash.update(chunk as Buffer);
    return { hash: hash.digest('hex'), size: st.size, mtimeMs: st.mtimeMs };
  } finally {
    await handle.close();
  }
}

/** Run `fn` over items with at most `n` at once, keeping input order in the output. */
async function mapLimit<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** The `mode: missing` index key of a model identity (as every batch with these options computes it). */
export function modelIndexKey(o: Pick<BatchOptions, 'model' | 'backbone' | 'sampling' | 'topK' | 'windows' | 'streams'>): string {
  return clipJobId({ contentHash: 'labelled-index', model: o.model, backbone: o.backbone, sampling: o.sampling, topK: o.topK, windows: o.windows, streams: o.streams }).slice(5);
}

const errorEntry = (seq: number, item: string, source: string, err: unknown): NewEntry => ({ seq, item, source, state: 'rejected', error: toFramewiseError(err).toJSON() });

class Ingest {
  private readonly counters = { found: 0, hashed: 0, queued: 0, skipped: 0, rejected: 0 };
  private seq = 0;
  private state: IngestState = 'running';

  constructor(
    private readonly rt: QueueRuntime,
    private readonly job: Job<IngestJobData>,
    private readonly batchId: string,
    private readonly mode: string,
    private readonly source: BatchSource,
    private readonly options: BatchOptions,
    private readonly opts: IngestOptions,
  ) {}

  private get k(): QueueRuntime['keys'] {
    return this.rt.keys;
  }

  private get modelKey(): string {
    return modelIndexKey(this.options);
  }

  private async write(state: IngestState = this.state): Promise<void> {
    this.state = state;
    const fields = { ingest: state, ...this.counters };
    await withQueue(async () => {
      // a batch Redis no longer holds (retention, a flush) is not written back piecemeal
      if ((await this.rt.redis.exists(this.k.batch(this.batchId))) === 1) await this.rt.redis.hset(this.k.batch(this.batchId), fields);
    });
    await this.job.updateProgress({ ...this.counters }).catch(() => undefined);
  }

  private batchState(): Promise<string | null> {
    return withQueue(() => this.rt.redis.hget(this.k.batch(this.batchId), 'state'));
  }

  /** Wait until the batch may take more files: running and under its window. False once it is cancelled (or gone). */
  private async mayGoOn(): Promise<boolean> {
    const window = this.rt.config.queue.ingestWindow;
    for (;;) {
      const state = await this.batchState();
      if (state === null || state === 'cancelled') return false;
      if (state === 'paused') {
        if (this.state !== 'paused') await this.write('paused');
      } else if ((await openEntryCount(this.rt.db, this.batchId)) >= window) {
        if (this.state !== 'waiting') await this.write('waiting');
      } else {
        if (this.state !== 'running') await this.write('running');
        return true;
      }
      await sleep(this.opts.pollMs ?? 250);
    }
  }

  async run(): Promise<IngestSummary> {
    const { byState, maxSeq, hashed } = await entryCounts(this.rt.db, this.batchId);
    // a restart goes on from what is recorded
    this.seq = maxSeq;
    const withJob = byState.submitting + byState.queued + byState.completed + byState.failed + byState.cancelled;
    Object.assign(this.counters, { found: withJob + byState.skipped + byState.rejected, hashed, queued: withJob, skipped: byState.skipped, rejected: byState.rejected });
    if (!(await this.mayGoOn())) return this.finish('cancelled');
    await this.write('running');
    // entries recorded before a crash whose jobs may not have been queued
    const pending = await submittingEntries(this.rt.db, this.batchId);
    if (pending.length > 0) await this.ensureJobs(pending);
    const guard: WalkGuard = this.options.roots ? createPathGuard(this.options.roots) : async (p) => p;
    const items = walkSource(this.source, guard)[Symbol.asyncIterator]();
    const chunkSize = this.rt.config.queue.ingestChunk;
    try {
      for (;;) {
        if (!(await this.mayGoOn())) return this.finish('cancelled');
        const chunk: ListedItem[] = [];
        let ended = false;
        while (chunk.length < chunkSize) {
          const next = await items.next();
          if (next.done) {
            ended = true;
            break;
          }
          chunk.push(next.value);
        }
        if (chunk.length > 0) await this.take(chunk, guard);
        if (ended) break;
      }
    } finally {
      await items.return?.(undefined);
    }
    return this.finish('done');
  }

  private async finish(state: IngestState): Promise<IngestSummary> {
    await this.write(state);
    await maybeCompleteBatch(this.rt, this.batchId);
    return { batchId: this.batchId, state, ...this.counters };
  }

  /** One chunk: check, skip, hash, record, queue. */
  private async take(chunk: readonly ListedItem[], guard: WalkGuard): Promise<void> {
    const known = await existingEntries(this.rt.db, this.batchId, chunk.map((c) => c.item));
    const seen = new Set<string>();
    const fresh = chunk.filter((c) => !known.has(c.item) && !seen.has(c.item) && seen.add(c.item));
    // positions in listing order
    const numbered = fresh.map((c, i) => ({ c, seq: this.seq + 1 + i }));
    this.seq += fresh.length;
    const entries: NewEntry[] = [];
    const files: Array<{ seq: number; item: string; source: string; real: string; size: number; mtimeMs: number }> = [];
    // check each file: within the roots (real path), a readable regular file
    const checked = await mapLimit(numbered, this.rt.config.queue.ingestHashConcurrency, async ({ c, seq }) => {
      if ('error' in c) return errorEntry(seq, c.item, c.source, c.error);
      try {
        const real = await guard(c.path);
        // stat, not open: a FIFO is refused here without blocking (the hash opens it non-blocking and checks again)
        const st = await stat(real);
        if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${c.source}`);
        return { seq, item: c.item, source: c.source, real, size: st.size, mtimeMs: st.mtimeMs };
      } catch (err) {
        const e = toFramewiseError(err);
        return errorEntry(seq, c.item, c.source, e.code === 'FW_ERR_INTERNAL' ? new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read ${c.source} (${(err as NodeJS.ErrnoException).code ?? e.message})`, { cause: err }) : e);
      }
    });
    for (const c of checked) {
      if ('state' in c) entries.push(c);
      else files.push(c);
    }
    // mode missing: files this model version labelled, unchanged since (no read needed)
    let toHash = files;
    if (this.mode === 'missing') {
      const labelled = await knownLabelled(this.rt.db, this.modelKey, files.map((f) => ({ path: f.real, size: f.size, mtimeMs: f.mtimeMs })));
      toHash = files.filter((f) => {
        const jobId = labelled.get(f.real);
        if (jobId === undefined) return true;
        entries.push({ seq: f.seq, item: f.item, source: f.source, realPath: f.real, jobId, state: 'skipped' });
        return false;
      });
    }
    const o = this.options;
    const hashedFiles = await mapLimit(toHash, this.rt.config.queue.ingestHashConcurrency, async (f) => {
      try {
        const h = await hashFile(f.real);
        const jobId = clipJobId({ contentHash: h.hash, model: o.model, backbone: o.backbone, sampling: o.sampling, topK: o.topK, windows: o.windows, streams: o.streams });
        return { ...f, ...h, jobId };
      } catch (err) {
        return errorEntry(f.seq, f.item, f.source, err instanceof FramewiseError ? err : new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read ${f.source} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err }));
      }
    });
    const hashed = hashedFiles.filter((h): h is Exclude<typeof h, NewEntry> => !('state' in h));
    for (const h of hashedFiles) if ('state' in h) entries.push(h);
    const done = this.mode === 'missing' ? await readOutcomes(this.rt.db, hashed.map((h) => h.jobId)) : new Map<string, { ok: boolean }>();
    for (const h of hashed) {
      const skip = done.get(h.jobId)?.ok === true;
      entries.push({ seq: h.seq, item: h.item, source: h.source, realPath: h.real, contentHash: h.hash, jobId: h.jobId, state: skip ? 'skipped' : 'submitting' });
    }
    const inserted = await insertEntries(this.rt.db, this.batchId, entries);
    await rememberFiles(this.rt.db, this.modelKey, hashed.map((h) => ({ path: h.real, size: h.size, mtimeMs: h.mtimeMs, jobId: h.jobId })));
    const recorded = entries.filter((e) => inserted.has(e.item));
    const submitting: StoredEntry[] = recorded
      .filter((e) => e.state === 'submitting')
      .map((e) => ({ seq: e.seq, item: e.item, source: e.source, realPath: e.realPath ?? null, contentHash: e.contentHash ?? null, jobId: e.jobId ?? null, state: 'submitting' }));
    this.counters.found += recorded.length;
    this.counters.hashed += hashed.filter((h) => inserted.has(h.item)).length;
    this.counters.rejected += recorded.filter((e) => e.state === 'rejected').length;
    this.counters.skipped += recorded.filter((e) => e.state === 'skipped').length;
    // counted before their jobs are queued, so that finished counts never exceed queued ones
    this.counters.queued += submitting.length;
    await this.write();
    await this.ensureJobs(submitting);
  }

  /**
   * Make sure each `submitting` entry's clip has a job: settle those already labelled (or failed
   * for good), attach those whose job is in the queue, queue the others (one addBulk), then mark
   * them `queued`. An entry a worker finished meanwhile keeps what the worker wrote.
   */
  private async ensureJobs(entries: readonly StoredEntry[]): Promise<void> {
    const rt = this.rt;
    const byJob = new Map<string, StoredEntry[]>();
    for (const e of entries) {
      if (!e.jobId) continue;
      byJob.set(e.jobId, [...(byJob.get(e.jobId) ?? []), e]);
    }
    const stored = await readOutcomes(rt.db, [...byJob.keys()]);
    const settled = { completed: [] as string[], failed: [] as string[] };
    const attach: string[] = [];
    const toQueue: StoredEntry[] = [];
    const rerun: string[] = [];
    const ids = [...byJob.keys()];
    const states = await withQueue(() => mapLimit(ids, 64, (id) => rt.queues[QueueName.Classify].getJobState(id)));
    for (const [i, jobId] of ids.entries()) {
      const group = byJob.get(jobId) as StoredEntry[];
      const items = group.map((e) => e.item);
      const s = stored.get(jobId);
      if (s?.ok) {
        settled.completed.push(...items);
        continue;
      }
      if (s && failureIsFinal(s.errorCode ?? '')) {
        settled.failed.push(...items);
        continue;
      }
      const state = states[i] as string;
      if (state === 'completed') settled.completed.push(...items);
      else if (state === 'failed') {
        const job = await withQueue(() => Job.fromId(rt.queues[QueueName.Classify], jobId));
        if (job && failureIsFinal(parseFailedReason(job.failedReason).code)) settled.failed.push(...items);
        else {
          rerun.push(jobId);
          toQueue.push(group[0] as StoredEntry);
          attach.push(...items);
        }
      } else if (state === 'unknown') {
        toQueue.push(group[0] as StoredEntry);
        attach.push(...items);
      } else attach.push(...items);
    }
    // a job that finished (and left Redis) between the two reads has its result by now
    const late = await readOutcomes(rt.db, toQueue.filter((e) => !rerun.includes(e.jobId as string)).map((e) => e.jobId as string));
    for (const [jobId, s] of late) {
      if (!s.ok && !failureIsFinal(s.errorCode ?? '')) continue;
      const items = (byJob.get(jobId) as StoredEntry[]).map((e) => e.item);
      toQueue.splice(toQueue.findIndex((e) => e.jobId === jobId), 1);
      for (const it of items) attach.splice(attach.indexOf(it), 1);
      (s.ok ? settled.completed : settled.failed).push(...items);
    }
    if (toQueue.length > 0) {
      const o = this.options;
      const flows: FlowJob[] = toQueue.map((e) => {
        const clip: ClipRef = {
          clipId: e.jobId as string,
          path: e.realPath as string,
          source: e.source,
          contentHash: e.contentHash as string,
          backbone: o.backbone,
          sampling: o.sampling,
          batchId: this.batchId,
          ...(o.windows ? { windows: o.windows } : {}),
          // the stages compute exactly the model's streams (absent: rgb alone)
          ...(!o.streams || isRgbLayout(o.streams) ? {} : { streams: o.streams }),
        };
        return buildClipFlow(rt, clip, o.model, o.topK, 'batch');
      });
      await withQueue(async () => {
        for (const id of rerun) await removeClipJobs(rt, id);
        await rt.redis.del(...toQueue.map((e) => rt.keys.cancelled(e.jobId as string)));
        await rt.flow.addBulk(flows);
      });
    }
    await settleSubmitting(rt.db, this.batchId, attach, 'queued');
    const counts = {
      completed: await settleSubmitting(rt.db, this.batchId, settled.completed, 'completed'),
      failed: await settleSubmitting(rt.db, this.batchId, settled.failed, 'failed'),
    };
    await addFinishedCounts(rt, this.batchId, counts);
  }
}

/** The body of an ingest job: list the batch's source and queue its files (see above). */
export async function runIngest(job: Job<IngestJobData>, rt: QueueRuntime, opts: IngestOptions = {}): Promise<IngestSummary> {
  const { batchId } = job.data;
  const row = await readBatchRow(rt.db, batchId);
  if (!row) throw new FramewiseError('FW_ERR_JOB_NOT_FOUND', `no batch ${batchId} in the database (DATABASE_URL, FRAMEWISE_DB_SCHEMA): was it created against another one?`);
  const ingest = new Ingest(rt, job, batchId, row.mode, row.source as BatchSource, row.options as unknown as BatchOptions, opts);
  try {
    return await ingest.run();
  } catch (err) {
    const e = toFramewiseError(err);
    // the last attempt: the batch learns why its listing stopped, and finishes with what it has
    if (e.permanent || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
      opts.log?.warn({ batchId, err: e.message }, 'ingest failed');
      await withQueue(() => rt.redis.hset(rt.keys.batch(batchId), { ingest: 'failed' satisfies IngestState, ingestError: JSON.stringify(e.toJSON()) })).catch(() => undefined);
      await maybeCompleteBatch(rt, batchId).catch(() => undefined);
    }
    throw err;
  }
}
