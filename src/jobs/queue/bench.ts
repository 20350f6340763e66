/**
 * The queue-mode benchmark (`npm run bench`): clips per minute through the queue — N decode
 * workers and one embed + classify worker, and the ingest worker, in this process, against a
 * private redis-server and PostgreSQL cluster (or DATABASE_URL) —
 * and inline mode (`labelItems`) on the same clips in the same run, each with an empty feature
 * store and with models loaded before the clock starts.
 */
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, type Config } from '../../config/index.js';
import type { FeatureKey } from '../../features/feature-store.js';
import type { VideoInfo } from '../../media/ffmpeg.js';
import { TemporalHead } from '../../ml/head.js';
import { labelItems } from '../label.js';
import { createExtractor, runtimeFromConfig } from '../runtime.js';
import { batchStatus, createBatch } from './batches.js';
import { startPostgresServer, type PostgresServer } from '../../db/postgres-server.js';
import { startRedisServer } from './redis-server.js';
import { openQueueRuntime } from './runtime.js';
import { startWorkers, type WorkerGroup } from './workers.js';

export interface BenchQueueOptions {
  /** Video files (each becomes one job). */
  clips: readonly string[];
  /** Decode workers (each with concurrency 1). */
  decodeWorkers: number;
  /** Base environment for `loadConfig` (engine, model…). @defaultValue process.env */
  env?: Record<string, string | undefined>;
  /** Skip the inline measurement. @defaultValue false */
  skipInline?: boolean;
}

export interface BenchQueueResult {
  clips: number;
  decodeWorkers: number;
  embedWorkers: 1;
  engine: string;
  /** Through the queue: from submitting the batch to its last result. */
  clipsPerMin: number;
  seconds: number;
  failed: number;
  /** Inline `label` on the same clips, same process, same run. */
  inlineClipsPerMin: number | null;
  inlineSeconds: number | null;
  /** Backbone calls of the embed worker and the most jobs one call served (batching across jobs). */
  embedCalls: number;
  maxJobsPerEmbedCall: number;
}

/** A fresh cache folder (empty feature store) that reuses the converted ONNX models of `from`. */
async function freshCache(root: string, from: string): Promise<string> {
  const dir = join(root, 'cache');
  await mkdir(join(from, 'onnx'), { recursive: true });
  await mkdir(dir, { recursive: true });
  await symlink(join(from, 'onnx'), join(dir, 'onnx'));
  return dir;
}

async function benchInline(config: Config, clips: readonly string[]): Promise<number> {
  const head = await TemporalHead.load(config.modelDir, undefined, config.backend);
  const meta = head.metadata;
  const extractor = await createExtractor(runtimeFromConfig(config), meta.sampling.policy, { size: meta.sampling.size, crop: meta.sampling.crop });
  try {
    // open and warm the backbone before the clock starts (one black frame under a throwaway key)
    const s = meta.sampling.size;
    const key: FeatureKey = { ...(await extractor.keyFor(clips[0] as string)), contentHash: 'warm-up' };
    const info: VideoInfo = { path: 'warm-up', sizeBytes: 0, container: 'none', codec: 'none', width: s, height: s, codedWidth: s, codedHeight: s, rotation: 0, sar: 1, fps: 1, startTime: 0, durationSec: 1, frameCount: 1, hasAudio: false };
    await extractor.embed({ key, info, frames: { size: s, count: 1, data: new Uint8Array(s * s * 3), times: [0] } });
    const t0 = performance.now();
    for await (const _ of labelItems(clips.map((path) => ({ path, source: path, extra: {} })), extractor, head, config.queue.topK)) void _;
    return (performance.now() - t0) / 1000;
  } finally {
    await extractor.dispose();
    head.dispose();
  }
}

export async function benchQueue(opts: BenchQueueOptions): Promise<BenchQueueResult> {
  if (opts.clips.length === 0) throw new RangeError('benchQueue needs at least one clip');
  if (!Number.isInteger(opts.decodeWorkers) || opts.decodeWorkers < 1) throw new RangeError(`decodeWorkers must be a positive integer, got ${opts.decodeWorkers}`);
  const base = loadConfig(opts.env ?? process.env);
  const work = await mkdtemp(join(tmpdir(), 'fw-bench-queue-'));
  const redis = await startRedisServer();
  const pg: PostgresServer | undefined = base.queue.databaseUrl ? undefined : await startPostgresServer();
  const groups: WorkerGroup[] = [];
  try {
    const env = {
      FRAMEWISE_LOG_LEVEL: 'warn',
      ...(opts.env ?? process.env),
      REDIS_URL: redis.url,
      DATABASE_URL: base.queue.databaseUrl ?? (pg as PostgresServer).url,
      FRAMEWISE_DB_SCHEMA: `bench_${process.pid}_${Date.now().toString(36)}`,
      FRAMEWISE_QUEUE_PREFIX: 'bench',
      FRAMEWISE_DATA_DIR: join(work, 'data'),
      FRAMEWISE_CACHE_DIR: await freshCache(join(work, 'queue'), base.cacheDir),
    };
    const config = loadConfig(env);
    const rt = openQueueRuntime(config);
    try {
      for (let i = 0; i < opts.decodeWorkers; i++) groups.push(await startWorkers(['decode'], config, { concurrency: { decode: 1 } }));
      const gpu = await startWorkers(['embed', 'classify', 'ingest'], config);
      groups.push(gpu);
      // the clips as a manifest: one batch, one job per clip (listing, hashing and submitting are timed)
      const manifest = join(work, 'clips.csv');
      await writeFile(manifest, `path\n${opts.clips.map((c) => `"${c.replace(/"/g, '""')}"`).join('\n')}\n`);
      const t0 = performance.now();
      const batch = await createBatch(rt, { source: { manifest }, mode: 'all' });
      let status = await batchStatus(rt, batch.batchId);
      while (status.finishedAt === null) {
        await sleep(50);
        status = await batchStatus(rt, batch.batchId);
      }
      const seconds = (performance.now() - t0) / 1000;
      const embedder = gpu.embedder;
      let inlineSeconds: number | null = null;
      if (!opts.skipInline) {
        for (const g of groups.splice(0)) await g.close(); // inline runs alone on the machine
        inlineSeconds = await benchInline(loadConfig({ ...env, FRAMEWISE_CACHE_DIR: await freshCache(join(work, 'inline'), base.cacheDir) }), opts.clips);
      }
      const n = opts.clips.length;
      return {
        clips: n,
        decodeWorkers: opts.decodeWorkers,
        embedWorkers: 1,
        engine: config.engine,
        clipsPerMin: (n / seconds) * 60,
        seconds,
        failed: status.counts.failed,
        inlineClipsPerMin: inlineSeconds === null ? null : (n / inlineSeconds) * 60,
        inlineSeconds,
        embedCalls: embedder?.stats.calls ?? 0,
        maxJobsPerEmbedCall: embedder?.stats.maxRequestsPerCall ?? 0,
      };
    } finally {
      await rt.close();
    }
  } finally {
    for (const g of groups) await g.close();
    await redis.stop();
    await pg?.stop();
    await rm(work, { recursive: true, force: true });
  }
}
