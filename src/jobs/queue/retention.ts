/**
 * Retention (FRAMEWISE_RETENTION_*): what queue mode keeps, and for how long. Results stay in
 * PostgreSQL; Redis and the data folder keep only what running work needs:
 * - finished jobs leave Redis by age and count (`removeOnComplete` / `removeOnFail`: runtime.ts);
 * - a finished batch's record expires after FRAMEWISE_RETENTION_BATCHES_S (batch-record.ts);
 * - decoded frames are removed once embedded (stages.ts);
 * - an uploaded file belongs to the one job made with it (uploads are stored per request) and is
 *   deleted FRAMEWISE_RETENTION_UPLOADS_S after that job ends (a window to watch or re-run it):
 *   the job's end puts it in a Redis sorted set by due time, and the classify workers' sweeper
 *   deletes what is due (each file once: the ZREM decides who deletes it).
 */
import { rm } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Logger } from '../../config/log.js';
import { withQueue, type QueueRuntime } from './runtime.js';

/** The uploads folder (`FRAMEWISE_DATA_DIR/uploads`). */
export const uploadsDir = (rt: QueueRuntime): string => join(rt.config.queue.dataDir, 'uploads');

/** Whether a job's file is an upload (stored by the API), which retention deletes. */
export function isUpload(rt: QueueRuntime, path: string): boolean {
  const dir = uploadsDir(rt);
  return resolve(path).startsWith(dir + sep);
}

/** The job made with this upload has ended: delete the file now (window 0) or once the window has passed. */
export async function scheduleUploadRemoval(rt: QueueRuntime, path: string): Promise<void> {
  if (!isUpload(rt, path)) return;
  const windowS = rt.config.queue.retention.uploadsS;
  if (windowS === 0) {
    await rm(path, { force: true });
    return;
  }
  await withQueue(() => rt.redis.zadd(rt.keys.uploadsExpiry(), Date.now() + windowS * 1000, path));
}

/** Delete the uploads that are due (at most `limit`); returns how many this call deleted. */
export async function sweepUploads(rt: QueueRuntime, limit = 1000): Promise<number> {
  const key = rt.keys.uploadsExpiry();
  const due = await withQueue(() => rt.redis.zrangebyscore(key, '-inf', Date.now(), 'LIMIT', 0, limit));
  let deleted = 0;
  for (const path of due) {
    // whoever removes the member deletes the file (several sweepers may run)
    if ((await withQueue(() => rt.redis.zrem(key, path))) !== 1 || !isUpload(rt, path)) continue;
    await rm(path, { force: true });
    deleted++;
  }
  return deleted;
}

/** Sweep due uploads every `everyMs` (default: a tenth of the window, between 1 s and 1 min) until stopped. */
export function startUploadSweeper(rt: QueueRuntime, log: Logger, everyMs?: number): () => Promise<void> {
  const period = everyMs ?? Math.min(60_000, Math.max(1000, rt.config.queue.retention.uploadsS * 100));
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = sweepUploads(rt).then(
      (n) => n > 0 && log.debug({ deleted: n }, 'retention: uploads deleted'),
      (err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'retention: uploads sweep did not complete'),
    );
  }, period);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
