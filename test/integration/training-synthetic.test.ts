/**
 * The default features + head on generated clips where only time decides the class:
 * (a) order: zoom in vs zoom out of the same scene (one clip is the other backwards);
 * (b) position over time: a shape moving left vs right over the same background.
 * The default (`framewise train` with no head options) must reach ≥ 95 % on held-out pairs of
 * both; the order-blind mean of global-average-pooled (GAP) features gives a clip and its reversed
 * twin the same answer (so it is at chance) on both.
 * Then the product path on the same (stored) features: train → register → label with NAME
 * (unknown threshold recorded) → eval with a report (contact sheets of the mistakes).
 */
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { readManifest } from '../../src/features/inputs.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { collectFeatures, DEFAULT_TRAIN_FEATURE, predictLabelled, runTraining, trainHead, type LabelledFeatures } from '../../src/jobs/train.js';
import { runEvaluation } from '../../src/jobs/evaluate.js';
import { main } from '../../src/cli/main.js';
import type { FeatureKind } from '../../src/ml/backbone.js';
import { HEAD_OPTIONS_SCHEMA } from '../../src/ml/head.js';
import { makeMotionPairs, makeShapePairs } from '../helpers/direction-clips.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

/** Shared with the other real-model tests: the converted ONNX backbone and features of deterministic clips are reused. */
const CACHE = join(PROJECT_ROOT, '.cache', 'test-features');
const TRAIN_PAIRS = 12;
const TEST_PAIRS = 6;

let dir: string;
const tasks = {
  order: { train: '', test: '' },
  position: { train: '', test: '' },
};

beforeAll(async () => {
  dir = await makeTempDir('fw-training-');
  for (const sub of ['order/train', 'order/test', 'position/train', 'position/test']) await mkdir(join(dir, sub), { recursive: true });
  [tasks.order.train, tasks.order.test, tasks.position.train, tasks.position.test] = await Promise.all([
    makeMotionPairs(join(dir, 'order', 'train'), 'zoom', TRAIN_PAIRS, 100),
    makeMotionPairs(join(dir, 'order', 'test'), 'zoom', TEST_PAIRS, 9000),
    makeShapePairs(join(dir, 'position', 'train'), TRAIN_PAIRS, 100),
    makeShapePairs(join(dir, 'position', 'test'), TEST_PAIRS, 9000),
  ]);
});
afterAll(() => removeDir(dir));

async function features(manifest: string, kind: FeatureKind): Promise<{ data: LabelledFeatures; extractor: Awaited<ReturnType<typeof createExtractor>> }> {
  const extractor = await createExtractor(runtimeFromConfig(loadConfig({}), { cacheDir: CACHE, featureKind: kind }), { kind: 'uniform', frames: 16 }, { size: 224, crop: 'center' });
  const data = await collectFeatures((await readManifest(manifest, { requireLabel: true })).items, extractor);
  await extractor.dispose();
  expect(data.failed).toEqual([]);
  return { data, extractor };
}

/** Top-1 on the held-out pairs, and the largest gap between the probabilities given to a clip and to its reversed twin. */
async function score(task: keyof typeof tasks, kind: FeatureKind, head: Record<string, unknown>): Promise<{ top1: number; twinGap: number }> {
  const train = await features(tasks[task].train, kind);
  const test = await features(tasks[task].test, kind);
  const r = await trainHead({ extractor: train.extractor, train: train.data, val: { kind: 'stratified', fraction: 0.2, seed: 1 }, id: task, head, training: { seed: 1 }, baseline: false });
  const { metrics, probs } = await predictLabelled(r.head, test.data);
  r.head.dispose();
  // the test manifest lists the forward clips 0..n-1, then their twins 0..n-1
  let twinGap = 0;
  for (let k = 0; k < TEST_PAIRS; k++) {
    const a = probs[k] as Float32Array;
    const b = probs[k + TEST_PAIRS] as Float32Array;
    for (let c = 0; c < a.length; c++) twinGap = Math.max(twinGap, Math.abs((a[c] as number) - (b[c] as number)));
  }
  return { top1: metrics.top1, twinGap };
}

