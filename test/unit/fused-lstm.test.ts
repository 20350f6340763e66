/**
 * The fused LSTM computes what tf.layers.lstm (and its bidirectional concat wrapper) computes: with
 * the same weights, the same outputs (last state and every step) and the same gradients, on padded
 * and masked sequences; it leaks no tensors and survives save → load. The cheaper masking layer
 * gives the same mask and output as tf.layers.masking.
 */
import { describe, expect, it } from 'vitest';
import { FusedLstm } from '../../src/ml/fused-lstm.js';
import { SequenceMasking } from '../../src/ml/sequence-masking.js';
import { initTfjs, tf } from '../../src/ml/tfjs-runtime.js';
import { installWasmMatMulFix } from '../../src/ml/tfjs-wasm-matmul.js';
import { installWasmSliceFix } from '../../src/ml/tfjs-wasm-slice.js';

const T = 7;
const IN = 6;
const UNITS = 5;
/** Real frames per sequence, then zero padding; one sequence has a zero frame in the middle, one has none at all. */
const LENGTHS = [7, 4, 1, 6, 0, 3];
const HOLE = { sequence: 3, step: 2 };

async function setUp(): Promise<void> {
  await initTfjs('auto');
  // as the head installs them: the layer must be exact with them too
  installWasmMatMulFix();
  installWasmSliceFix();
}

/** Random features, zero after each sequence's length and at the hole. */
function paddedInput(seed: number): tf.Tensor3D {
  return tf.tidy(() => {
    const x = tf.randomNormal([LENGTHS.length, T, IN], 0, 1, 'float32', seed);
    const keep = tf.buffer([LENGTHS.length, T, 1]);
    LENGTHS.forEach((len, b) => {
      for (let t = 0; t < len; t++) keep.set(1, b, t, 0);
    });
    keep.set(0, HOLE.sequence, HOLE.step, 0);
    return tf.mul(x, keep.toTensor()) as tf.Tensor3D;
  });
}

interface Pair {
  reference: tf.LayersModel;
  fused: tf.LayersModel;
}

/**
 * Masking → dense projection → recurrent layer(s), once with tf.layers and once fused, with the
 * same (randomised) weights. `layers` > 1 stacks them (returnSequences between).
 */
function buildPair(opts: { bidirectional: boolean; returnSequences: boolean; layers?: number; fusedMasking?: boolean }): Pair {
  const layers = opts.layers ?? 1;
  const build = (fused: boolean): tf.LayersModel => {
    const input = tf.input({ shape: [T, IN] });
    let x = (fused && opts.fusedMasking ? new SequenceMasking() : tf.layers.masking({ maskValue: 0 })).apply(input) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 4, kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tf.SymbolicTensor;
    for (let i = 0; i < layers; i++) {
      const returnSequences = i < layers - 1 || opts.returnSequences;
      if (fused) {
        x = new FusedLstm({ units: UNITS, bidirectional: opts.bidirectional, returnSequences, kernelSeed: 5 + i, recurrentSeed: 6 + i }).apply(x) as tf.SymbolicTensor;
      } else {
        const cell = tf.layers.lstm({ units: UNITS, returnSequences, kernelInitializer: tf.initializers.glorotUniform({ seed: 5 + i }), recurrentInitializer: tf.initializers.orthogonal({ seed: 6 + i }) });
        x = (opts.bidirectional ? tf.layers.bidirectional({ layer: cell, mergeMode: 'concat' }) : cell).apply(x) as tf.SymbolicTensor;
      }
    }
    return tf.model({ inputs: input, outputs: x });
  };
  return { reference: build(false), fused: build(true) };
}

/** Perturb the reference's weights (so biases are non-zero) and copy them into the fused model. */
function shareWeights(pair: Pair, seed: number): void {
  const weights = tf.tidy(() => pair.reference.getWeights().map((w, i) => tf.add(w, tf.randomNormal(w.shape, 0, 0.3, 'float32', seed + i))));
  pair.reference.setWeights(weights);
  pair.fused.setWeights(weights);
  tf.dispose(weights);
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/** Gradients of Σ output ⊙ r (a fixed random r) w.r.t. every trainable weight, in the models' weight order. */
function weightGrads(model: tf.LayersModel, x: tf.Tensor, r: tf.Tensor): tf.Tensor[] {
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x) as tf.Tensor, r)) as tf.Scalar, vars);
  value.dispose();
  return vars.map((v) => grads[v.name] as tf.Tensor);
}

