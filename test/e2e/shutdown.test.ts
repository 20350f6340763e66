/**
 * `framewise serve` and `framewise worker …` (the built CLI, dist/) exit on SIGTERM in every state:
 * idle, with Redis stopped, with Redis never reachable, with a job in flight (Redis up: the job is
 * handed back and another worker completes it), and with Redis stopped mid-job (the job comes back
 * once Redis does). Each test waits up to 20 s for the exit event and asserts it happened: a
 * liveness check, not a timing assertion. Exit codes: 0 for a graceful close, 1 for a forced one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { submitClip, waitForClip } from '../../src/jobs/queue/clips.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { ensureTestModel, freshCacheDir, makeClips, testConfig, testEnv, type ClipFixture } from '../helpers/queue-fixtures.js';
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js';

const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js');
/** How long a test waits for the exit event (the bound the processes keep is ~9.5 s). */
const EXIT_WAIT_MS = 20_000;

let work: string;
let modelDir: string;
let clips: ClipFixture[];
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  modelDir = await ensureTestModel();
  work = await mkdtemp(join(tmpdir(), 'fw-shutdown-'));
  clips = await makeClips(join(work, 'clips'), ['zoom_in'], 1, 6100);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

interface Proc {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit, or undefined when the process is still alive after `ms`. */
  exited: (ms: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined>;
}

function start(args: string[], env: Record<string, string>): Proc {
  let out = '';
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env, FRAMEWISE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  children.push(child);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  return {
    child,
    output: () => out,
    exited: (ms) => Promise.race([exit, sleep(ms).then(() => undefined)]),
  };
}

async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve(fn()).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function setup(name: string, extra: Record<string, string> = {}, redisOpts: { aof?: boolean } = {}): Promise<{ redis: TestRedis; env: Record<string, string>; rt: QueueRuntime }> {
  const redis = await startRedis(redisOpts);
  cleanups.push(() => redis.stop());
  const dir = join(work, name);
  const env = testEnv({ redisUrl: redis.url, prefix: name, cacheDir: await freshCacheDir(dir), dataDir: join(dir, 'data'), modelDir, extra });
  const rt = openQueueRuntime(testConfig(env));
  cleanups.push(() => rt.close());
  return { redis, env, rt };
}

const workersOn = (rt: QueueRuntime, q: QueueName) => async (): Promise<boolean> => (await rt.queues[q].getWorkersCount()) >= 1;

describe('SIGTERM ends serve and worker in every state', () => {
  it('worker all, idle, Redis up: a graceful close, exit 0', async () => {
    const { env, rt } = await setup('idle');
    const w = start(['worker', 'all'], env);
    // idle = started: every worker kind has said it is ready (models loaded, connections open)
    await until('the workers to be ready', () => w.output().includes('"workers ready"'));
    w.child.kill('SIGTERM');
    const exit = await w.exited(EXIT_WAIT_MS);
    expect(exit, w.output()).toEqual({ code: 0, signal: null });
  });

  it('serve and worker all with Redis stopped: both exit (a graceful close, exit 0, or a forced one, exit 1 with one log line saying why)', async () => {
    const { redis, env, rt } = await setup('down');
    const api = start(['serve', '--port', '0'], env);
    const w = start(['worker', 'all'], env);
    await until('serve to listen', () => api.output().includes('"listening"'));
    // every worker kind connected (the last ones, train and ingest, connect after classify)
    await until('the workers to be ready', () => w.output().includes('"workers ready"'));
    await rt.close();
    await redis.stop();
    await sleep(500); // both notice the lost connection
    api.child.kill('SIGTERM');
    w.child.kill('SIGTERM');
    const [a, b] = await Promise.all([api.exited(EXIT_WAIT_MS), w.exited(EXIT_WAIT_MS)]);
    // whether the graceful close can finish without Redis depends on what the connections were
    // doing when Redis went away; either way the process ends, and a forced close says why
    for (const [p, exit, what] of [[api, a, 'serve'], [w, b, 'worker']] as const) {
      expect(exit, `${what} is still running 20 s after SIGTERM:\n${p.output()}`).toBeDefined();
      expect(exit?.signal ?? null, p.output()).toBeNull();
      expect([0, 1], p.output()).toContain(exit?.code);
      if (exit?.code === 1) expect(p.output()).toContain('closing now');
    }
  });

  it('serve and worker all with Redis never reachable: both exit', async () => {
    const port = await freePort();
    const dir = join(work, 'never');
    const env = testEnv({ redisUrl: `redis://127.0.0.1:${port}`, prefix: 'never', cacheDir: await freshCacheDir(dir), dataDir: join(dir, 'data'), modelDir });
    const api = start(['serve', '--port', '0'], env);
    const w = start(['worker', 'all'], env);
    await until('serve to listen', () => api.output().includes('"listening"'));
    await sleep(2000); // the worker is waiting for Redis
    api.child.kill('SIGTERM');
    w.child.kill('SIGTERM');
    const [a, b] = await Promise.all([api.exited(EXIT_WAIT_MS), w.exited(EXIT_WAIT_MS)]);
    expect(a, `serve is still running 20 s after SIGTERM:\n${api.output()}`).toBeDefined();
    expect(b, `worker is still running 20 s after SIGTERM:\n${w.output()}`).toBeDefined();
    expect(a?.code, api.output()).toBe(1);
  });

  it('a job in flight, Redis up, longer than the deadline: the worker exits and hands the job back; another worker completes it', async () => {
    // the embed worker holds its job in the batcher (60 s wait) far past the 2 s deadline;
    // locks last 120 s, so only a handed-back job can be completed within the wait below
    const { env, rt } = await setup('inflight', { FRAMEWISE_SHUTDOWN_TIMEOUT_MS: '2000' });
    const local: WorkerGroup = await startWorkers(['decode', 'classify'], testConfig(env));
    cleanups.push(() => local.close());
    const w = start(['worker', 'embed'], { ...env, FRAMEWISE_EMBED_BATCH_WAIT_MS: '60000', FRAMEWISE_EMBED_BATCH_FRAMES: '1000' });
    await until('the embed worker to be ready', workersOn(rt, QueueName.Embed));
    const clip = clips[0] as ClipFixture;
    const { jobId } = await submitClip(rt, { path: clip.path, source: 'a.mp4' });
    await until('the embed job to be held', async () => (await rt.queues[QueueName.Embed].getActiveCount()) === 1);
    w.child.kill('SIGTERM');
    const exit = await w.exited(EXIT_WAIT_MS);
    expect(exit, w.output()).toEqual({ code: 1, signal: null });
    expect(w.output()).toContain('handed back');
    expect(await rt.queues[QueueName.Embed].getActiveCount()).toBe(0);
    const other = await startWorkers(['embed'], testConfig(env));
    cleanups.push(() => other.close());
    const status = await waitForClip(rt, jobId, { timeoutMs: 45_000, pollMs: 100 });
    expect(status.state, JSON.stringify(status.error)).toBe('completed');
    expect(status.result?.ok).toBe(true);
  });

  it('a second SIGTERM forces the close at once: the held job is handed back', async () => {
    // default deadline (8 s); the second signal comes 1 s after the first
    const { env, rt } = await setup('twice');
    const local: WorkerGroup = await startWorkers(['decode', 'classify'], testConfig(env));
    cleanups.push(() => local.close());
    const w = start(['worker', 'embed'], { ...env, FRAMEWISE_EMBED_BATCH_WAIT_MS: '60000', FRAMEWISE_EMBED_BATCH_FRAMES: '1000' });
    await until('the embed worker to be ready', workersOn(rt, QueueName.Embed));
    const { jobId } = await submitClip(rt, { path: (clips[0] as ClipFixture).path, source: 'c.mp4', topK: 1 });
    await until('the embed job to be held', async () => (await rt.queues[QueueName.Embed].getActiveCount()) === 1);
    w.child.kill('SIGTERM');
    await sleep(1000);
    w.child.kill('SIGTERM');
    const exit = await w.exited(EXIT_WAIT_MS);
    expect(exit, w.output()).toEqual({ code: 1, signal: null });
    expect(w.output()).toContain('second signal');
    expect(w.output()).toContain('handed back');
    const waiting = await rt.queues[QueueName.Embed].getJob(`${jobId}-embed`);
    expect(['waiting', 'prioritized']).toContain(await waiting?.getState()); // back in its queue (clips have priorities)
  });

  it('Redis stopped while a job is in flight: the worker exits; the job completes once Redis is back', async () => {
    const { redis, env, rt } = await setup('midjob', { FRAMEWISE_LOCK_DURATION_MS: '3000', FRAMEWISE_STALLED_INTERVAL_MS: '1000' }, { aof: true });
    const local: WorkerGroup = await startWorkers(['decode', 'classify'], testConfig(env));
    cleanups.push(() => local.close());
    const w = start(['worker', 'embed'], { ...env, FRAMEWISE_EMBED_BATCH_WAIT_MS: '60000', FRAMEWISE_EMBED_BATCH_FRAMES: '1000' });
    await until('the embed worker to be ready', workersOn(rt, QueueName.Embed));
    const clip = clips[0] as ClipFixture;
    const { jobId } = await submitClip(rt, { path: clip.path, source: 'b.mp4', topK: 2 });
    await until('the embed job to be held', async () => (await rt.queues[QueueName.Embed].getActiveCount()) === 1);
    // Redis goes away with the job held, and comes back (append-only file) 15 s later
    const back = redis.restart({ kill: true, downMs: 15_000 });
    await sleep(1000);
    w.child.kill('SIGTERM');
    const exit = await w.exited(EXIT_WAIT_MS);
    expect(exit, `worker is still running 20 s after SIGTERM:\n${w.output()}`).toEqual({ code: 1, signal: null });
    expect(w.output()).toContain('not handed back');
    await back;
    // its lock expires (3 s) and the stalled check gives the job to the next embed worker
    const other = await startWorkers(['embed'], testConfig(env));
    cleanups.push(() => other.close());
    const status = await waitForClip(rt, jobId, { timeoutMs: 45_000, pollMs: 200 });
    expect(status.state, JSON.stringify(status.error)).toBe('completed');
    expect(status.result?.ok).toBe(true);
  });
});
