/**
 * The temporal head on synthetic feature sequences (a tiny real training run, no video).
 * Task: the same frames forwards or backwards. Each example drifts along a shared direction u
 * (like a zoom or a pan would move an embedding) from a random base; the class is the
 * direction of time. The mean over time is the same for both classes, so the order-blind
 * mean-pooling baseline stays near chance while the LSTM must separate them.
 */
import { describe, expect, it, afterAll } from 'vitest';
import { computeNormalization, fitNormalization, TemporalHead, type SequenceExample } from '../../src/ml/head.js';
import { createRng } from '../../src/ml/split.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

const T = 12;
const DIM = 24;

function makeSet(n: number, seed: number): { examples: SequenceExample[]; labels: number[] } {
  const rng = createRng(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(rng() + 1e-12)) * Math.cos(2 * Math.PI * rng());
  const u = Float32Array.from({ length: DIM }, (_, d) => (d % 3 === 0 ? 1 : -0.5));
  const examples: SequenceExample[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const backwards = i % 2;
    const base = Float32Array.from({ length: DIM }, () => gauss());
    const count = T - (i % 4); // some clips shorter than T: padded and masked
    const data = new Float32Array(count * DIM);
    for (let t = 0; t < count; t++) {
      const s = count === 1 ? 0 : t / (count - 1);
      const p = backwards ? 1 - s : s;
      for (let d = 0; d < DIM; d++) data[t * DIM + d] = (base[d] as number) + 2 * p * (u[d] as number) + 0.1 * gauss();
    }
    examples.push({ data, count });
    labels.push(backwards);
  }
  return { examples, labels };
}

const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: DIM, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };

async function trainAndScore(cell: 'lstm' | 'mean', train: ReturnType<typeof makeSet>, test: ReturnType<typeof makeSet>): Promise<{ acc: number; head: TemporalHead }> {
  const head = await TemporalHead.create({
    labels: ['forwards', 'backwards'],
    backbone,
    sampling,
    sequenceLength: T,
    head: { cell, units: 16, projection: 0, dropout: 0, temporalDiff: 'none', bidirectional: false },
    seed: 3,
    normalization: computeNormalization(train.examples, DIM),
  });
  await head.train(train, undefined, { epochs: cell === 'mean' ? 60 : 40, batchSize: 32, learningRate: 0.01, seed: 3 });
  const probs = await head.predict(test.examples);
  const acc = probs.filter((p, i) => (p[1]! > p[0]! ? 1 : 0) === test.labels[i]).length / probs.length;
  return { acc, head };
}

let dir: string | undefined;
afterAll(async () => {
  if (dir) await removeDir(dir);
});

describe('temporal head', () => {
  const train = makeSet(240, 1);
  const test = makeSet(80, 2);

  it('the LSTM separates forwards from backwards; the mean-pooling baseline cannot', async () => {
    const lstm = await trainAndScore('lstm', train, test);
    const mean = await trainAndScore('mean', train, test);
    expect(lstm.acc).toBeGreaterThanOrEqual(0.95);
    expect(mean.acc).toBeLessThan(0.7);
    lstm.head.dispose();
    mean.head.dispose();
  });

  it('predicts without leaking tensors, and save → load gives the same predictions', async () => {
    const small = makeSet(40, 5);
    const head = await TemporalHead.create({ labels: ['forwards', 'backwards'], backbone, sampling, sequenceLength: T, head: { units: 8 }, normalization: fitNormalization(small.examples, DIM, { units: 8 }) });
    await head.train(small, makeSet(10, 6), { epochs: 3 });
    const before = tf.memory().numTensors;
    const p1 = await head.predict(small.examples);
    await head.predict(small.examples);
    expect(tf.memory().numTensors).toBe(before);
    dir = await makeTempDir();
    await head.save(dir);
    const loaded = await TemporalHead.load(dir, backbone);
    const p2 = await loaded.predict(small.examples);
    p1.forEach((row, i) => row.forEach((v, k) => expect(p2[i]![k]).toBeCloseTo(v, 5)));
    expect(loaded.metadata.version).toBe(head.metadata.version);
    expect(loaded.metadata.training).toMatchObject({ epochsRun: 3 });
    head.dispose();
    loaded.dispose();
  });

  it('refuses a head trained on another backbone, naming both', async () => {
    await expect(TemporalHead.load(dir as string, { id: 'mobilenet_v2', dim: 1280, featureKind: 'pooled' })).rejects.toMatchObject({
      code: 'FW_ERR_MODEL_MISMATCH',
      message: expect.stringMatching(/mobilenet_v2_mid.*mobilenet_v2 \(pooled, 1280-d\)/),
    });
    await expect(TemporalHead.load('/nonexistent/model')).rejects.toMatchObject({ code: 'FW_ERR_MODEL_NOT_FOUND' });
  });
});
