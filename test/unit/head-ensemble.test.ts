/**
 * The `mean` summary beside the recurrent state, and ensembles of heads (tiny real training runs
 * on synthetic sequences): a summary makes the frames' levels visible to a head whose recurrent
 * layers read differences only; an ensemble predicts the average of its members, survives
 * save → load, leaks no tensors, and its members train on their own validation splits.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { memberSplit, trainEnsemble } from '../../src/jobs/ensemble.js';
import type { LabelledFeatures } from '../../src/jobs/head-training.js';
import { makeSplit } from '../../src/jobs/head-training.js';
import { fitNormalization, inputDiff, parseHeadOptions, TemporalHead, type HeadOptions, type SequenceExample } from '../../src/ml/head.js';
import { createRng } from '../../src/ml/split.js';
import type { StreamLayout } from '../../src/ml/stream-layout.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { binaryAccuracy, rowsDigest } from '../helpers/head-checks.js';

const T = 8;
const D = 6;

/**
 * Class 1 = a positive level AND an upward drift. The drift shows in the frame-to-frame
 * differences, the level only in the frames themselves: a head that reads differences alone
 * cannot tell a low upward clip from a high one.
 */
function makeSet(n: number, seed: number): { examples: SequenceExample[]; labels: number[]; up: boolean[] } {
  const rng = createRng(seed);
  const examples: SequenceExample[] = [];
  const labels: number[] = [];
  const up: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const level = rng() < 0.5 ? -1 : 1;
    const dir = rng() < 0.5 ? -1 : 1;
    const data = new Float32Array(T * D);
    for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) data[t * D + d] = level + (dir * (t - T / 2)) / T + 0.1 * (rng() - 0.5);
    examples.push({ data, count: T });
    labels.push(level > 0 && dir > 0 ? 1 : 0);
    up.push(dir > 0);
  }
  return { examples, labels, up };
}

const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: D, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };
const train = makeSet(160, 1);
const test = makeSet(80, 2);
const small: Partial<HeadOptions> = { units: 12, projection: 12, bidirectional: false, temporalDiff: 'only', dropout: 0.1 };

async function trainOne(head: Partial<HeadOptions>, seed: number, normalization = fitNormalization(train.examples, D, head)): Promise<TemporalHead> {
  const h = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head, seed, normalization });
  await h.train(train, undefined, { epochs: 30, batchSize: 16, learningRate: 0.01, seed });
  return h;
}


const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

describe('the mean summary', () => {
  it('a differences-only head reads the levels through its summary: it learns level AND drift, which the head without one cannot', async () => {
    expect(inputDiff(parseHeadOptions({ temporalDiff: 'only', summary: 'mean' }))).toBe('append');
    expect(inputDiff(parseHeadOptions({ temporalDiff: 'only', summary: 'none' }))).toBe('only');
    expect(inputDiff(parseHeadOptions({ cell: 'mean', temporalDiff: 'only' }))).toBe('only');
    const withSummary = await trainOne({ ...small, summary: 'mean' }, 3);
    const without = await trainOne({ ...small, summary: 'none' }, 3);
    const a = binaryAccuracy(await withSummary.predict(test.examples), test.labels);
    const b = binaryAccuracy(await without.predict(test.examples), test.labels);
    // a level-blind rule can do no better than "down → 0, up → the commoner class among the up clips"
    const upLabels = test.labels.filter((_, i) => test.up[i]);
    const ones = upLabels.filter((l) => l === 1).length;
    const blindBest = (test.labels.length - upLabels.length + Math.max(ones, upLabels.length - ones)) / test.labels.length;
    expect(a).toBeGreaterThanOrEqual(0.95);
    expect(b).toBeLessThanOrEqual(blindBest);
    expect(a).toBeGreaterThan(blindBest);
    withSummary.dispose();
    without.dispose();
  });
});

