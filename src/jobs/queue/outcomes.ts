/**
 * Where a clip's outcome is written when its flow ends. The classify worker runs its stage through
 * `writeResult`: the result (or a failure no retry will fix) goes to PostgreSQL before the job
 * completes, so a completed job always has its row, and a worker killed in between only makes the
 * job run again (the row is upserted by job id: never twice). Then `finishClip`: the clip's open
 * batch entries take its final state — once, in PostgreSQL — the batches' counters add what moved,
 * a batch whose last entry this was completes, and an uploaded file starts its retention window.
 */
import { performance } from 'node:perf_hooks';
import { DelayedError, Job, UnrecoverableError } from 'bullmq';
import { FramewiseError } from '../../errors/index.js';
import type { LabelFailure, LabelSuccess } from '../label.js';
import { countFinished, maybeCompleteBatch } from './batch-record.js';
import { finishEntries, type FinalClipState } from './batch-store.js';
import { failureIsFinal, parseFailedReason } from './failed-reason.js';
import { stageJobIds } from './idempotency.js';
import { QueueName } from './names.js';
import type { ClassifyJobData, DecodeJobResult, EmbedJobResult } from './payloads.js';
import { upsertResult, type ClipOutcome } from './results-store.js';
import { scheduleUploadRemoval } from './retention.js';
import { withQueue, type QueueRuntime } from './runtime.js';

/** The final state a result line stands for. */
export function finalStateOf(result: LabelSuccess | LabelFailure): FinalClipState {
  if (result.ok) return 'completed';
  return result.error.code === 'FW_ERR_JOB_CANCELLED' ? 'cancelled' : 'failed';
}

/**
 * The clip's job has ended in `state`: its unfinished entries (of every batch it is in) take that
 * state once, their batches' counters add them, and a batch with nothing left completes.
 */
export async function finishClip(rt: QueueRuntime, clipId: string, state: FinalClipState): Promise<void> {
  const moved = await finishEntries(rt.db, clipId, state);
  for (const [batchId, n] of moved) {
    await countFinished(rt, batchId, state, n, clipId);
    await maybeCompleteBatch(rt, batchId);
  }
}

/** Write a finished clip's outcome (PostgreSQL), settle its batch entries, and start its upload's retention window. */
export async function recordOutcome(rt: QueueRuntime, o: ClipOutcome): Promise<void> {
  await upsertResult(rt.db, o);
  await finishClip(rt, o.data.clip.clipId, finalStateOf(o.result));
  await scheduleUploadRemoval(rt, o.data.clip.path);
}

/** A failure that ends the job for good: no retry follows it. */
function endsTheJob(err: unknown, job: Job): boolean {
  if (err instanceof DelayedError) return false;
  if (err instanceof UnrecoverableError) return true;
  if (err instanceof FramewiseError && err.permanent) return true;
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

const failureOf = (err: unknown): { code: string; message: string } =>
  err instanceof FramewiseError ? err.toJSON() : parseFailedReason(err instanceof Error ? err.message : String(err));

/** How long the clip's stages took (ms): the embed stage's and decode stage's own figures, this stage's. */
async function stageTimings(rt: QueueRuntime, job: Job<ClassifyJobData>, classifyMs: number): Promise<ClipOutcome['timings']> {
  const t: NonNullable<ClipOutcome['timings']> = { classifyMs, attempts: job.attemptsMade + 1 };
  try {
    const embed = Object.values(await job.getChildrenValues<EmbedJobResult>())[0];
    if (embed) t.embedMs = embed.embedMs;
    const embedJob = await withQueue(() => Job.fromId(rt.queues[QueueName.Embed], stageJobIds(job.data.clip.clipId).embed));
    const decode = embedJob ? Object.values(await embedJob.getChildrenValues<DecodeJobResult>())[0] : undefined;
    if (decode) t.decodeMs = decode.decodeMs;
  } catch {
    /* timings are best effort */
  }
  return t;
}

/**
 * The classify stage, recorded: run `compute`, write its result to PostgreSQL, then return it (the
 * job completes after). A failure no retry will follow (permanent, or the last attempt) is
 * written too, then thrown on.
 */
export async function writeResult(rt: QueueRuntime, job: Job<ClassifyJobData>, compute: () => Promise<LabelSuccess>): Promise<LabelSuccess> {
  const t0 = performance.now();
  let result: LabelSuccess;
  try {
    result = await compute();
  } catch (err) {
    if (endsTheJob(err, job)) {
      const failure: LabelFailure = { path: job.data.clip.source, ok: false, error: failureOf(err) };
      await recordOutcome(rt, { data: job.data, result: failure, timings: await stageTimings(rt, job, Math.round(performance.now() - t0)) });
    }
    throw err;
  }
  await recordOutcome(rt, { data: job.data, result, timings: await stageTimings(rt, job, Math.round(performance.now() - t0)) });
  return result;
}

/** Whether a stored failure would be kept by a resubmission (see failureIsFinal). */
export const storedFailureIsFinal = (code: string | null): boolean => code !== null && failureIsFinal(code);
