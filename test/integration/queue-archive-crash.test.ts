/**
 * kill -9 in the middle of a batch, with real processes (the built worker entry files), Redis and
 * PostgreSQL: the ingest worker is killed while it waits at its window, the classify worker while
 * results flow; new ones take over (stalled jobs come back once their locks expire). Every file
 * ends with exactly one entry and one result — none lost, none twice — and the counters equal the
 * reconciled counts. Worker processes run dist/ (built by the test command).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { batchResults, batchStatus, createBatch, reconcileBatch, type BatchStatus } from '../../src/jobs/queue/batches.js';
import { submitClip, waitForClip } from '../../src/jobs/queue/clips.js';
import { currentModelInfo } from '../../src/jobs/queue/model-info.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { contentHash } from '../../src/features/feature-store.js';
import { makeClip } from '../../src/media/synthetic.js';
import { makeArchive, seedFeatures } from '../helpers/archive.js';
import { ensureTestModel, freshCacheDir, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const WORKER_JS = (kind: string): string => join(PROJECT_ROOT, 'dist', 'workers', `${kind}.worker.js`);
const N = 40;

let redis: TestRedis;
let work: string;
let env: Record<string, string>;
let rt: QueueRuntime;
let local: WorkerGroup | undefined;
const children: ChildProcess[] = [];

function spawnWorker(kind: string): { child: ChildProcess; output: () => string } {
  let out = '';
  const child = spawn(process.execPath, [WORKER_JS(kind)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-4000)));
  child.stderr?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-4000)));
  children.push(child);
  return { child, output: () => out };
}

async function kill9(child: ChildProcess): Promise<void> {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  await stat(WORKER_JS('ingest')).catch(() => {
    throw new Error('dist/workers/ingest.worker.js is missing: build first (npx tsc -p tsconfig.json; the test command does it)');
  });
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-archive-crash-'));
  env = testEnv({
    redisUrl: redis.url,
    prefix: 'crash',
    cacheDir: await freshCacheDir(work),
    dataDir: join(work, 'data'),
    modelDir: await ensureTestModel(),
    extra: { FRAMEWISE_INGEST_WINDOW: '10', FRAMEWISE_INGEST_CHUNK: '5', FRAMEWISE_LOCK_DURATION_MS: '2000', FRAMEWISE_STALLED_INTERVAL_MS: '1000' },
  });
  const config = testConfig(env);
  rt = openQueueRuntime(config);
  await rt.db.ready();
  // the base clip labelled once; its features are every copy's
  const base = join(work, 'base.mp4');
  await makeClip({ motion: 'pan_left', scene: 2, seconds: 1.5, fps: 12, width: 96, height: 64, hue: 40, strength: 0.8 }, base);
  local = await startWorkers(['decode', 'embed', 'classify'], config);
  const out = await submitClip(rt, { path: base, source: 'base.mp4' });
  expect((await waitForClip(rt, out.jobId, { timeoutMs: 120_000 })).state).toBe('completed');
  await local.close();
  const files = await makeArchive(join(work, 'archive'), base, N, { perFolder: 10 });
  await seedFeatures(rt.store, await currentModelInfo(config), await contentHash(base), files.map((f) => f.contentHash));
  // decode and embed here; ingest and classify in processes of their own, killed below
  local = await startWorkers(['decode', 'embed'], config);
}, 300_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await local?.close();
  await rt?.close();
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('kill -9 during a batch', () => {
  it('an ingest and a classify worker killed mid-batch: every file has one entry and one result, none lost or twice', async () => {
    const ingestA = spawnWorker('ingest');
    await until('ingest worker A', async () => ((await rt.queues[QueueName.Ingest].getWorkersCount()) === 1 ? true : undefined), 30_000);
    const batch = await createBatch(rt, { source: { path: join(work, 'archive') }, mode: 'all' });
    // nothing classifies yet: the ingest fills its window and waits there; then it dies
    const held = await until('the ingest to wait at its window', async () => {
      const s = await batchStatus(rt, batch.batchId);
      return s.ingest.state === 'waiting' ? s : undefined;
    });
    expect(held.ingest.found).toBeLessThan(N);
    await kill9(ingestA.child);

    // a classify worker takes the queued clips, and dies while results flow
    const classifyA = spawnWorker('classify');
    await until('the first results', async () => ((await batchStatus(rt, batch.batchId)).counts.completed >= 3 ? true : undefined));
    await kill9(classifyA.child);
    const mid = await batchStatus(rt, batch.batchId);
    expect(mid.counts.completed).toBeLessThan(N);

    // new ones take over: the ingest job comes back (stalled), skips what it recorded and lists the rest
    const ingestB = spawnWorker('ingest');
    const classifyB = spawnWorker('classify');
    const done = await until(
      'the batch to complete',
      async () => {
        const s = await batchStatus(rt, batch.batchId);
        return s.finishedAt !== null ? s : undefined;
      },
      120_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\ningest: ${ingestB.output()}\nclassify: ${classifyB.output()}`);
    });
    expect(done.state).toBe('completed');
    expect(done.ingest).toMatchObject({ state: 'done', found: N, hashed: N, queued: N, rejected: 0 });
    expect(done.counts).toEqual({ total: N, queued: 0, active: 0, paused: 0, completed: N, failed: 0, cancelled: 0 });

    // exactly one entry per file, each completed; exactly one result per job
    const entries = (await rt.db.query<{ n: string; items: string; done: string; jobs: string }>("SELECT count(*) AS n, count(DISTINCT item) AS items, count(*) FILTER (WHERE state = 'completed') AS done, count(DISTINCT job_id) AS jobs FROM batch_entries WHERE batch_id = $1", [batch.batchId])).rows[0]!;
    expect(entries).toEqual({ n: String(N), items: String(N), done: String(N), jobs: String(N) });
    const results = (await rt.db.query<{ n: string }>('SELECT count(*) AS n FROM results r JOIN batch_entries e ON e.job_id = r.job_id WHERE e.batch_id = $1 AND r.ok', [batch.batchId])).rows[0]!;
    expect(results.n).toBe(String(N));
    const lines = await batchResults(rt, batch.batchId);
    expect(lines).toHaveLength(N);
    expect(new Set(lines.map((l) => l.path)).size).toBe(N);
    expect(lines.every((l) => l.ok)).toBe(true);
    // each clip's flow was added once: one decode job per file (and the base clip's)
    expect(await rt.queues[QueueName.Decode].getCompletedCount()).toBe(N + 1);
    const reconciled: BatchStatus = await reconcileBatch(rt, batch.batchId);
    expect(reconciled.counts).toEqual(done.counts);

    for (const c of [ingestB.child, classifyB.child]) {
      c.kill('SIGTERM');
      await new Promise((r) => c.once('exit', r));
    }
  });
});
