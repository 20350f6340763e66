/**
 * Fixtures for the queue-mode tests: generated clips, a trained head (the bundled
 * pretrained/heads/motion4 when present, else a tiny head trained once per machine from
 * generated clips, shared by test files through a lock), and configurations built with
 * `loadConfig` (the one reader of the environment) pointing at a test redis-server.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, PROJECT_ROOT, type Config } from '../../src/config/index.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { collectFeatures, trainHead } from '../../src/jobs/train.js';
import { makeClip, randomClipSpec, type Motion } from '../../src/media/synthetic.js';
import { schemaFor, testDatabaseUrl } from './postgres.js';

export const TEST_ENGINE = process.env.FRAMEWISE_TEST_ENGINE === 'tfjs' ? 'tfjs' : 'onnx';

/** Converted ONNX models are shared between tests (the feature stores are not). */
export const SHARED_CACHE = join(tmpdir(), 'framewise-test-shared-cache');

export interface ClipFixture {
  path: string;
  motion: Motion;
}

/** Generate `perMotion` clips of each motion into `dir` (deterministic for the seeds). */
export async function makeClips(dir: string, motions: readonly Motion[], perMotion: number, seed0 = 100): Promise<ClipFixture[]> {
  await mkdir(dir, { recursive: true });
  const out: ClipFixture[] = [];
  for (const [m, motion] of motions.entries()) {
    for (let i = 0; i < perMotion; i++) {
      const path = join(dir, `${motion}-${i}.mp4`);
      const spec = randomClipSpec(motion, seed0 + 97 * m + i);
      await makeClip({ ...spec, seconds: Math.min(spec.seconds, 2) }, path);
      out.push({ path, motion });
    }
  }
  return out;
}

/** Bad inputs for batches: an empty file, a text file named .mp4, a truncated mp4. */
export async function makeBadFiles(dir: string, goodClip: string): Promise<{ empty: string; text: string; truncated: string }> {
  await mkdir(dir, { recursive: true });
  const empty = join(dir, 'empty.mp4');
  const text = join(dir, 'notes.mp4');
  const truncated = join(dir, 'truncated.mp4');
  await writeFile(empty, '');
  await writeFile(text, 'this is not a video, just text\n'.repeat(20));
  const bytes = await readFile(goodClip);
  await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.4)));
  return { empty, text, truncated };
}

/** Environment for `loadConfig`: a private feature store and data folder, the given Redis and prefix, a PostgreSQL schema of its own. */
export function testEnv(opts: { redisUrl: string; prefix: string; cacheDir: string; dataDir: string; modelDir: string; extra?: Record<string, string> }): Record<string, string> {
  const prefix = `${opts.prefix}-${process.pid}-${Date.now().toString(36)}`;
  return {
    REDIS_URL: opts.redisUrl,
    FRAMEWISE_QUEUE_PREFIX: prefix,
    // the suite's PostgreSQL (test/helpers/postgres-global.ts), a schema of this deployment's own
    DATABASE_URL: testDatabaseUrl(),
    FRAMEWISE_DB_SCHEMA: schemaFor(prefix),
    FRAMEWISE_CACHE_DIR: opts.cacheDir,
    FRAMEWISE_DATA_DIR: opts.dataDir,
    FRAMEWISE_MODEL_DIR: opts.modelDir,
    FRAMEWISE_ENGINE: TEST_ENGINE,
    FRAMEWISE_LOG_LEVEL: 'warn',
    FRAMEWISE_JOB_BACKOFF_MS: '200',
    FRAMEWISE_DECODE_CONCURRENCY: '2',
    ...opts.extra,
  };
}

export function testConfig(env: Record<string, string>): Config {
  return loadConfig(env);
}

/** A fresh cache folder that reuses the converted ONNX models (a symlink to the shared ones). */
export async function freshCacheDir(root: string): Promise<string> {
  const dir = join(root, 'cache');
  await mkdir(join(SHARED_CACHE, 'onnx'), { recursive: true });
  await mkdir(dir, { recursive: true });
  const { symlink } = await import('node:fs/promises');
  await symlink(join(SHARED_CACHE, 'onnx'), join(dir, 'onnx')).catch(() => undefined);
  return dir;
}

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Motions of the tiny test head. */
export const TEST_MOTIONS: readonly Motion[] = ['zoom_in', 'pan_left'];

/**
 * The head to label with: the bundled one when it exists, else a tiny head (8 LSTM units,
 * uniform:8 sampling, two motions) trained once and kept in the temp folder.
 */
export async function ensureTestModel(): Promise<string> {
  const bundled = join(PROJECT_ROOT, 'pretrained', 'heads', 'motion4');
  if (await exists(join(bundled, 'metadata.json'))) return bundled;
  const dir = join(tmpdir(), `framewise-queue-test-head-v1-${TEST_ENGINE}`);
  if (await exists(join(dir, 'metadata.json'))) return dir;
  const lock = `${dir}.lock`;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      if (await exists(join(dir, 'metadata.json'))) return dir;
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 300_000) await rm(lock, { recursive: true, force: true });
      await sleep(250);
    }
  }
  try {
    if (await exists(join(dir, 'metadata.json'))) return dir;
    const work = await mkdtemp(join(tmpdir(), 'fw-train-'));
    const clips = await makeClips(join(work, 'clips'), TEST_MOTIONS, 3, 7);
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: await freshCacheDir(work), FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' });
    const extractor = await createExtractor(runtimeFromConfig(config), { kind: 'uniform', frames: 8 }, { size: 224, crop: 'center' });
    try {
      const items = clips.map((c) => ({ path: c.path, source: c.path, label: c.motion, extra: {} }));
      const train = await collectFeatures(items, extractor);
      const result = await trainHead({ extractor, train, val: { kind: 'none' }, id: 'queue-test', head: { units: 8, dropout: 0 }, training: { epochs: 6, seed: 3 } });
      await result.head.save(dir);
      result.head.dispose();
    } finally {
      await extractor.dispose();
      await rm(work, { recursive: true, force: true });
    }
    return dir;
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}
