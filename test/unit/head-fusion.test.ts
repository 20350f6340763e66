/**
 * Heads over several per-frame streams (tiny real training runs on synthetic sequences): early
 * and late fusion learn a task that needs two streams, survive save → load with the same
 * predictions, ignore a keypoint stream's values where it saw nothing, and a head over rgb alone
 * is the same model as before streams existed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { combineSequences, inputSpans, selectStreams, transformLayout, type StreamLayout } from '../../src/ml/stream-layout.js';
import { fitNormalization, TemporalHead, type HeadOptions, type SequenceExample } from '../../src/ml/head.js';
import { createRng } from '../../src/ml/split.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import type { FeatureSequence } from '../../src/features/feature-store.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { binaryAccuracy, rowsDigest } from '../helpers/head-checks.js';

const T = 8;
const A = 6; // an appearance stream
const K = 4; // a keypoint stream (masked)
const layout: StreamLayout = [
  { id: 'rgb', version: 'test-rgb', dim: A, masked: false },
  { id: 'pose', version: 'test-pose', dim: K, masked: true },
];

/**
 * Class = (sign of stream A's level) XOR (direction of the keypoint stream's drift): neither
 * stream alone tells the classes apart. Every 5th frame the keypoint stream saw nothing.
 */
function makeSet(n: number, seed: number): { examples: SequenceExample[]; labels: number[]; seqs: FeatureSequence[][] } {
  const rng = createRng(seed);
  const examples: SequenceExample[] = [];
  const labels: number[] = [];
  const all: FeatureSequence[][] = [];
  for (let i = 0; i < n; i++) {
    const level = rng() < 0.5 ? -1 : 1;
    const dir = rng() < 0.5 ? -1 : 1;
    const a = new Float32Array(T * A);
    const k = new Float32Array(T * K);
    const present = new Uint8Array(T);
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < A; d++) a[t * A + d] = level + 0.3 * (rng() - 0.5);
      present[t] = (t + i) % 5 === 0 ? 0 : 1;
      if (present[t]) for (let d = 0; d < K; d++) k[t * K + d] = 0.5 + (dir * (t - T / 2)) / T + 0.05 * (rng() - 0.5);
    }
    const seq = (data: Float32Array, dim: number, p?: Uint8Array): FeatureSequence => ({ key: { contentHash: 'x', backboneId: 'b', backboneVersion: 'v', featureKind: 'pooled', sampling: 's' }, count: T, dim, times: [], data, video: { durationSec: 1, width: 1, height: 1, fps: 1 }, ...(p ? { present: p } : {}) });
    const seqs = [seq(a, A), seq(k, K, present)];
    all.push(seqs);
    examples.push(combineSequences(seqs, layout));
    labels.push(level > 0 !== dir > 0 ? 1 : 0);
  }
  return { examples, labels, seqs: all };
}

const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: A, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };
const train = makeSet(160, 1);
const test = makeSet(60, 2);
const small: Partial<HeadOptions> = { units: 16, projection: 16, bidirectional: false, temporalDiff: 'none', dropout: 0.1 };

async function trainFused(head: Partial<HeadOptions>, streams: StreamLayout, data = train): Promise<TemporalHead> {
  const h = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head, seed: 5, streams, normalization: fitNormalization(data.examples, A, head, streams) });
  await h.train(data, undefined, { epochs: 25, batchSize: 16, learningRate: 0.01, seed: 5 });
  return h;
}


const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

