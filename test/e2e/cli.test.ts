/**
 * The built CLI end to end (dist/, built by the test command): train on generated clips, then
 * label and evaluate them; exit codes and output contracts; the bundled default run.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile, copyFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TRAIN_FEATURE, PROJECT_ROOT } from '../../src/config/index.js';
import { makeClip, randomClipSpec, type Motion } from '../../src/media/synthetic.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';

const BIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'bin.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FRAMEWISE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Result lines, each checked against the published result schema (v1). */
const lines = (s: string): Record<string, unknown>[] =>
  s
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>;
      assertValidResult(r);
      return r;
    });

let dir: string;
let env: Record<string, string>;

/** Textured scenes (testsrc2, cellauto, sierpinski, testsrc): zooms are visible in every frame. */
const TEXTURED = [0, 2, 4, 9];

/** Paired clips: clip k of each motion shares its scene, frozen (the sources animate); only the direction of motion differs. */
async function makePaired(sub: string, motions: Motion[], n: number, seed: number): Promise<string> {
  const rows = ['path,label'];
  for (const motion of motions) {
    for (let k = 0; k < n; k++) {
      const name = `${motion}-${k}.mp4`;
      await makeClip({ ...randomClipSpec(motion, seed + k), scene: TEXTURED[k % TEXTURED.length] as number, strength: 1, still: true }, join(dir, sub, name));
      rows.push(`${name},${motion}`);
    }
  }
  await writeFile(join(dir, sub, 'manifest.csv'), `${rows.join('\n')}\n`);
  return join(dir, sub, 'manifest.csv');
}

beforeAll(async () => {
  dir = await makeTempDir('fw-e2e-');
  env = { FRAMEWISE_CACHE_DIR: join(dir, 'cache') };
  await makePaired('train', ['zoom_in', 'zoom_out'], 20, 100);
  await makePaired('test', ['zoom_in', 'zoom_out'], 6, 9000);
  await writeFile(join(dir, 'test', 'broken.mp4'), 'not a video');
});
afterAll(() => removeDir(dir));

