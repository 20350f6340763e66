/**
 * Failures the queue must survive, with real processes and a real redis-server:
 * - an embed worker process killed with SIGKILL while it holds jobs: a new worker picks them up
 *   once their locks expire (short lockDuration/stalledInterval from the configuration); every
 *   clip ends labelled once, none lost, none twice;
 * - Redis restarted in the middle of a batch (append-only file persistence): the batch completes.
 * Worker processes run the built JS (dist/, built by the test command).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT, type Config } from '../../src/config/index.js';
import { batchResults, batchStatus, createBatch, type BatchStatus } from '../../src/jobs/queue/batches.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { ensureTestModel, freshCacheDir, makeClips, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const WORKER_JS = (kind: string): string => join(PROJECT_ROOT, 'dist', 'workers', `${kind}.worker.js`);

let work: string;
let modelDir: string;
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  await stat(WORKER_JS('embed')).catch(() => {
    throw new Error('dist/workers/embed.worker.js is missing: build first (npx tsc -p tsconfig.json; the test command does it)');
  });
  modelDir = await ensureTestModel();
  work = await mkdtemp(join(tmpdir(), 'fw-queue-recovery-'));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

function spawnWorker(kind: string, env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let out = '';
  const child = spawn(process.execPath, [WORKER_JS(kind)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  children.push(child);
  return { child, output: () => out };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined;
    try {
      v = await fn();
    } catch {
      v = undefined; // Redis restarting
    }
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const finished = (s: BatchStatus): boolean => s.state === 'completed' && s.finishedAt !== null;

describe('queue recovery', () => {
  it('a SIGKILLed embed worker: its jobs are recovered by a new worker, each clip labelled once', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const dir = join(work, 'kill');
    const env = testEnv({
      redisUrl: redis.url,
      prefix: 'kill',
      cacheDir: await freshCacheDir(dir),
      dataDir: join(dir, 'data'),
      modelDir,
      extra: { FRAMEWISE_LOCK_DURATION_MS: '2000', FRAMEWISE_STALLED_INTERVAL_MS: '1000' },
    });
    const config: Config = testConfig(env);
    const rt: QueueRuntime = openQueueRuntime(config);
    cleanups.push(() => rt.close());
    const local: WorkerGroup = await startWorkers(['decode', 'classify', 'ingest'], config);
    cleanups.push(() => local.close());
    const clips = await makeClips(join(dir, 'clips'), ['zoom_in', 'pan_left', 'zoom_out'], 1, 3100);

    // worker A holds its jobs in the batcher for a long time: it is killed with them in hand
    const a = spawnWorker('embed', { ...env, FRAMEWISE_EMBED_BATCH_WAIT_MS: '60000', FRAMEWISE_EMBED_BATCH_FRAMES: '1000' });
    // the worker registers with the queue once its backbone is loaded and warm
    await until('worker A to be ready', async () => ((await rt.queues[QueueName.Embed].getWorkersCount()) === 1 ? true : undefined), 30_000);
    const batch = await createBatch(rt, { source: { path: join(dir, 'clips') }, mode: 'all' });
    expect((await until('the listing', async () => {
      const s = await batchStatus(rt, batch.batchId);
      return s.ingest.state === 'done' ? s : undefined;
    }, 30_000)).ingest.queued).toBe(3);
    await until('three embed jobs held by worker A', async () => ((await rt.queues[QueueName.Embed].getActiveCount()) === 3 ? true : undefined), 30_000);
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    expect((await batchStatus(rt, batch.batchId)).counts.completed).toBe(0);

    const b = spawnWorker('embed', env);
    const done = await until('the batch to complete', async () => {
      const s = await batchStatus(rt, batch.batchId);
      return finished(s) ? s : undefined;
    }, 60_000);
    expect(done.counts, b.output()).toMatchObject({ total: 3, completed: 3, failed: 0 });

    const results = await batchResults(rt, batch.batchId);
    expect(results.map((r) => r.path).sort()).toEqual(clips.map((c) => c.path).sort());
    expect(results.every((r) => r.ok)).toBe(true);
    const classified = await rt.queues[QueueName.Classify].getCompleted();
    expect(classified).toHaveLength(3);
    for (const j of classified) expect(j.attemptsMade).toBe(1);
    const embedded = await rt.queues[QueueName.Embed].getCompleted();
    expect(embedded).toHaveLength(3);
    // the artifacts (decoded frames) are gone once embedded
    expect(await readdir(join(dir, 'data', 'artifacts', 'frames')).catch(() => [])).toEqual([]);
    b.child.kill('SIGTERM');
    await new Promise((r) => b.child.once('exit', r));
    expect(b.child.exitCode).toBe(0);
  });

  it('Redis restarted in the middle of a batch (AOF): the batch completes', async () => {
    const redis = await startRedis({ aof: true });
    cleanups.push(() => redis.stop());
    const dir = join(work, 'restart');
    const env = testEnv({ redisUrl: redis.url, prefix: 'restart', cacheDir: await freshCacheDir(dir), dataDir: join(dir, 'data'), modelDir, extra: { FRAMEWISE_DECODE_CONCURRENCY: '1' } });
    const config = testConfig(env);
    const rt = openQueueRuntime(config);
    cleanups.push(() => rt.close());
    const workers = await startWorkers(['decode', 'embed', 'classify', 'ingest'], config);
    cleanups.push(() => workers.close());
    await makeClips(join(dir, 'clips'), ['zoom_in', 'pan_left', 'zoom_out', 'pan_right'], 2, 4100);
    const batch = await createBatch(rt, { source: { path: join(dir, 'clips') }, mode: 'all' });
    await until('the first results', async () => {
      const s = await batchStatus(rt, batch.batchId);
      return s.counts.completed >= 1 ? s : undefined;
    }, 60_000);
    const mid = await batchStatus(rt, batch.batchId);
    expect(mid.counts.completed).toBeLessThan(8);
    await redis.restart({ downMs: 500 });
    const done = await until('the batch to complete', async () => {
      const s = await batchStatus(rt, batch.batchId);
      return finished(s) ? s : undefined;
    }, 90_000);
    expect(done.counts).toMatchObject({ total: 8, completed: 8, failed: 0 });
    expect(done.ingest).toMatchObject({ found: 8, queued: 8 });
    expect(await rt.queues[QueueName.Classify].getCompletedCount()).toBe(8);
  });
});
