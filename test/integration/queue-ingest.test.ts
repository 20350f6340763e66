/**
 * Batch ingest at archive scale, with real Redis, PostgreSQL, ffmpeg and models (small numbers:
 * the behaviour, never timings). A synthetic archive — one small clip copied with a distinct
 * trailing box, so every file decodes to the same frames and hashes differently — whose features
 * are in the store, so the workers drain it in seconds.
 * - POST answers before any listing; the ingest lists as a stream and holds back at the window
 *   (FRAMEWISE_INGEST_WINDOW): the batch's unfinished entries and Redis's jobs stay bounded while
 *   it drains; the counters equal the reconciled counts; results stream and page in listing order.
 * - `missing` skips without reading what this model labelled, re-reads a touched file, queues a
 *   changed one.
 * - Bad input: a manifest with malformed rows, dangling and outside symlinks, a FIFO, a folder
 *   that vanishes mid-ingest: entries with their codes, and the batch completes.
 * - Pause, resume and cancel act on the ingest.
 */
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabelResult } from '../../src/jobs/label.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import { openEntryCount } from '../../src/jobs/queue/batch-store.js';
import { submitClip, waitForClip } from '../../src/jobs/queue/clips.js';
import { currentModelInfo, type ModelInfo } from '../../src/jobs/queue/model-info.js';
import { STAGE_QUEUES } from '../../src/jobs/queue/names.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { contentHash } from '../../src/features/feature-store.js';
import { makeClip } from '../../src/media/synthetic.js';
import { deploy, type Deployment } from '../helpers/api-harness.js';
import { makeArchive, seedFeatures, type ArchiveFile } from '../helpers/archive.js';
import { batchFinished, batchLines, batchListed, waitBatch } from '../helpers/batches.js';
import { parseSse } from '../helpers/sse.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const WINDOW = 8;
const CHUNK = 4;
/** The ingest adds a chunk while fewer than WINDOW entries are unfinished. */
const BOUND = WINDOW + CHUNK - 1;

let redis: TestRedis;
let work: string;
let roots: string;
let d: Deployment;
let stages: WorkerGroup | undefined;
let model: ModelInfo;
let baseClip: string;
let baseHash: string;
let next = 0;

const startStages = async (): Promise<void> => {
  stages ??= await startWorkers(['decode', 'embed', 'classify'], d.config);
};
const stopStages = async (): Promise<void> => {
  await stages?.close();
  stages = undefined;
};

/** `n` distinct files under `dir`, their features in the store. */
async function archive(dir: string, n: number, perFolder = 1000): Promise<ArchiveFile[]> {
  const files = await makeArchive(dir, baseClip, n, { perFolder, from: next });
  next += n;
  await seedFeatures(d.rt.store, model, baseHash, files.map((f) => f.contentHash));
  return files;
}

const post = async (payload: Record<string, unknown>): Promise<BatchStatus> => {
  const res = await d.app.inject({ method: 'POST', url: '/v1/batches', payload });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<BatchStatus>();
};
const status = async (id: string): Promise<BatchStatus> => (await d.app.inject({ method: 'GET', url: `/v1/batches/${id}` })).json<BatchStatus>();
const unfinishedJobs = async (): Promise<number> => {
  let n = 0;
  for (const q of STAGE_QUEUES) {
    const c = await d.rt.queues[q].getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'waiting-children');
    n += Object.values(c).reduce((a, b) => a + b, 0);
  }
  return n;
};
const codeOf = (r: LabelResult | undefined): string | undefined => (r && !r.ok ? r.error.code : undefined);

beforeAll(async () => {
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-ingest-'));
  roots = join(work, 'roots');
  await mkdir(roots, { recursive: true });
  d = await deploy({ redisUrl: redis.url, name: 'ingest', dir: work, roots, env: { FRAMEWISE_INGEST_WINDOW: String(WINDOW), FRAMEWISE_INGEST_CHUNK: String(CHUNK) }, workers: ['ingest'] });
  model = await currentModelInfo(d.config);
  // the base clip, labelled once through the queue: its features are every copy's
  baseClip = join(work, 'base.mp4');
  await makeClip({ motion: 'zoom_in', scene: 1, seconds: 1.5, fps: 12, width: 96, height: 64, hue: 0, strength: 0.8 }, baseClip);
  baseHash = await contentHash(baseClip);
  await startStages();
  const out = await submitClip(d.rt, { path: baseClip, source: 'base.mp4' });
  expect((await waitForClip(d.rt, out.jobId, { timeoutMs: 120_000 })).state).toBe('completed');
  await stopStages();
}, 300_000);

