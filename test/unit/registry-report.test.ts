/**
 * The model registry (register, list, promote, rm, resolve) and the evaluation report
 * (report.json + a self-contained report.html with the SVG pictures and the metrics).
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { buildEvalReport, writeEvalReport } from '../../src/jobs/evaluate.js';
import { applyUnknownThreshold } from '../../src/jobs/thresholds.js';
import type { LabelSuccess } from '../../src/jobs/label.js';
import { fitNormalization, TemporalHead, type SequenceExample } from '../../src/ml/head.js';
import { computeMetrics } from '../../src/ml/metrics.js';
import { ModelRegistry, parseModelRef, promotedVersion, resolveModel } from '../../src/ml/registry.js';
import { confusionMatrixSvg, renderReportHtml } from '../../src/ml/report-render.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const T = 4;
const DIM = 3;
const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: DIM, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };
const examples: SequenceExample[] = Array.from({ length: 8 }, (_, i) => ({ data: Float32Array.from({ length: T * DIM }, (_, k) => (k + i) % 5), count: T }));

async function tinyHead(): Promise<TemporalHead> {
  return TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head: { cell: 'mean', temporalDiff: 'none' }, normalization: fitNormalization(examples, DIM, { cell: 'mean', temporalDiff: 'none' }) });
}

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('fw-registry-');
});
afterAll(() => removeDir(dir));

describe('model registry', () => {
  it('registers versions, promotes the first, lists, promotes, resolves and removes', async () => {
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: join(dir, 'cache'), FRAMEWISE_MODELS_DIR: join(dir, 'models') });
    expect(config.modelsDir).toBe(join(dir, 'models'));
    expect(loadConfig({ FRAMEWISE_CACHE_DIR: join(dir, 'cache') }).modelsDir).toBe(join(dir, 'cache', 'models'));
    const reg = ModelRegistry.fromConfig(config);
    expect(await reg.names()).toEqual([]);

    const h1 = await tinyHead();
    const v1 = await reg.register(h1, 'fights');
    expect(v1.promoted).toBe(true);
    expect(h1.metadata.id).toBe('fights');
    await new Promise((r) => setTimeout(r, 1100)); // versions are time-stamped to the second
    const h2 = await tinyHead();
    const v2 = await reg.register(h2, 'fights');
    expect(v2.promoted).toBe(false);
    expect(v2.version > v1.version).toBe(true);
    for (const f of ['model.json', 'weights.bin', 'metadata.json']) expect((await stat(join(v2.dir, f))).size).toBeGreaterThan(0);

    expect(await reg.names()).toEqual(['fights']);
    const versions = await reg.versions('fights');
    expect(versions.map((v) => [v.version, v.promoted])).toEqual([[v1.version, true], [v2.version, false]]);
    expect(await promotedVersion('fights', config)).toBe(v1.version);

    // resolve: NAME → promoted, NAME@VERSION → that one, a directory wins, errors are documented codes
    expect(await resolveModel('fights', config)).toBe(v1.dir);
    expect(await resolveModel(`fights@${v2.version}`, config)).toBe(v2.dir);
    expect(await resolveModel(v2.dir, config)).toBe(v2.dir);
    expect(await resolveModel(undefined, config)).toBe(config.modelDir);
    await expect(resolveModel('nope', config)).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });
    await expect(resolveModel('fights@20990101T000000Z-abcdef', config)).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });
    await expect(resolveModel('./missing/dir', config)).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });
    await expect(resolveModel('bad name!', config)).rejects.toMatchObject({ code: 'FW_ERR_CONFIG_INVALID' });
    expect(parseModelRef('x@1')).toEqual({ name: 'x', version: '1' });

    // a loaded registry head is the same model
    const loaded = await TemporalHead.load(await resolveModel(`fights@${v2.version}`, config), backbone);
    expect(loaded.metadata.version).toBe(v2.version);
    loaded.dispose();

    await reg.promote('fights', v2.version);
    expect(await resolveModel('fights', config)).toBe(v2.dir);
    await expect(reg.promote('fights', 'nope')).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });

    // rm: the promoted version needs force; removing the last version removes the name
    await expect(reg.remove('fights', v2.version)).rejects.toMatchObject({ code: 'FW_ERR_MODEL_CONFLICT' });
    await reg.remove('fights', v1.version);
    expect((await reg.versions('fights')).map((v) => v.version)).toEqual([v2.version]);
    expect(await reg.remove('fights', v2.version, { force: true })).toEqual({ wasPromoted: true });
    expect(await reg.names()).toEqual([]);
    await expect(resolveModel('fights', config)).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });
    h1.dispose();
    h2.dispose();
  });
});

describe('unknown outcome in label results', () => {
  it('below the threshold the label is unknown, the top-k stays, and the threshold is recorded', () => {
    const r: LabelSuccess = { path: 'a.mp4', ok: true, label: 'fight', confidence: 0.55, topK: [{ label: 'fight', p: 0.55 }, { label: 'noFight', p: 0.45 }], model: { id: 'm', version: 'v' }, backbone: { id: 'b', version: 'v', featureKind: 'pooled', engine: 'onnx', backend: 'onnx-cpu' }, sampling: { policy: 'uniform:16', size: 224, crop: 'center' }, frames: 16, durationSec: 2, cached: false };
    expect(applyUnknownThreshold(r, 0.6)).toEqual({ ...r, label: 'unknown', thresholds: { unknown: 0.6 } });
    expect(applyUnknownThreshold(r, 0.5)).toEqual({ ...r, thresholds: { unknown: 0.5 } });
    const failed = { path: 'x', ok: false as const, error: { code: 'FW_ERR_MEDIA_NOT_VIDEO', message: 'm' } };
    expect(applyUnknownThreshold(failed, 0.6)).toBe(failed);
  });
});

/** Every opened tag is closed in order (void HTML elements and self-closing SVG tags aside). */
function balanced(html: string): boolean {
  const voids = new Set(['meta', 'img', 'br', 'hr', 'link', 'input']);
  const stack: string[] = [];
  for (const m of html.replace(/<!doctype[^>]*>/i, '').matchAll(/<(\/?)([a-zA-Z][\w-]*)([^>]*?)(\/?)>/g)) {
    const [, close, name, , self] = m as unknown as [string, string, string, string, string];
    const tag = name.toLowerCase();
    if (self === '/' || voids.has(tag)) continue;
    if (close === '/') {
      if (stack.pop() !== tag) return false;
    } else stack.push(tag);
  }
  return stack.length === 0;
}