describe('framewise CLI', () => {
  it('train → label → eval: the LSTM tells zoom in from zoom out (the same scenes reversed); the mean-pooling baseline cannot', async () => {
    const train = await cli(['train', '--manifest', join(dir, 'train', 'manifest.csv'), '--out', join(dir, 'models', 'zoom'), '--seed', '1', '--json'], env);
    expect(train.code, train.stderr).toBe(0);
    const summary = JSON.parse(train.stdout) as { labels: string[]; trainN: number; valN: number; version: string };
    expect(summary.labels).toEqual(['zoom_in', 'zoom_out']);
    expect(summary.trainN + summary.valN).toBe(40);
    const meta = JSON.parse(await readFile(join(dir, 'models', 'zoom', 'metadata.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ labels: ['zoom_in', 'zoom_out'], backbone: { id: 'mobilenet_v2_mid', dim: 1792, featureKind: DEFAULT_TRAIN_FEATURE }, sampling: { policy: { kind: 'uniform', frames: 16 } }, version: summary.version });

    const evalRun = await cli(['eval', '--model', join(dir, 'models', 'zoom'), '--manifest', join(dir, 'test', 'manifest.csv'), '--format', 'json'], env);
    expect(evalRun.code, evalRun.stderr).toBe(0);
    const m = JSON.parse(evalRun.stdout) as { top1: number; top5: number; meanClassAccuracy: number; perClass: unknown[]; confusionMatrix: number[][]; labels: string[]; n: number };
    expect(m.n).toBe(12);
    expect(m.labels).toEqual(['zoom_in', 'zoom_out']);
    expect(m.confusionMatrix.flat().reduce((a, b) => a + b, 0)).toBe(12);
    expect(m.top5).toBe(1);
    expect(m.top1).toBeGreaterThanOrEqual(0.9);

    const base = await cli(['train', '--manifest', join(dir, 'train', 'manifest.csv'), '--out', join(dir, 'models', 'mean'), '--cell', 'mean', '--feature', 'pooled', '--streams', 'rgb', '--epochs', '40', '--seed', '1', '--json'], env);
    expect(base.code, base.stderr).toBe(0);
    const baseEval = JSON.parse((await cli(['eval', '--model', join(dir, 'models', 'mean'), '--manifest', join(dir, 'test', 'manifest.csv'), '--format', 'json'], env)).stdout) as { top1: number };
    expect(baseEval.top1).toBeLessThanOrEqual(0.75);

    const label = await cli(['label', join(dir, 'test'), '--model', join(dir, 'models', 'zoom'), '--top-k', '2'], env);
    expect(label.code).toBe(1); // broken.mp4 failed, the rest were labelled
    const results = lines(label.stdout);
    expect(results).toHaveLength(13);
    const broken = results.find((r) => String(r.path).endsWith('broken.mp4'));
    expect(broken).toMatchObject({ ok: false, error: { code: 'FW_ERR_MEDIA_NOT_VIDEO' } });
    const ok = results.filter((r) => r.ok === true);
    expect(ok).toHaveLength(12);
    for (const r of ok) {
      expect(r).toMatchObject({ label: expect.any(String), confidence: expect.any(Number), model: { id: 'zoom', version: summary.version }, backbone: { id: 'mobilenet_v2_mid' }, sampling: { policy: 'uniform:16', size: 224, crop: 'center' }, cached: true });
      expect((r.topK as unknown[]).length).toBe(2);
    }
    const correct = ok.filter((r) => String(r.path).includes(String(r.label))).length;
    expect(correct).toBeGreaterThanOrEqual(11);
  }, 400_000);

  it('CSV output, and an exit code of 0 when every input succeeds', async () => {
    const model = join(dir, 'models', 'zoom');
    await copyFile(join(dir, 'test', 'zoom_in-0.mp4'), join(dir, 'single.mp4'));
    const out = join(dir, 'labels.csv');
    const r = await cli(['label', join(dir, 'single.mp4'), '--model', model, '--format', 'csv', '--out', out], env);
    expect(r.code, r.stderr).toBe(0);
    const csv = (await readFile(out, 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('path,ok,label,confidence,top_k,model_version,error_code,error_message');
    expect(csv[1]).toMatch(/single\.mp4,true,zoom_(in|out),(0\.\d+|1),/);
  });

  it('documented exit codes for usage and fatal errors', async () => {
    const usage = await cli(['label', 'x.mp4', '--top-k', 'zero'], env);
    expect(usage.code).toBe(2);
    const noModel = await cli(['label', join(dir, 'single.mp4'), '--model', join(dir, 'nope')], env);
    expect(noModel.code).toBe(3);
    expect(noModel.stderr).toContain('FW_ERR_MODEL_NOT_FOUND');
    const badEnv = await cli(['label', join(dir, 'single.mp4')], { ...env, FRAMEWISE_ENGINE: 'cuda-magic' });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('FW_ERR_CONFIG_INVALID');
    const mismatch = await cli(['label', join(dir, 'single.mp4'), '--model', join(dir, 'models', 'zoom'), '--backbone', 'mobilenet_v2'], env);
    expect(mismatch.code).toBe(3);
    expect(mismatch.stderr).toContain('FW_ERR_MODEL_MISMATCH');
    const badManifest = join(dir, 'bad.csv');
    await writeFile(badManifest, 'file,class\na.mp4,x\n');
    const train = await cli(['train', '--manifest', badManifest, '--out', join(dir, 'models', 'x')], env);
    expect(train.code).toBe(3);
    expect(train.stderr).toContain('FW_ERR_MANIFEST_INVALID');
  });

  it('the bundled default: labels the bundled samples with the bundled model, offline', async () => {
    const r = await cli(['label', join(PROJECT_ROOT, 'samples')], env);
    expect(r.code, r.stderr).toBe(0);
    const results = lines(r.stdout) as Array<{ path: string; ok: boolean; label: string }>;
    for (const x of results) expect(x).toMatchObject({ ok: true, model: { id: 'motion4' }, topK: expect.any(Array) });
    // Every bundled sample by name: its file name is its true camera motion (`<motion>-NNN.mp4`).
    const byName = Object.fromEntries(results.map((x) => [basename(x.path), x.label]));
    expect(byName).toEqual({
      'pan_left-000.mp4': 'pan_left',
      'pan_left-001.mp4': 'pan_left',
      'pan_right-000.mp4': 'pan_right',
      'pan_right-001.mp4': 'pan_right',
      'zoom_in-000.mp4': 'zoom_in',
      'zoom_in-001.mp4': 'zoom_in',
      'zoom_out-000.mp4': 'zoom_out',
      'zoom_out-001.mp4': 'zoom_out',
    });
    const manifest = join(PROJECT_ROOT, 'samples', 'manifest.csv');
    const ev = JSON.parse((await cli(['eval', '--manifest', manifest, '--format', 'json'], env)).stdout) as { n: number; top1: number; labels: string[] };
    expect(ev.labels).toEqual(['pan_left', 'pan_right', 'zoom_in', 'zoom_out']);
    expect(ev.n).toBe(8);
    expect(ev.top1).toBe(1);
  });
});
