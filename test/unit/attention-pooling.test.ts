/**
 * Attention pooling over the recurrent states respects the mask: padded steps get exactly zero
 * weight, real steps share all of it; a head with it trains, saves and loads.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { maskedAttentionWeights } from '../../src/ml/attention-pooling.js';
import { fitNormalization, TemporalHead, type SequenceExample } from '../../src/ml/head.js';
import { createRng } from '../../src/ml/split.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const T = 8;
const DIM = 6;
const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: DIM, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };

function examples(n: number, seed: number): { examples: SequenceExample[]; labels: number[] } {
  const rng = createRng(seed);
  const out: SequenceExample[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const count = 2 + (i % (T - 1)); // 2..T frames: most are padded
    const y = i % 2;
    out.push({ data: Float32Array.from({ length: count * DIM }, (_, k) => rng() + (k % DIM === 0 ? y : 0)), count });
    labels.push(y);
  }
  return { examples: out, labels };
}

let dir: string | undefined;
afterAll(async () => {
  if (dir) await removeDir(dir);
});

describe('masked attention pooling', () => {
  it('gives padded steps exactly zero weight and the real steps a distribution', () => {
    const states = tf.randomNormal([3, 5, 4], 0, 1, 'float32', 1);
    const mask = tf.tensor2d([
      [1, 1, 1, 0, 0],
      [1, 0, 0, 0, 0],
      [1, 1, 1, 1, 1],
    ]);
    const w = tf.randomNormal([4, 3], 0, 1, 'float32', 2);
    const b = tf.zeros([3]);
    const v = tf.randomNormal([3, 1], 0, 1, 'float32', 3);
    // a huge value in a padded step must not matter
    const spiked = tf.tidy(() => tf.add(states, tf.mul(tf.oneHot(tf.tensor1d([4, 4, 0], 'int32'), 5).expandDims(-1), 1e4)));
    const a = maskedAttentionWeights(spiked, mask, w, b, v).arraySync();
    expect(a[0]!.slice(3)).toEqual([0, 0]);
    expect(a[1]!.slice(1)).toEqual([0, 0, 0, 0]);
    expect(a[1]![0]).toBeCloseTo(1, 6);
    for (const row of a) expect(row.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 5);
    tf.dispose([states, mask, w, b, v, spiked]);
  });

  it('a head with attention pooling: zero weight on padding, trains, and save → load keeps predictions', async () => {
    const data = examples(40, 1);
    const head = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head: { pooling: 'attention', units: 8, projection: 8, temporalDiff: 'none' }, normalization: fitNormalization(data.examples, DIM, { temporalDiff: 'none' }) });
    await head.train(data, undefined, { epochs: 3, batchSize: 8 });
    const weights = await head.attentionWeights(data.examples.slice(0, 6));
    weights.forEach((row, i) => {
      const count = data.examples[i]!.count;
      expect(row).toHaveLength(T);
      expect(row.slice(count).every((x) => x === 0)).toBe(true);
      expect(row.slice(0, count).every((x) => x > 0)).toBe(true);
      expect(row.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 5);
    });
    const before = tf.memory().numTensors;
    const p1 = await head.predict(data.examples);
    expect(tf.memory().numTensors).toBe(before);
    dir = await makeTempDir();
    await head.save(dir);
    const loaded = await TemporalHead.load(dir, backbone);
    expect(loaded.metadata.head).toMatchObject({ pooling: 'attention' });
    const p2 = await loaded.predict(data.examples);
    p1.forEach((row, i) => row.forEach((x, k) => expect(p2[i]![k]).toBeCloseTo(x, 5)));
    head.dispose();
    loaded.dispose();
  });
});