describe('ensembles', () => {
  it('predict the average of their members; save → load gives the same predictions; no tensor leaks', async () => {
    const head = { ...small, summary: 'mean' as const };
    const norm = fitNormalization(train.examples, D, head);
    const members = [await trainOne(head, 1, norm), await trainOne(head, 2, norm)];
    const each = await Promise.all(members.map((m) => m.predict(test.examples)));
    const ensemble = TemporalHead.combine(members, { members: 2, seeds: [1, 2] });
    const p = await ensemble.predict(test.examples);
    for (let i = 0; i < p.length; i++) for (let c = 0; c < 2; c++) expect(p[i]?.[c]).toBeCloseTo(((each[0]?.[i]?.[c] as number) + (each[1]?.[i]?.[c] as number)) / 2, 6);
    const before = tf.memory().numTensors;
    await ensemble.predict(test.examples);
    expect(tf.memory().numTensors).toBe(before);
    const dir = await makeTempDir();
    dirs.push(dir);
    await ensemble.save(dir);
    const loaded = await TemporalHead.load(dir, backbone);
    expect(loaded.metadata.ensemble).toEqual({ members: 2, seeds: [1, 2] });
    expect(rowsDigest(await loaded.predict(test.examples))).toBe(rowsDigest(p));
    const held = tf.memory().numTensors;
    loaded.dispose();
    ensemble.dispose();
    expect(tf.memory().numTensors).toBeLessThan(held);
  });

  it('of heads over several streams (named layers of the same names in each member) save and load', async () => {
    const layout: StreamLayout = [
      { id: 'rgb', version: 'a', dim: 3, masked: false },
      { id: 'motion', version: 'b', dim: 3, masked: false },
    ];
    const head: Partial<HeadOptions> = { ...small, summary: 'mean' };
    const norm = fitNormalization(train.examples, D, head, layout);
    const members: TemporalHead[] = [];
    for (const seed of [1, 2]) {
      const h = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head, seed, streams: layout, normalization: norm });
      await h.train(train, undefined, { epochs: 2, batchSize: 16, seed });
      members.push(h);
    }
    const ensemble = TemporalHead.combine(members, { members: 2, seeds: [1, 2] });
    const p = await ensemble.predict(test.examples);
    const dir = await makeTempDir();
    dirs.push(dir);
    await ensemble.save(dir);
    const loaded = await TemporalHead.load(dir, backbone);
    expect(rowsDigest(await loaded.predict(test.examples))).toBe(rowsDigest(p));
    loaded.dispose();
    ensemble.dispose();
  });

  it('refuse members that do not share their normalisation', async () => {
    const a = await trainOne(small, 1);
    const b = await trainOne(small, 2, fitNormalization(test.examples, D, small));
    expect(() => TemporalHead.combine([a, b], { members: 2, seeds: [1, 2] })).toThrow(expect.objectContaining({ code: 'FW_ERR_INTERNAL' }));
    a.dispose();
    b.dispose();
  });

  it('train each member on its own validation split (seed, seed + 1, …) and report validation rows member by member, each member\'s own split in member order', async () => {
    const items = train.examples.map((_, i) => ({ path: `c${i}.mp4`, source: `c${i}.mp4`, label: train.labels[i] ? 'b' : 'a', extra: { group: `g${Math.floor(i / 4)}` } }));
    const data: LabelledFeatures = { items, examples: train.examples, labels: items.map((it) => it.label), failed: [] };
    const val = { kind: 'group' as const, column: 'group', fraction: 0.25, seed: 7 };
    const r = await trainEnsemble({ extractor: { identity: { ...backbone, version: 'test' }, sampling: { policy: sampling.policy, geometry: { size: 224, crop: 'center' } } }, train: data, val, id: 'ens', head: small, training: { epochs: 3, seed: 7, members: 3 }, baseline: false });
    expect(r.members.map((m) => m.seed)).toEqual([7, 8, 9]);
    expect(r.head.metadata.ensemble?.members).toBe(3);
    expect(r.head.metadata.ensemble?.seeds).toEqual([7, 8, 9]);
    const splits = [7, 8, 9].map((s) => makeSplit(data, memberSplit(val, s) as typeof val).val);
    // the members validate on different rows, and the ensemble's validation is all of them, each once per member
    expect(new Set(splits.map((s) => s.join(','))).size).toBe(3);
    expect(r.validation?.items.map((it) => it.path)).toEqual(splits.flatMap((s) => s.map((i) => items[i]?.path)));
    expect(r.valMetrics?.n).toBe(r.validation?.items.length);
    // the saved ensemble records each member's validation top-1
    expect(r.members.map((m) => m.valTop1)).toEqual(r.head.metadata.ensemble?.valTop1);
    r.head.dispose();
  });
});