afterAll(async () => {
  await stopStages();
  await d?.close();
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('batch ingest', () => {
  it('answers before listing, holds back at the window, drains bounded, and counts what it reconciles', async () => {
    const dir = join(roots, 'arch');
    const files = await archive(dir, 60, 20);
    // not videos, hidden, unreadable or outside: skipped unnamed, or entries with their codes
    await writeFile(join(dir, 'd0', 'notes.txt'), 'not listed');
    await copyFile(files[0]!.path, join(dir, 'd0', '.hidden.mp4'));
    await symlink(join(work, 'nowhere.mp4'), join(dir, 'd0', 'broken.mp4'));
    await copyFile(files[0]!.path, join(work, 'outside.mp4'));
    await symlink(join(work, 'outside.mp4'), join(dir, 'd1', 'outside.mp4'));
    await promisify(execFile)('mkfifo', [join(dir, 'fifo')]);
    await symlink(join(dir, 'fifo'), join(dir, 'd2', 'pipe.mp4'));

    const created = await post({ path: dir });
    expect(created).toMatchObject({ state: 'running', counts: { total: 0 }, ingest: { state: 'queued', found: 0, hashed: 0 } });
    // no stage workers yet: the ingest fills the window and waits
    const held = await waitBatch(d.app, created.batchId, (s) => s.ingest.state === 'waiting');
    expect(held.ingest.found).toBeLessThan(63);
    const open = await openEntryCount(d.rt.db, created.batchId);
    expect(open).toBeGreaterThanOrEqual(WINDOW);
    expect(open).toBeLessThanOrEqual(BOUND);
    expect(await unfinishedJobs()).toBeLessThanOrEqual(3 * BOUND);
    await sleep(600); // a few of the ingest's looks at the batch: it stays where it is
    expect((await status(created.batchId)).ingest.found).toBe(held.ingest.found);

    // the workers drain it; what Redis holds stays within the window all along
    await startStages();
    let peakOpen = 0;
    let peakJobs = 0;
    let s: BatchStatus;
    for (;;) {
      s = await status(created.batchId);
      peakOpen = Math.max(peakOpen, s.counts.queued + s.counts.active + s.counts.paused);
      peakJobs = Math.max(peakJobs, await unfinishedJobs());
      if (batchFinished(s)) break;
      await sleep(50);
    }
    expect(peakOpen).toBeLessThanOrEqual(BOUND);
    expect(peakJobs).toBeLessThanOrEqual(3 * BOUND);
    expect(s.state).toBe('completed');
    expect(s.ingest).toEqual({ state: 'done', found: 63, hashed: 60, queued: 60, skipped: 0, rejected: 3, error: null });
    expect(s.counts).toEqual({ total: 63, queued: 0, active: 0, paused: 0, completed: 60, failed: 3, cancelled: 0 });
    expect(s.progress).toBe(1);
    // the counters are what the entries and jobs say
    const reconciled = (await d.app.inject({ method: 'GET', url: `/v1/batches/${created.batchId}?reconcile=true` })).json<BatchStatus>();
    expect(reconciled.counts).toEqual(s.counts);
    expect(reconciled.ingest).toMatchObject({ found: 63, queued: 60, rejected: 3 });

    // results in listing order (sorted within each folder), every file once
    const lines = await batchLines(d.app, created.batchId);
    expect(lines).toHaveLength(63);
    expect(new Set(lines.map((l) => l.path)).size).toBe(63);
    const byPath = new Map(lines.map((l) => [l.path, l]));
    expect(codeOf(byPath.get(join(dir, 'd0', 'broken.mp4')))).toBe('FW_ERR_INPUT_NOT_FOUND');
    expect(codeOf(byPath.get(join(dir, 'd1', 'outside.mp4')))).toBe('FW_ERR_PATH_FORBIDDEN');
    expect(codeOf(byPath.get(join(dir, 'd2', 'pipe.mp4')))).toBe('FW_ERR_INPUT_NOT_FOUND');
    expect(lines.filter((l) => l.ok).map((l) => l.path)).toEqual(files.map((f) => f.path));
    // pages of 25 give the same lines
    const paged: LabelResult[] = [];
    let url = `/v1/batches/${created.batchId}/results?limit=25`;
    for (let page = 0; ; page++) {
      const res = await d.app.inject({ method: 'GET', url });
      paged.push(...res.body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LabelResult));
      const after = res.headers['x-next-after'];
      if (after === undefined) break;
      expect(page).toBeLessThan(3);
      url = `/v1/batches/${created.batchId}/results?limit=25&after=${after as string}`;
    }
    expect(paged).toEqual(lines);
    // the results query: by batch and label, CSV too
    const label = (lines.find((l) => l.ok) as Extract<LabelResult, { ok: true }>).label;
    const q = await d.app.inject({ method: 'GET', url: `/v1/results?batch=${created.batchId}&label=${label}&minConfidence=0` });
    expect(q.body.split('\n').filter(Boolean)).toHaveLength(60);
    const csv = await d.app.inject({ method: 'GET', url: `/v1/results?batch=${created.batchId}&ok=false&format=csv` });
    expect(csv.body.trim().split('\n')).toHaveLength(1);
    expect((await d.app.inject({ method: 'GET', url: '/v1/results?since=yesterday-ish' })).statusCode).toBe(400);
    // the events of a finished batch: its status, then the final event
    const events = parseSse((await d.app.inject({ method: 'GET', url: `/v1/batches/${created.batchId}/events` })).body);
    expect(events.map((e) => e.event)).toEqual(['progress', 'state', 'completed']);
  });

  it('`missing` skips what this model labelled without reading it, re-reads a touched file and queues a changed one', async () => {
    await startStages();
    const dir = join(roots, 'miss');
    const files = await archive(dir, 12);
    const first = await post({ path: dir, mode: 'missing' });
    expect((await waitBatch(d.app, first.batchId)).counts).toMatchObject({ total: 12, completed: 12 });
    const again = await waitBatch(d.app, (await post({ path: dir, mode: 'missing' })).batchId);
    expect(again.ingest).toMatchObject({ found: 12, hashed: 0, skipped: 12, queued: 0 });
    expect(again.counts.total).toBe(0);
    // a touched file (same bytes) is hashed again and found labelled; a changed one is new work
    const later = new Date(Date.now() + 5000);
    await utimes(files[0]!.path, later, later);
    await appendFile(files[1]!.path, Buffer.from([1, 2, 3]));
    await seedFeatures(d.rt.store, model, baseHash, [await contentHash(files[1]!.path)]);
    const third = await waitBatch(d.app, (await post({ path: dir, mode: 'missing' })).batchId);
    expect(third.ingest).toMatchObject({ found: 12, hashed: 2, skipped: 11, queued: 1 });
    expect(third.counts).toMatchObject({ total: 1, completed: 1 });
  });

  it('bad input: malformed manifest rows and a folder that vanishes mid-ingest become entries with codes; the batch completes', async () => {
    await startStages();
    const dir = join(roots, 'man');
    const files = await archive(dir, 3);
    const rel = (f: ArchiveFile): string => f.path.slice(dir.length + 1);
    await writeFile(join(dir, 'list.csv'), ['path,label', `${rel(files[0]!)},a`, ',b', `"${rel(files[1]!)}" junk,c`, 'missing.mp4,d', '../../outside.mp4,e', `${rel(files[2]!)},f`, `${rel(files[0]!)},again`, ''].join('\n'));
    const m = await waitBatch(d.app, (await post({ manifest: join(dir, 'list.csv') })).batchId);
    expect(m.state).toBe('completed');
    const lines = await batchLines(d.app, m.batchId);
    expect(lines.map((l) => (l.ok ? 'ok' : l.error.code))).toEqual(['ok', 'FW_ERR_MANIFEST_INVALID', 'FW_ERR_MANIFEST_INVALID', 'FW_ERR_INPUT_NOT_FOUND', 'FW_ERR_PATH_FORBIDDEN', 'ok', 'ok']);
    // a header without `path` is refused at once
    await writeFile(join(dir, 'nopath.csv'), 'file,label\na.mp4,x\n');
    const bad = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { manifest: join(dir, 'nopath.csv') } });
    expect(bad.statusCode).toBe(422);
    expect(bad.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_MANIFEST_INVALID');

    // a folder part of which vanishes while the ingest waits at the window
    await stopStages();
    const v = join(roots, 'vanish');
    const a = await archive(join(v, 'a'), 12);
    await archive(join(v, 'b'), 2);
    await archive(join(v, 'c'), 2);
    const b = await post({ path: v });
    const held = await waitBatch(d.app, b.batchId, (s) => s.ingest.state === 'waiting');
    expect(held.ingest.found).toBe(WINDOW); // two chunks of a/, the rest of a/ listed but not read yet
    await rm(a[10]!.path);
    await rm(a[11]!.path);
    await rm(join(v, 'b'), { recursive: true });
    await rm(join(v, 'c'), { recursive: true });
    await startStages();
    const done = await waitBatch(d.app, b.batchId);
    expect(done.state).toBe('completed');
    expect(done.counts).toMatchObject({ total: 14, completed: 10, failed: 4 });
    const vl = await batchLines(d.app, b.batchId);
    expect(vl.filter((l) => !l.ok).map((l) => [l.path, codeOf(l)])).toEqual([
      [a[10]!.path, 'FW_ERR_INPUT_NOT_FOUND'],
      [a[11]!.path, 'FW_ERR_INPUT_NOT_FOUND'],
      [join(v, 'b'), 'FW_ERR_INPUT_NOT_FOUND'],
      [join(v, 'c'), 'FW_ERR_INPUT_NOT_FOUND'],
    ]);
  });

  it('pause stops the ingest and the workers, resume goes on; cancel stops the ingest and cancels what it queued', async () => {
    await stopStages();
    const dir = join(roots, 'pause');
    await archive(dir, 24);
    const b = await post({ path: dir });
    await waitBatch(d.app, b.batchId, (s) => s.ingest.state === 'waiting');
    expect((await d.app.inject({ method: 'POST', url: `/v1/batches/${b.batchId}/pause` })).json()).toMatchObject({ state: 'paused' });
    await waitBatch(d.app, b.batchId, (s) => s.ingest.state === 'paused');
    await startStages();
    // the workers put the batch's clips aside; the ingest queues nothing more
    const paused = await waitBatch(d.app, b.batchId, (s) => s.counts.paused === WINDOW);
    expect(paused.ingest.found).toBe(WINDOW);
    expect(paused.counts.completed).toBe(0);
    expect((await d.app.inject({ method: 'POST', url: `/v1/batches/${b.batchId}/resume` })).json()).toMatchObject({ state: 'running' });
    const done = await waitBatch(d.app, b.batchId);
    expect(done).toMatchObject({ state: 'completed', counts: { total: 24, completed: 24, paused: 0 }, ingest: { state: 'done', found: 24 } });

    await stopStages();
    const cdir = join(roots, 'cancel');
    await archive(cdir, 24);
    const c = await post({ path: cdir });
    await waitBatch(d.app, c.batchId, (s) => s.ingest.state === 'waiting');
    const cancelled = await d.app.inject({ method: 'POST', url: `/v1/batches/${c.batchId}/cancel` });
    expect(cancelled.json<BatchStatus>()).toMatchObject({ state: 'cancelled', counts: { cancelled: WINDOW } });
    const end = await waitBatch(d.app, c.batchId, (s) => batchFinished(s) && batchListed(s));
    expect(end).toMatchObject({ state: 'cancelled', counts: { total: WINDOW, cancelled: WINDOW }, ingest: { state: 'cancelled', found: WINDOW } });
    const lines = await batchLines(d.app, c.batchId);
    expect(lines.map(codeOf)).toEqual(Array(WINDOW).fill('FW_ERR_JOB_CANCELLED'));
    expect((await d.app.inject({ method: 'POST', url: `/v1/batches/${c.batchId}/resume` })).statusCode).toBe(409);
  });
});