describe('evaluation report', () => {
  it('writes report.json (the eval contract plus calibration) and a self-contained report.html with SVG and the metrics', async () => {
    const probs = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.35, 0.65], [0.6, 0.4]];
    const truth = [0, 1, 1, 0, 0];
    const labels = ['fight', 'no<Fight>'];
    const metrics = computeMetrics(probs, truth, labels);
    const head = await tinyHead();
    const meta = { ...head.metadata, labels, unknownThreshold: 0.62 };
    const items = probs.map((_, i) => ({ path: `/nowhere/clip${i}.mp4`, source: `clip${i}.mp4`, extra: {} }));
    const report = buildEvalReport({ metrics, probs, truth, items, meta, failed: [], source: 'test.csv', baseline: { head: 'mean', top1: 0.4, meanClassAccuracy: 0.45, trainN: 10, trainSource: 'train.csv' } });
    expect(report.hardestMistakes.map((m) => m.path)).toEqual(['clip2.mp4', 'clip3.mp4']);
    expect(report.unknown.threshold).toBe(0.62);
    const out = join(dir, 'report');
    await mkdir(out, { recursive: true });
    await writeEvalReport([out], report, { items, sampling: { policy: sampling.policy, crop: 'center' }, tools: { ffmpegPath: 'ffmpeg', ffprobePath: 'ffprobe', maxPixels: 1e8, decodeTimeoutMs: 10_000 } });
    const json = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['top1', 'top5', 'meanClassAccuracy', 'perClass', 'confusionMatrix', 'labels', 'n', 'model', 'failed', 'calibration', 'hardestMistakes', 'baseline']) expect(json, k).toHaveProperty(k);
    expect(json.top1).toBeCloseTo(0.6, 6);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(balanced(html)).toBe(true);
    expect(html).toContain('<svg');
    expect(html).toContain('class="confusion"');
    expect(html).toContain('class="reliability"');
    expect(html).toContain('60.0 %'); // top-1
    expect(html).toContain('no&lt;Fight&gt;'); // escaped
    expect(html).toContain('mean-pooling baseline top-1');
    expect(html).not.toMatch(/<script|(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i); // self-contained, nothing fetched
    expect(balanced(confusionMatrixSvg(['a', 'b', 'c'], [[1, 2, 0], [0, 3, 1], [2, 0, 5]]))).toBe(true);
    expect(balanced(renderReportHtml({ ...report, hardestMistakes: [] }))).toBe(true);
    head.dispose();
  });
});