describe('the default head on time-decided tasks (generated clips)', () => {
  for (const task of ['order', 'position'] as const) {
    it(`${task === 'order' ? '(a) zoom in vs out' : '(b) shape moving left vs right'}: default ≥ 95 %, mean-pooled GAP at chance`, async () => {
      const def = await score(task, DEFAULT_TRAIN_FEATURE, {});
      const gap = await score(task, 'pooled', { cell: 'mean', temporalDiff: 'none' });
      console.log(
        `${task}: default (${DEFAULT_TRAIN_FEATURE}, ${JSON.stringify(HEAD_OPTIONS_SCHEMA.parse({}))}) ${(def.top1 * 100).toFixed(0)} %, mean-pooled GAP ${(gap.top1 * 100).toFixed(0)} % (chance 50 %, n=${2 * TEST_PAIRS}); largest twin gap: default ${def.twinGap.toFixed(3)}, GAP ${gap.twinGap.toExponential(1)}`,
      );
      expect(def.top1).toBeGreaterThanOrEqual(0.95);
      // order-blind: a clip and its reversed twin (the same sampled frames) get the same answer,
      // so on each pair it is right at most once: chance, whatever it learned
      expect(gap.twinGap).toBeLessThan(1e-3);
      expect(def.twinGap).toBeGreaterThan(0.5);
    }, 240_000);
  }
});

describe('train → register → label NAME → eval --report', () => {
  it('registers, resolves NAME, records the unknown threshold, and writes a report with contact sheets', async () => {
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: CACHE, FRAMEWISE_MODELS_DIR: join(dir, 'models') });
    // the order-blind baseline makes mistakes, which the report must picture
    const r = await runTraining({ config, manifest: tasks.order.train, register: 'zoom', head: { cell: 'mean', temporalDiff: 'none' }, runtime: { featureKind: 'pooled' }, streams: ['rgb'], training: { seed: 1 } });
    expect(r.registered).toMatchObject({ name: 'zoom', promoted: true });
    expect(r.modelDir).toBe(join(dir, 'models', 'zoom', r.version));
    const meta = JSON.parse(await readFile(join(r.modelDir, 'metadata.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ id: 'zoom', version: r.version, head: { cell: 'mean' }, training: { manifestSha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(typeof meta.unknownThreshold).toBe('number');
    expect(await readdir(r.modelDir)).toEqual(expect.arrayContaining(['model.json', 'weights.bin', 'metadata.json', 'report.json', 'report.html']));

    const ev = await runEvaluation({ config, model: 'zoom', manifest: tasks.order.test, reportDir: join(dir, 'report'), baseline: true });
    expect(ev.modelDir).toBe(r.modelDir);
    expect(ev.reportDirs).toHaveLength(2); // --report and the model version's reports/
    expect(ev.report.baseline).toMatchObject({ head: 'mean', trainSource: join(tasks.order.train) });
    expect(ev.report.hardestMistakes.length).toBeGreaterThan(0);
    const sheets = await readdir(join(dir, 'report', 'mistakes'));
    expect(sheets.length).toBe(Math.min(8, ev.report.hardestMistakes.length));
    const jpeg = await readFile(join(dir, 'report', 'mistakes', sheets[0] as string));
    expect(jpeg.subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
    const html = await readFile(join(dir, 'report', 'report.html'), 'utf8');
    expect(html).toContain('data:image/jpeg;base64,');
    expect(html).toContain('<svg');
    expect(ev.report.hardestMistakes[0]?.times).toHaveLength(16);

    // label --model NAME: every success carries the threshold; a threshold of 1 makes every answer unknown
    process.env.FRAMEWISE_CACHE_DIR = CACHE;
    process.env.FRAMEWISE_MODELS_DIR = join(dir, 'models');
    process.env.FRAMEWISE_LOG_LEVEL = 'warn';
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString()));
    const code = await main(['node', 'framewise', 'label', join(dir, 'order', 'test', 'zoom_in-0.mp4'), '--model', 'zoom', '--json'], { stdout: out, stderr: new PassThrough() });
    expect(code).toBe(0);
    const res = JSON.parse(text.trim()) as Record<string, unknown>;
    expect(res).toMatchObject({ ok: true, model: { id: 'zoom', version: r.version }, thresholds: { unknown: meta.unknownThreshold }, topK: expect.any(Array) });

    // a copy of the model with threshold 1 (a directory wins over the registry): the answer is unknown, top-k still listed
    const forced = join(dir, 'forced');
    await mkdir(forced);
    for (const f of ['model.json', 'weights.bin']) await copyFile(join(r.modelDir, f), join(forced, f));
    await writeFile(join(forced, 'metadata.json'), JSON.stringify({ ...meta, unknownThreshold: 1 }));
    text = '';
    expect(await main(['node', 'framewise', 'label', join(dir, 'order', 'test', 'zoom_in-0.mp4'), '--model', forced, '--json'], { stdout: out, stderr: new PassThrough() })).toBe(0);
    const unknown = JSON.parse(text.trim()) as { label: string; topK: Array<{ label: string }>; thresholds: unknown };
    expect(unknown.label).toBe('unknown');
    expect(unknown.topK.map((t) => t.label).sort()).toEqual(['zoom_in', 'zoom_out']);
    expect(unknown.thresholds).toEqual({ unknown: 1 });
  }, 240_000);
});
