/**
 * The archive benchmark (`npm run bench -- --only archive`): a batch of a synthetic archive of
 * `files` distinct small files (one tiny clip copied with a distinct trailing MP4 box each: they
 * decode alike and hash differently) through the HTTP API against a private redis-server and
 * PostgreSQL cluster (or DATABASE_URL), with the ingest worker and stand-in stage workers
 * (archive-drain.ts) as processes of their own:
 * - time to the 202 of `POST /v1/batches`;
 * - ingest rate (files listed, hashed, recorded and queued per second, from the 202 to the end of
 *   the listing; it includes waiting at the window while the stand-ins drain);
 * - p50/p99 of `GET /healthz` and of `GET /v1/batches/:id` while the ingest runs (and of a bare
 *   Redis PING in the same loop: a status read is one Redis round trip);
 * - Redis `used_memory` at its peak and once the batch has finished;
 * - `framewise results export` of the batch (every row) to CSV: wall time and the exporter's peak RSS;
 * - `GET /v1/results` queries (a page of 1,000) over the stored rows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { buildServer } from '../../src/api/server.js';
import { loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { startPostgresServer, type PostgresServer } from '../../src/db/postgres-server.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { startRedisServer } from '../../src/jobs/queue/redis-server.js';
import { openQueueRuntime } from '../../src/jobs/queue/runtime.js';
import { runFfmpeg } from '../../src/media/synthetic.js';
import { makeArchive } from '../helpers/archive.js';

export interface ArchiveBenchOptions {
  files: number;
  /**
   * Drain the batch with the stand-in stage workers (and export it). Without: no stage worker runs,
   * the window is the whole archive, and the run stops once the listing is done — the ingest's own
   * rate, nothing waiting at a window. @defaultValue true
   */
  drain?: boolean;
  /** Files per sub-folder. @defaultValue 1000 */
  perFolder?: number;
  log?: (line: string) => void;
}

export interface ArchiveBenchResult {
  files: number;
  generateSeconds: number;
  postMs: number;
  ingestSeconds: number;
  ingestFilesPerSec: number;
  drainSeconds: number;
  healthz: { n: number; p50Ms: number; p99Ms: number };
  batchGet: { n: number; p50Ms: number; p99Ms: number };
  /** A bare Redis PING from the benchmark process in the same loop: what one round trip to the loaded Redis costs. */
  redisPing: { n: number; p50Ms: number; p99Ms: number };
  redisUsedMemoryMiB: { before: number; peak: number; after: number };
  export: { rows: number; seconds: number; maxRssMiB: number };
  /** `GET /v1/results` over the stored rows, a page of 1,000: ms per query (median of 3). */
  queries: Record<string, number>;
  final: Pick<BatchStatus, 'counts' | 'ingest' | 'state'>;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number);
};
const mib = (b: number): number => b / 2 ** 20;

function spawnNode(script: string, env: Record<string, string>, args: string[] = []): { child: ChildProcess; output: () => string; done: Promise<number | null> } {
  let out = '';
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-20_000)));
  child.stderr?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-20_000)));
  const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, done };
}