describe('fused LSTM', () => {
  const cases = [
    { bidirectional: false, returnSequences: false },
    { bidirectional: false, returnSequences: true },
    { bidirectional: true, returnSequences: false },
    { bidirectional: true, returnSequences: true },
    { bidirectional: true, returnSequences: false, layers: 2 },
  ];

  for (const c of cases) {
    it(`matches tf.layers: ${c.bidirectional ? 'bidirectional' : 'forward'}, ${c.returnSequences ? 'every step' : 'last state'}${c.layers ? `, ${c.layers} layers` : ''} (outputs, gradients)`, async () => {
      await setUp();
      const pair = buildPair(c);
      // the same initial weights for the same seeds (so seeded training starts where it did)
      const w0 = pair.reference.getWeights(); // the variables' own tensors: not to be disposed
      pair.fused.getWeights().forEach((w, i) => expect(maxAbsDiff(w, w0[i] as tf.Tensor)).toBe(0));
      shareWeights(pair, 11);
      const x = paddedInput(3);
      const want = pair.reference.predict(x) as tf.Tensor;
      const got = pair.fused.predict(x) as tf.Tensor;
      expect(got.shape).toEqual(want.shape);
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
      if (c.returnSequences) {
        // Keras semantics on padding: forward copies the last real state, backward outputs 0
        const seq = (await got.array()) as number[][][];
        const len = LENGTHS[1] as number;
        for (let t = len; t < T; t++) {
          expect(seq[1]![t]!.slice(0, UNITS)).toEqual(seq[1]![len - 1]!.slice(0, UNITS));
          if (c.bidirectional) expect(seq[1]![t]!.slice(UNITS)).toEqual(new Array(UNITS).fill(0));
        }
      }
      const r = tf.randomNormal(want.shape, 0, 1, 'float32', 4);
      const gWant = weightGrads(pair.reference, x, r);
      const gGot = weightGrads(pair.fused, x, r);
      expect(gGot).toHaveLength(gWant.length);
      gGot.forEach((g, i) => {
        expect(g.shape).toEqual(gWant[i]!.shape);
        expect(maxAbsDiff(g, gWant[i]!)).toBeLessThan(1e-4);
      });
      tf.dispose([x, want, got, r, ...gWant, ...gGot]);
      pair.reference.dispose();
      pair.fused.dispose();
    });
  }

  it('leaks no tensors: predicting and taking gradients twice leaves the count unchanged', async () => {
    await setUp();
    const { reference, fused } = buildPair({ bidirectional: true, returnSequences: true });
    reference.dispose();
    const x = paddedInput(5);
    const r = tf.randomNormal([LENGTHS.length, T, 2 * UNITS], 0, 1, 'float32', 6);
    const once = (): void => {
      tf.tidy(() => (fused.predict(x) as tf.Tensor).dataSync());
      tf.dispose(weightGrads(fused, x, r));
    };
    once();
    const before = tf.memory().numTensors;
    once();
    once();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, r]);
    fused.dispose();
  });

  it('save → load (tf.io round trip) keeps the configuration and the predictions', async () => {
    await setUp();
    const pair = buildPair({ bidirectional: true, returnSequences: false, layers: 2, fusedMasking: true });
    pair.reference.dispose();
    const x = paddedInput(7);
    const before = pair.fused.predict(x) as tf.Tensor;
    let artifacts: tf.io.ModelArtifacts | undefined;
    await pair.fused.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const topology = JSON.stringify(artifacts?.modelTopology);
    expect(topology).toContain('FramewiseFusedLstm');
    expect(topology).toContain('FramewiseSequenceMasking');
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts as tf.io.ModelArtifacts));
    const fusedLayers = loaded.layers.filter((l) => l instanceof FusedLstm) as FusedLstm[];
    expect(fusedLayers.map((l) => [l.units, l.bidirectional, l.returnSequences])).toEqual([
      [UNITS, true, true],
      [UNITS, true, false],
    ]);
    const after = loaded.predict(x) as tf.Tensor;
    expect(maxAbsDiff(after, before)).toBe(0);
    tf.dispose([x, before, after]);
    pair.fused.dispose();
    loaded.dispose();
  });

  it('starts the forget gate bias at 1 with unitForgetBias (off by default, as in tf.layers.lstm)', async () => {
    await setUp();
    const input = tf.input({ shape: [T, IN] });
    const on = new FusedLstm({ units: 2, unitForgetBias: true });
    const off = new FusedLstm({ units: 2 });
    on.apply(input);
    off.apply(input);
    expect(Array.from(on.getWeights()[2]!.dataSync())).toEqual([0, 0, 1, 1, 0, 0, 0, 0]);
    expect(Array.from(off.getWeights()[2]!.dataSync())).toEqual(new Array(8).fill(0));
    on.dispose();
    off.dispose();
  });

  it('the sequence masking layer gives the mask and output of tf.layers.masking', async () => {
    await setUp();
    const x = paddedInput(9);
    const reference = tf.layers.masking({ maskValue: 0 });
    const ours = new SequenceMasking();
    const [wantMask, gotMask] = [reference.computeMask(x), ours.computeMask(x)];
    expect(await gotMask.array()).toEqual(await wantMask.array());
    const expected = LENGTHS.map((len, b) => Array.from({ length: T }, (_, t) => (t < len && !(b === HOLE.sequence && t === HOLE.step) ? 1 : 0)));
    expect(await gotMask.array()).toEqual(expected);
    const [want, got] = [reference.apply(x) as tf.Tensor, ours.apply(x) as tf.Tensor];
    expect(maxAbsDiff(got, want)).toBe(0);
    // and a whole model with it computes what the tf.layers one does
    const pair = buildPair({ bidirectional: true, returnSequences: true, fusedMasking: true });
    shareWeights(pair, 21);
    const [a, b] = [pair.reference.predict(x) as tf.Tensor, pair.fused.predict(x) as tf.Tensor];
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
    tf.dispose([x, wantMask, gotMask, want, got, a, b]);
    pair.reference.dispose();
    pair.fused.dispose();
  });
});
