/**
 * The HTTP API against real workers and a redis-server of its own, for the end-to-end tests: a
 * temp folder with `roots/` (FRAMEWISE_PATH_ROOTS), a fresh feature store, the test head, the
 * server (not listening: `app.inject`, or `app.listen` where a browser needs it) and workers.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/api/server.js';
import type { Config } from '../../src/config/index.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type StartWorkersOptions, type WorkerGroup, type WorkerKind } from '../../src/jobs/queue/workers.js';
import { ensureTestModel, freshCacheDir, testConfig, testEnv } from './queue-fixtures.js';
import { startRedis, type TestRedis } from './redis.js';

/** The API and workers of one deployment: its own queue prefix, feature store and data folder. */
export interface Deployment {
  config: Config;
  rt: QueueRuntime;
  app: FastifyInstance;
  workers: WorkerGroup;
  /** Closes the server, the workers and the runtime (not Redis). */
  close(): Promise<void>;
}

export interface DeployOptions {
  redisUrl: string;
  /** Queue prefix. */
  name: string;
  /** Its folder (feature store, data). */
  dir: string;
  /** FRAMEWISE_PATH_ROOTS. */
  roots: string;
  env?: Record<string, string>;
  /** @defaultValue decode, embed, classify, webhook, ingest */
  workers?: readonly WorkerKind[];
  workerOptions?: StartWorkersOptions;
  /** @defaultValue 50 */
  ssePollMs?: number;
}

export async function deploy(o: DeployOptions): Promise<Deployment> {
  await mkdir(o.dir, { recursive: true });
  const config = testConfig(testEnv({ redisUrl: o.redisUrl, prefix: o.name, cacheDir: await freshCacheDir(o.dir), dataDir: join(o.dir, 'data'), modelDir: await ensureTestModel(), extra: { FRAMEWISE_PATH_ROOTS: o.roots, ...o.env } }));
  const rt = openQueueRuntime(config);
  const app = await buildServer(config, { runtime: rt, ssePollMs: o.ssePollMs ?? 50 });
  const workers = await startWorkers(o.workers ?? ['decode', 'embed', 'classify', 'webhook', 'ingest'], config, o.workerOptions);
  return {
    config,
    rt,
    app,
    workers,
    async close() {
      await app.close();
      await workers.close();
      await rt.close();
    },
  };
}

export interface ApiHarness extends Deployment {
  redis: TestRedis;
  /** The temp folder (removed by `close`). */
  work: string;
  /** `<work>/roots`, the only path root. */
  roots: string;
  /** Closes the deployment, stops Redis and removes the folder. */
  close(): Promise<void>;
}

export interface ApiHarnessOptions extends Pick<DeployOptions, 'env' | 'workers' | 'ssePollMs'> {
  /** Queue prefix and temp folder name. */
  name: string;
  /** Make files under `roots` (or start helpers) before the configuration is read. */
  prepare?: (roots: string, work: string) => Promise<void>;
}

export async function startApiHarness(o: ApiHarnessOptions): Promise<ApiHarness> {
  const redis = await startRedis();
  const work = await mkdtemp(join(tmpdir(), `fw-${o.name}-`));
  const roots = join(work, 'roots');
  await mkdir(roots, { recursive: true });
  await o.prepare?.(roots, work);
  const d = await deploy({ redisUrl: redis.url, name: o.name, dir: work, roots, ...(o.env ? { env: o.env } : {}), ...(o.workers ? { workers: o.workers } : {}), ...(o.ssePollMs !== undefined ? { ssePollMs: o.ssePollMs } : {}) });
  return {
    ...d,
    redis,
    work,
    roots,
    async close() {
      await d.close();
      await redis.stop();
      await rm(work, { recursive: true, force: true });
    },
  };
}