export async function benchArchive(opts: ArchiveBenchOptions): Promise<ArchiveBenchResult> {
  const log = opts.log ?? (() => undefined);
  const base = loadConfig();
  const work = await mkdtemp(join(tmpdir(), 'fw-bench-archive-'));
  const redis = await startRedisServer();
  const pg: PostgresServer | undefined = base.queue.databaseUrl ? undefined : await startPostgresServer();
  const children: ChildProcess[] = [];
  try {
    const clip = join(work, 'base.mp4');
    await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=8', '-frames:v', '8', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', clip]);
    const archive = join(work, 'archive');
    let t = performance.now();
    await makeArchive(archive, clip, opts.files, { perFolder: opts.perFolder ?? 1000 });
    const generateSeconds = (performance.now() - t) / 1000;
    log(`archive    ${opts.files} files generated in ${generateSeconds.toFixed(1)} s`);
    const drain = opts.drain ?? true;
    const env: Record<string, string> = {
      ...(drain ? {} : { FRAMEWISE_INGEST_WINDOW: String(opts.files + 1) }),
      REDIS_URL: redis.url,
      DATABASE_URL: base.queue.databaseUrl ?? (pg as PostgresServer).url,
      FRAMEWISE_DB_SCHEMA: `bench_archive_${process.pid}`,
      FRAMEWISE_QUEUE_PREFIX: 'bencharchive',
      FRAMEWISE_PATH_ROOTS: archive,
      FRAMEWISE_DATA_DIR: join(work, 'data'),
      FRAMEWISE_CACHE_DIR: base.cacheDir,
      FRAMEWISE_LOG_LEVEL: 'warn',
    };
    const config = loadConfig({ ...process.env, ...env });
    const rt = openQueueRuntime(config);
    const app = await buildServer(config, { runtime: rt });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const probe = new Redis(redis.url);
    try {
      const ingest = spawnNode(join(PROJECT_ROOT, 'dist', 'workers', 'ingest.worker.js'), env);
      const stages = drain ? spawnNode(join(PROJECT_ROOT, 'dist', 'test', 'bench', 'archive-drain.js'), env) : undefined;
      children.push(ingest.child, ...(stages ? [stages.child] : []));
      for (let i = 0; i < 600 && ((await rt.queues[QueueName.Ingest].getWorkersCount()) < 1 || (drain && (await rt.queues[QueueName.Classify].getWorkersCount()) < 1)); i++) await sleep(100);
      const usedMemory = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await probe.info('memory'))?.[1]);
      const before = await usedMemory();

      t = performance.now();
      const res = await fetch(`${url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: archive }) });
      const postMs = performance.now() - t;
      if (res.status !== 202) throw new Error(`POST /v1/batches: ${res.status} ${await res.text()}`);
      const { batchId } = (await res.json()) as BatchStatus;
      log(`archive    POST /v1/batches → 202 in ${postMs.toFixed(0)} ms`);
      const t202 = performance.now();
      const healthz: number[] = [];
      const batchGet: number[] = [];
      const pings: number[] = [];
      let peak = before;
      let lastMem = 0;
      let status: BatchStatus | undefined;
      let ingestSeconds = NaN;
      let lastLog = 0;
      for (;;) {
        let t0 = performance.now();
        await (await fetch(`${url}/healthz`)).arrayBuffer();
        const h = performance.now() - t0;
        t0 = performance.now();
        status = (await (await fetch(`${url}/v1/batches/${batchId}`)).json()) as BatchStatus;
        const g = performance.now() - t0;
        t0 = performance.now();
        await probe.ping();
        const pingMs = performance.now() - t0;
        const listing = !['done', 'failed', 'cancelled'].includes(status.ingest.state);
        if (listing) {
          healthz.push(h);
          batchGet.push(g);
          pings.push(pingMs);
        } else if (Number.isNaN(ingestSeconds)) ingestSeconds = (performance.now() - t202) / 1000;
        if (performance.now() - lastMem > 250) {
          lastMem = performance.now();
          peak = Math.max(peak, await usedMemory());
        }
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          log(`archive    … ${status.ingest.state}: found ${status.ingest.found}, queued ${status.ingest.queued}, done ${status.counts.completed + status.counts.failed}, Redis ${mib(peak).toFixed(1)} MiB peak`);
        }
        if (status.finishedAt !== null || (!drain && !listing)) break;
        if (ingest.child.exitCode !== null || (stages && stages.child.exitCode !== null)) throw new Error(`a worker process ended:\n${ingest.output()}\n${stages?.output() ?? ''}`);
        await sleep(20);
      }
      const drainSeconds = (performance.now() - t202) / 1000;
      const after = await usedMemory();
      log(`archive    listed in ${ingestSeconds.toFixed(1)} s (${(opts.files / ingestSeconds).toFixed(0)} files/s)${drain ? `, finished in ${drainSeconds.toFixed(1)} s` : ' (no stage workers)'}`);
      const result = {
        files: opts.files,
        generateSeconds,
        postMs,
        ingestSeconds,
        ingestFilesPerSec: opts.files / ingestSeconds,
        drainSeconds,
        healthz: { n: healthz.length, p50Ms: pct(healthz, 50), p99Ms: pct(healthz, 99) },
        batchGet: { n: batchGet.length, p50Ms: pct(batchGet, 50), p99Ms: pct(batchGet, 99) },
        redisPing: { n: pings.length, p50Ms: pct(pings, 50), p99Ms: pct(pings, 99) },
        redisUsedMemoryMiB: { before: mib(before), peak: mib(peak), after: mib(after) },
        final: { state: status.state, counts: status.counts, ingest: status.ingest },
      };
      if (!drain) {
        ingest.child.kill('SIGTERM');
        await Promise.race([ingest.done, sleep(10_000)]);
        return { ...result, export: { rows: 0, seconds: NaN, maxRssMiB: NaN }, queries: {} };
      }

      // the export, as a user runs it (its own process: its peak RSS is its own)
      t = performance.now();
      const out = join(work, 'export.csv');
      const exp = spawnNode(join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js'), env, ['results', 'export', '--batch', batchId, '--out', out]);
      const code = await exp.done;
      const exportSeconds = (performance.now() - t) / 1000;
      const summaryLine = exp.output().trim().split('\n').at(-1) ?? '{}';
      if (code !== 0) throw new Error(`results export failed (${code}): ${exp.output()}`);
      const summary = JSON.parse(summaryLine) as { written: number; maxRssBytes: number };
      // the results queries, a page each, over every row stored
      const queries: Record<string, number> = {};
      const since = new Date(Date.now() - 3600_000).toISOString();
      for (const [name, q] of Object.entries({
        'label+minConfidence': 'label=zoom_in&minConfidence=0.9',
        pathPrefix: `pathPrefix=${encodeURIComponent(join(archive, 'd7'))}`,
        'model+since': `model=motion4&since=${since}`,
        'batch+label': `batch=${batchId}&label=pan_left`,
      })) {
        const times: number[] = [];
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now();
          const r = await fetch(`${url}/v1/results?${q}&limit=1000`);
          await r.text();
          times.push(performance.now() - t0);
        }
        queries[name] = pct(times, 50);
      }
      for (const c of [ingest, stages as NonNullable<typeof stages>]) {
        c.child.kill('SIGTERM');
        await Promise.race([c.done, sleep(10_000)]);
      }
      return { ...result, export: { rows: summary.written, seconds: exportSeconds, maxRssMiB: mib(summary.maxRssBytes) }, queries };
    } finally {
      probe.disconnect();
      await app.close();
      await rt.close();
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await redis.stop();
    await pg?.stop();
    await rm(work, { recursive: true, force: true });
  }
}