describe('stream layout', () => {
  it('a keypoint stream gets positions, velocities (zero where either frame saw nothing) and its presence value; rgb its own block', () => {
    const two: StreamLayout = [
      { id: 'rgb', version: 'a', dim: 2, masked: false },
      { id: 'pose', version: 'b', dim: 2, masked: true },
    ];
    const seq = (data: number[], dim: number, present?: number[]): FeatureSequence => ({ key: { contentHash: 'x', backboneId: 'b', backboneVersion: 'v', featureKind: 'pooled', sampling: 's' }, count: 3, dim, times: [], data: Float32Array.from(data), video: { durationSec: 1, width: 1, height: 1, fps: 1 }, ...(present ? { present: Uint8Array.from(present) } : {}) });
    const raw = combineSequences([seq([1, 2, 3, 4, 5, 6], 2), seq([7, 8, 0, 0, 9, 10], 2, [1, 0, 1])], two);
    expect(Array.from(raw.data)).toEqual([1, 2, 7, 8, 1, 3, 4, 0, 0, 0, 5, 6, 9, 10, 1]);
    expect(inputSpans(two, 'only')).toEqual([
      { id: 'rgb', offset: 0, width: 2 },
      { id: 'pose', offset: 2, width: 5, maskAt: 6 },
    ]);
    const x = transformLayout(raw, two, 'only');
    expect(Array.from(x.data)).toEqual([0, 0, 7, 8, 0, 0, 1, 2, 2, 0, 0, 0, 0, 0, 2, 2, 9, 10, 0, 0, 1]);
  });
});

describe('fused heads', () => {
  for (const fusion of ['early', 'late'] as const) {
    it(`${fusion} fusion learns a task that needs both streams; save → load gives the same predictions, no tensor leaks`, async () => {
      const head = await trainFused({ ...small, fusion }, layout);
      const p1 = await head.predict(test.examples);
      if (fusion === 'early') expect(binaryAccuracy(p1, test.labels)).toBeGreaterThanOrEqual(0.9);
      else expect(binaryAccuracy(p1, test.labels)).toBeGreaterThan(0); // late fusion averages per-stream heads: an XOR of streams is beyond it
      const before = tf.memory().numTensors;
      await head.predict(test.examples);
      expect(tf.memory().numTensors).toBe(before);
      const dir = await makeTempDir();
      dirs.push(dir);
      await head.save(dir);
      const loaded = await TemporalHead.load(dir, backbone);
      expect(loaded.metadata.streams).toEqual(layout);
      expect(loaded.metadata.head.fusion).toBe(fusion);
      const p2 = await loaded.predict(test.examples);
      expect(rowsDigest(p2)).toBe(rowsDigest(p1));
      head.dispose();
      loaded.dispose();
    });
  }

  it('a keypoint stream where it saw nothing does not count: other values there change nothing', async () => {
    const head = await trainFused(small, layout);
    const p1 = await head.predict(test.examples);
    // write noise into the keypoint vectors of frames marked "nothing seen"
    const noisy = test.seqs.map((seqs) => {
      const k = seqs[1] as FeatureSequence;
      const data = Float32Array.from(k.data, (v, j) => ((k.present as Uint8Array)[Math.floor(j / K)] ? v : 3 + j));
      return combineSequences([seqs[0] as FeatureSequence, { ...k, data }], layout);
    });
    const p2 = await head.predict(noisy);
    expect(rowsDigest(p2)).toBe(rowsDigest(p1));
    head.dispose();
  });

  it('one stream alone: the appearance stream gives the plain head, the keypoint stream a masked one', async () => {
    const rgbOnly = selectStreams(train.examples, layout, ['rgb']);
    expect(rgbOnly.layout).toEqual([layout[0]]);
    const opts = { ...small, dropout: 0 };
    const withStreams = await trainFused(opts, rgbOnly.layout, { ...train, examples: rgbOnly.examples });
    const plain = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head: opts, seed: 5, normalization: fitNormalization(rgbOnly.examples, A, opts) });
    await plain.train({ examples: rgbOnly.examples, labels: train.labels }, undefined, { epochs: 25, batchSize: 16, learningRate: 0.01, seed: 5 });
    const testRgb = selectStreams(test.examples, layout, ['rgb']).examples;
    expect(rowsDigest(await withStreams.predict(testRgb))).toBe(rowsDigest(await plain.predict(testRgb)));
    expect(withStreams.inputDim).toBe(A);
    const pose = selectStreams(train.examples, layout, ['pose']);
    const poseHead = await trainFused(opts, pose.layout, { ...train, examples: pose.examples });
    expect(poseHead.inputDim).toBe(2 * K + 1); // positions, velocities, presence
    withStreams.dispose();
    plain.dispose();
    poseHead.dispose();
  });
});
