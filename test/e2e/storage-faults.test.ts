/**
 * Full and read-only cache folders, on real small file systems (tmpfs mounted by the test; it
 * runs as root). The ONNX conversion and the feature store report FW_ERR_STORAGE_FULL /
 * FW_ERR_STORAGE_READONLY, and `framewise label` (built CLI, dist/) stops with one error and
 * exit 3 instead of failing every file with FW_ERR_INTERNAL. Where tmpfs cannot be mounted the
 * tests fail and say so: they are never skipped silently.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { isFramewiseError } from '../../src/errors/index.js';
import { FeatureStore, type FeatureSequence } from '../../src/features/feature-store.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const run = promisify(execFile);
const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js');

let dir: string;
const mounted: string[] = [];
let mountProblem: string | undefined;
const clips: string[] = [];

/** A tmpfs of `size` at a new folder (read-only with `ro`); the reason when that is impossible. */
async function tmpfs(name: string, size: string, ro = false): Promise<string> {
  if (mountProblem) throw new Error(`cannot test storage faults: ${mountProblem}`);
  const at = join(dir, name);
  await mkdir(at, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}${ro ? ',ro' : ''}`, 'tmpfs', at]);
  } catch (err) {
    mountProblem = `mount -t tmpfs failed (needs root and CAP_SYS_ADMIN): ${err instanceof Error ? err.message : String(err)}`;
    throw new Error(`cannot test storage faults: ${mountProblem}`);
  }
  mounted.push(at);
  return at;
}

/** Fill a file system up to the last byte (ENOSPC ends the filler). */
async function fill(at: string): Promise<void> {
  const fh = await open(join(at, 'filler'), 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  try {
    for (;;) await fh.write(Buffer.alloc(1, 1)); // the last partial block
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
}

function label(files: string[], cacheDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, FRAMEWISE_LOG_LEVEL: 'warn', FRAMEWISE_CACHE_DIR: cacheDir, FRAMEWISE_ENGINE: 'onnx', FRAMEWISE_THREADS: '1' };
    const child = spawn(process.execPath, [BIN, 'label', ...files, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const count = (s: string, what: string): number => s.split(what).length - 1;

beforeAll(async () => {
  dir = await makeTempDir();
  for (const [i, motion] of (['zoom_in', 'pan_right'] as const).entries()) {
    const out = join(dir, `clip-${i}.mp4`);
    await makeClip({ ...randomClipSpec(motion, 700 + i), seconds: 2 }, out);
    clips.push(out);
  }
});
afterAll(async () => {
  for (const at of mounted.reverse()) await run('umount', [at]).catch(() => run('umount', ['-l', at]).catch(() => undefined));
  await removeDir(dir);
});

describe('storage faults: one clear error, exit 3', () => {
  it('a cache folder too small for the ONNX conversion: FW_ERR_STORAGE_FULL once, exit 3', async () => {
    const cache = await tmpfs('cache-small', '2m');
    const r = await label(clips, cache);
    expect(r.code, r.stderr).toBe(3);
    expect(count(r.stderr, 'FW_ERR_STORAGE_FULL'), r.stderr).toBe(1);
    expect(r.stderr).toContain('ENOSPC');
    expect(r.stderr).not.toContain('FW_ERR_INTERNAL');
    expect(r.stdout).not.toContain('FW_ERR_'); // no per-file failures
    expect(r.stderr).not.toContain(cache); // names what could not be written, not the path
  });

  it('a read-only cache folder: FW_ERR_STORAGE_READONLY once, exit 3', async () => {
    const cache = await tmpfs('cache-ro', '4m', true);
    const r = await label(clips, cache);
    expect(r.code, r.stderr).toBe(3);
    expect(count(r.stderr, 'FW_ERR_STORAGE_READONLY'), r.stderr).toBe(1);
    expect(r.stderr).toContain('EROFS');
    expect(r.stdout).not.toContain('FW_ERR_');
  });

  it('a cache that holds the model but has no room for features: FW_ERR_STORAGE_FULL from the feature store, exit 3', async () => {
    const cache = await tmpfs('cache-fills', '24m');
    const first = await label([clips[0] as string], cache); // converts the model, stores one entry
    expect(first.code, first.stderr).toBe(0);
    await fill(cache);
    const r = await label([clips[1] as string, clips[0] as string], cache);
    expect(r.code, r.stderr).toBe(3);
    expect(count(r.stderr, 'FW_ERR_STORAGE_FULL'), r.stderr).toBe(1);
    expect(r.stderr).toContain('the feature store');
  });

  it('FeatureStore.put maps ENOSPC and EROFS to the storage codes', async () => {
    const s: FeatureSequence = {
      key: { contentHash: 'ab'.repeat(32), backboneId: 'mobilenet_v2_mid', backboneVersion: 'nsfwjs@4.4.0', featureKind: 'pooled', sampling: 'uniform16-224-center' },
      count: 64,
      dim: 1280,
      times: Array.from({ length: 64 }, (_, i) => i / 10),
      data: new Float32Array(64 * 1280),
      video: { durationSec: 6.4, width: 320, height: 240, fps: 10 },
    };
    const full = await tmpfs('store-full', '256k'); // one entry is 320 KiB
    const e1 = await new FeatureStore(full).put(s).then(() => undefined, (e: unknown) => e);
    expect(isFramewiseError(e1, 'FW_ERR_STORAGE_FULL'), String(e1)).toBe(true);
    const ro = await tmpfs('store-ro', '1m', true);
    const e2 = await new FeatureStore(ro).put(s).then(() => undefined, (e: unknown) => e);
    expect(isFramewiseError(e2, 'FW_ERR_STORAGE_READONLY'), String(e2)).toBe(true);
  });
});
