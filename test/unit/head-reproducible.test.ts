/**
 * Reproducible training: the same examples, options and seed train the same weights, bit for bit,
 * on the CPU backends (dropout masks, initialisers and shuffles are all seeded); another seed
 * trains other weights. Dropout is on (the default 0.3) so that unseeded masks would show.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fitNormalization, TemporalHead, type HeadOptions, type SequenceExample } from '../../src/ml/head.js';
import { createRng } from '../../src/ml/split.js';
import { tf } from '../../src/ml/tfjs-runtime.js';

const T = 8;
const DIM = 12;

function makeSet(n: number, seed: number): { examples: SequenceExample[]; labels: number[] } {
  const rng = createRng(seed);
  const examples: SequenceExample[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const count = T - (i % 3);
    const data = Float32Array.from({ length: count * DIM }, (_, k) => rng() + (i % 2) * (k % DIM === 0 ? 0.5 : 0));
    examples.push({ data, count });
    labels.push(i % 2);
  }
  return { examples, labels };
}

const backbone = { id: 'mobilenet_v2_mid' as const, version: 'test', dim: DIM, featureKind: 'pooled' as const };
const sampling = { policy: { kind: 'uniform' as const, frames: T }, size: 224, crop: 'center' as const };
const train = makeSet(48, 1);
const val = makeSet(12, 2);

/** Train a head and return its weights (flattened, per variable) and validation probabilities. */
async function trainOnce(seed: number, head: Partial<HeadOptions>): Promise<{ weights: Float32Array[]; probs: Float32Array[] }> {
  const h = await TemporalHead.create({ labels: ['a', 'b'], backbone, sampling, sequenceLength: T, head, seed, normalization: fitNormalization(train.examples, DIM, head) });
  try {
    await h.train(train, val, { epochs: 3, batchSize: 8, seed });
    const model = (h as unknown as { model: tf.LayersModel }).model;
    const weights = model.getWeights().map((w) => w.dataSync() as Float32Array);
    return { weights, probs: await h.predict(val.examples) };
  } finally {
    h.dispose();
  }
}

/** A digest of the raw float bytes (bit-for-bit equality, short failure messages). */
const bytes = (xs: Float32Array[]): string => createHash('sha256').update(Buffer.concat(xs.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)))).digest('hex');

describe('reproducible training', () => {
  const configs: Array<[string, Partial<HeadOptions>]> = [
    ['the default head shape (fused biLSTM, projection, dropout 0.3), smaller', { units: 32 }],
    ['a GRU with attention pooling', { cell: 'gru', pooling: 'attention', bidirectional: false, units: 16 }],
    ['the mean-pooling baseline', { cell: 'mean' }],
  ];
  for (const [name, head] of configs) {
    it(`${name}: same seed → same weights and predictions bit for bit; another seed differs`, async () => {
      const a = await trainOnce(7, head);
      const b = await trainOnce(7, head);
      const c = await trainOnce(8, head);
      expect(bytes(b.weights)).toBe(bytes(a.weights));
      expect(bytes(b.probs)).toBe(bytes(a.probs));
      expect(bytes(c.weights)).not.toBe(bytes(a.weights));
    });
  }

  it('seed 0 is a seed too (tfjs reads 0 as "unseeded" for normal draws such as the orthogonal initialiser)', async () => {
    const head = { units: 8, projection: 8 };
    const a = await trainOnce(0, head);
    const b = await trainOnce(0, head);
    expect(bytes(b.weights)).toBe(bytes(a.weights));
  });
});
