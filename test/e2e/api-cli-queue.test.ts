/**
 * The built CLI in queue mode (dist/, built by the test command): `worker all`, `submit --wait`
 * (same JSON lines as `label`), `batch --wait`, `status`, `serve` (then SIGTERM), and `label`
 * still inline with Redis unreachable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import type { LabelResult } from '../../src/jobs/label.js';
import { ensureTestModel, freshCacheDir, makeBadFiles, makeClips, testEnv } from '../helpers/queue-fixtures.js';
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js';

const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js');

let redis: TestRedis;
let work: string;
let env: Record<string, string>;
let worker: ChildProcess | undefined;
let clips: Awaited<ReturnType<typeof makeClips>>;

function cli(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const lines = (s: string): LabelResult[] => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LabelResult);

beforeAll(async () => {
  const modelDir = await ensureTestModel();
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-cli-queue-'));
  clips = await makeClips(join(work, 'clips'), ['zoom_in', 'pan_right'], 1, 5100);
  env = testEnv({ redisUrl: redis.url, prefix: 'cli', cacheDir: await freshCacheDir(work), dataDir: join(work, 'data'), modelDir });
  worker = spawn(process.execPath, [BIN, 'worker', 'all'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    worker.kill('SIGTERM');
    await new Promise((r) => worker?.once('exit', r));
  }
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('framewise CLI, queue mode', () => {
  it('submit --wait prints the results label prints; status shows the job', async () => {
    const queued = await cli(['submit', '--wait', ...clips.map((c) => c.path)]);
    expect(queued.code, queued.stderr).toBe(0);
    const results = lines(queued.stdout);
    const inline = await cli(['label', ...clips.map((c) => c.path)], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(inline.code, inline.stderr).toBe(0);
    const expected = lines(inline.stdout);
    expect(results.map((r) => [r.path, r.ok && r.label])).toEqual(expected.map((r) => [r.path, r.ok && r.label]));

    const ids = await cli(['submit', clips[0]!.path]);
    const { jobId, created } = JSON.parse(ids.stdout) as { jobId: string; created: boolean };
    expect(created).toBe(false);
    const status = await cli(['status', jobId]);
    expect(JSON.parse(status.stdout)).toMatchObject({ jobId, state: 'completed', result: { ok: true } });
    const unknown = await cli(['status', 'clip-00000000000000000000000000000000']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('FW_ERR_JOB_NOT_FOUND');
  });

  it('batch --wait prints one line per file, failures with their code (exit 1)', async () => {
    const dir = join(work, 'clips');
    await makeBadFiles(dir, clips[0]!.path);
    const res = await cli(['batch', dir, '--wait', '--mode', 'all']);
    expect(res.code, res.stderr).toBe(1);
    const out = lines(res.stdout);
    expect(out).toHaveLength(5);
    expect(out.filter((r) => r.ok)).toHaveLength(2);
    const code = (name: string): string | undefined => {
      const r = out.find((x) => x.path.endsWith(name));
      return r && !r.ok ? r.error.code : undefined;
    };
    expect(code('empty.mp4')).toBe('FW_ERR_INPUT_EMPTY_FILE');
    expect(code('notes.mp4')).toBe('FW_ERR_MEDIA_NOT_VIDEO');
    expect(['FW_ERR_MEDIA_CORRUPT', 'FW_ERR_MEDIA_TRUNCATED']).toContain(code('truncated.mp4'));
    // the answer comes at once (the worker lists the folder); status follows the batch to its end
    const again = await cli(['batch', dir, '--mode', 'missing']);
    expect(again.code, again.stderr).toBe(0);
    const { batchId } = JSON.parse(again.stdout) as { batchId: string };
    let status: { finishedAt: string | null; skipped: number; counts: { total: number; failed: number } } | undefined;
    for (let i = 0; i < 300 && !status?.finishedAt; i++) {
      if (i > 0) await sleep(200);
      status = JSON.parse((await cli(['status', batchId])).stdout) as typeof status;
    }
    expect(status).toMatchObject({ skipped: 2, counts: { total: 3, failed: 3 } });
    // the results stay in PostgreSQL: exported without Redis
    const file = join(work, 'again.csv');
    const exported = await cli(['results', 'export', '--batch', batchId, '--out', file], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(exported.code, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stderr.trim().split('\n').at(-1) as string)).toMatchObject({ written: 3, out: file });
    const rows = (await readFile(file, 'utf8')).trim().split('\n');
    expect(rows[0]).toBe('path,ok,label,confidence,top_k,model_version,error_code,error_message');
    expect(rows.slice(1).map((r) => r.split(',')[1])).toEqual(['false', 'false', 'false']);
    // and queried: by batch, outcome and path prefix
    const failures = await cli(['results', 'query', '--batch', batchId, '--ok', 'false'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(failures.code, failures.stderr).toBe(0);
    const codes = lines(failures.stdout).map((r) => (r.ok ? 'ok' : r.error.code));
    expect(codes).toHaveLength(3);
    expect(codes).toEqual(expect.arrayContaining(['FW_ERR_INPUT_EMPTY_FILE', 'FW_ERR_MEDIA_NOT_VIDEO']));
    const good = await cli(['results', 'query', '--path-prefix', dir, '--ok', 'true', '--format', 'csv']);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout.trim().split('\n').slice(1).map((r) => r.split(',')[0]).sort()).toEqual(clips.map((c) => c.path).sort());
    expect((await cli(['results', 'query', '--since', 'not a time'])).stderr).toContain('FW_ERR_REQUEST_INVALID');
  });

  it('a queue service without its database stops at start with an error naming DATABASE_URL; label needs none', async () => {
    const unset = await cli(['worker', 'all'], { DATABASE_URL: '' });
    expect(unset.code).toBe(2);
    expect(unset.stderr).toMatch(/FW_ERR_CONFIG_INVALID: DATABASE_URL is not set/);
    const port = await freePort();
    const down = await cli(['serve', '--port', String(port)], { DATABASE_URL: `postgres://framewise:secret@127.0.0.1:${await freePort()}/framewise` });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/FW_ERR_DATABASE_UNAVAILABLE: cannot use PostgreSQL at DATABASE_URL postgres:\/\/framewise@127\.0\.0\.1:\d+\/framewise/);
    expect(down.stderr).not.toContain('secret');
    const inline = await cli(['label', clips[0]!.path], { DATABASE_URL: '', REDIS_URL: 'redis://127.0.0.1:1' });
    expect(inline.code, inline.stderr).toBe(0);
  });

  it('serve answers HTTP and stops on SIGTERM', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), '--log-level', 'warn'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    for (let i = 0; i < 100 && !out.includes('listening'); i++) await sleep(100);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await health.json()).toEqual({ ok: true });
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
  });
});
