/**
 * A fused LSTM layer: exactly what `tf.layers.lstm` computes with tfjs' defaults (tanh
 * activation, hard-sigmoid gates, gate order i, f, c, o), and what
 * `tf.layers.bidirectional({ layer: lstm, mergeMode: 'concat' })` computes around it, in far fewer
 * kernels.
 *
 * Why: tfjs-layers runs an RNN as ~95 small kernels per cell and time step (forward and backward),
 * and on the `wasm` backend the per-kernel overhead, not the arithmetic, is what training costs
 * (docs/training.md). Here:
 * - x·W + b for every time step is one matrix product per direction, before the time loop;
 * - the hard sigmoid's 0.2·z + 0.5 is folded into that product's result and into the recurrent
 *   kernel once per call, so a step is h·U + precomputed row, one split, one clip (the three
 *   sigmoid gates), one tanh (the candidate), the cell and state updates; both directions share
 *   these elementwise kernels (~20 per step for the pair);
 * - the gradient is hand-written (back-propagation through time, `tf.customGrad`): ~15 kernels per
 *   step, with everything that does not depend on the recurrence (gate derivatives, dW, dU, db,
 *   dx) computed for all steps at once;
 * - the loops call kernels straight through the engine (below).
 * The default head's training step went from ~6,200 kernels to ~900 (docs/training.md).
 *
 * Masking follows tfjs/Keras: on a masked step the state (h, c) stays unchanged and the step's
 * output is the previous output. The backward direction runs over the reversed sequence, so with
 * padding after the real frames it starts from zeros and first sees the last real frame; its
 * per-step outputs are reversed back into time order (padded steps output 0). For c the masked step
 * is made exact by pushing the input gate's pre-activation to −1e9 and the forget gate's to +1e9
 * (the hard sigmoid then gives exactly 0 and 1, so c = 1·c + 0·g = c, and no gradient flows into
 * those gates); h is selected with the mask.
 *
 * Weights are stored like tfjs-layers stores them (per direction: kernel [in, 4u],
 * recurrent_kernel [u, 4u], bias [4u]; forward then backward), so `setWeights` takes the weights of a
 * `tf.layers.lstm` / bidirectional LSTM unchanged, and the initial weights for the same seeds are the
 * same as theirs (the bidirectional wrapper builds its backward layer from the forward layer's
 * config, seeds included, so both directions start from the same values; so do they here).
 *
 * Registered for serialisation, so a saved head with this layer loads with `tf.loadLayersModel`.
 */
import { tf } from './tfjs-runtime.js';

type LayerArgs = ConstructorParameters<typeof tf.layers.Layer>[0];
type LayerVariable = ReturnType<tf.layers.Layer['addWeight']>;
type Kwargs = Record<string, unknown>;

/** One direction's weights, in tfjs-layers' layout (gates i, f, c, o along the last axis). */
export interface LstmWeights {
  kernel: tf.Tensor;
  recurrentKernel: tf.Tensor;
  bias: tf.Tensor;
}

export interface FusedLstmArgs extends NonNullable<LayerArgs> {
  units: number;
  /**
   * Run a second LSTM over the reversed sequence and concatenate its outputs after the forward
   * ones (`tf.layers.bidirectional`, mergeMode `concat`).
   * @defaultValue false
   */
  bidirectional?: boolean;
  /**
   * Output every step's state ([batch, T, units × directions]) instead of the last one.
   * @defaultValue false
   */
  returnSequences?: boolean;
  /**
   * Initialise the forget gate's bias to 1 (Keras' default). tfjs-layers' LSTM leaves it off.
   * @defaultValue false
   */
  unitForgetBias?: boolean;
  /** Seed of the kernel's Glorot-uniform initializer (random when absent). */
  kernelSeed?: number | null;
  /** Seed of the recurrent kernel's orthogonal initializer (random when absent). */
  recurrentSeed?: number | null;
}

type RunKernelArgs = Parameters<ReturnType<typeof tf.engine>['runKernel']>;

/**
 * The kernels of the time loops, called straight through the engine. The `tf.*` op wrappers add
 * input conversion, checks and a scope per call: on wasm ~23 µs on top of a ~8 µs small kernel
 * (a `tf.where` also clones its three inputs), and the loops run ~35 kernels per step. Inputs here
 * are float32 tensors of compatible shapes (bool for a condition); values are the same as the ops'.
 */
function run(name: string, inputs: object, attrs: object = {}): tf.Tensor {
  return tf.engine().runKernel(name, inputs as RunKernelArgs[1], attrs as RunKernelArgs[2]);
}
const K = {
  add: (a: tf.Tensor, b: tf.Tensor): tf.Tensor => run('Add', { a, b }),
  mul: (a: tf.Tensor, b: tf.Tensor): tf.Tensor => run('Multiply', { a, b }),
  matMul: (a: tf.Tensor, b: tf.Tensor): tf.Tensor => run('BatchMatMul', { a, b }, { transposeA: false, transposeB: false }),
  tanh: (x: tf.Tensor): tf.Tensor => run('Tanh', { x }),
  /** The hard sigmoid's clip (its 0.2·z + 0.5 is folded into z). */
  clip01: (x: tf.Tensor): tf.Tensor => run('ClipByValue', { x }, { clipValueMin: 0, clipValueMax: 1 }),
  select: (condition: tf.Tensor, t: tf.Tensor, e: tf.Tensor): tf.Tensor => run('Select', { condition, t, e }),
  split: (x: tf.Tensor, numOrSizeSplits: number | number[], axis: number): tf.Tensor[] => tf.engine().runKernel('SplitV', { x }, { numOrSizeSplits, axis }),
  concat: (xs: tf.Tensor[], axis: number): tf.Tensor => run('Concat', xs, { axis }),
  reshape: (x: tf.Tensor, shape: number[]): tf.Tensor => run('Reshape', { x }, { shape }),
};

/** Pre-activation that locks a masked step's input gate shut (−) and forget gate open (+). */
const GATE_LOCK = 1e9;

/**
 * tfjs' gate order (i, f, c, o) ↔ the order used inside (i, f, o, c: the three hard-sigmoid gates
 * next to each other), along `axis` of size 4u. Swapping the last two gates is its own inverse.
 */
function swapCellAndOutputGates(t: tf.Tensor, axis: number): tf.Tensor {
  const [i, f, c, o] = tf.split(t, 4, axis) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  return tf.concat([i, f, o, c], axis);
}

/** t [T, …] with the time axis reversed (unstack + stack: the wasm Reverse kernel is slow). */
function reverseTime(t: tf.Tensor): tf.Tensor {
  return t.shape[0] === 1 ? t : tf.stack(tf.unstack(t).reverse());
}

/** For [T, B, D·w] in loop order ↔ time order: the backward direction's half reversed in time. */
function swapBackwardTime(t: tf.Tensor, dirs: number): tf.Tensor {
  if (dirs === 1) return t;
  const [fwd, bwd] = tf.split(t, 2, 2) as [tf.Tensor, tf.Tensor];
  return tf.concat([fwd, reverseTime(bwd)], 2);
}

/**
 * The LSTM (one direction, or forward + backward) over `x` [batch, T, in] under `mask` [batch, T]
 * (1/true = real step; undefined = all real). Returns the last state [batch, D·units] or, with
 * `returnSequences`, every step's [batch, T, D·units] (forward units first). Differentiable with
 * respect to `x` and every weight (a hand-written gradient).
 *
 * Inside, the time loop works on [B, D·…] tensors, columns gate-major: [i₀ i₁ f₀ f₁ o₀ o₁ c₀ c₁] for
 * directions 0 and 1, so each gate and the states are [B, D·u] = [fwd | bwd] and one elementwise
 * kernel serves both directions. The recurrent products are plain 2-D ones per direction (the wasm
 * backend's batched BatchMatMul is ~10× slower, a block-diagonal product does twice the work).
 * "Loop order": in loop step s the forward direction is at time s, the backward one at T−1−s.
 */
export function fusedLstm(x: tf.Tensor, mask: tf.Tensor | undefined, weights: readonly LstmWeights[], returnSequences: boolean): tf.Tensor {
  const D = weights.length;
  if (D !== 1 && D !== 2) throw new Error(`fusedLstm: 1 or 2 directions, got ${D}`);
  if (x.rank !== 3) throw new Error(`fusedLstm: input must be [batch, steps, features], got shape [${x.shape.join(', ')}]`);
  const [batch, steps, inDim] = x.shape as [number, number, number];
  const units = (weights[0] as LstmWeights).recurrentKernel.shape[0] as number;
  const du = D * units;
  const flatWeights = weights.flatMap((w) => [w.kernel, w.recurrentKernel, w.bias]);

  /** Per-column constants in the inner gate-major layout: scale 0.2 and shift 0.5 fold the hard sigmoid into z. */
  const gateColumns = (): { scale: tf.Tensor1D; shift: tf.Tensor1D } => {
    const scale = new Float32Array(4 * du).fill(0.2);
    const shift = new Float32Array(4 * du).fill(0.5);
    scale.fill(1, 3 * du);
    shift.fill(0, 3 * du);
    return { scale: tf.tensor1d(scale), shift: tf.tensor1d(shift) };
  };

  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [input, ...w] = args.slice(0, -1) as tf.Tensor[];
    const param = (d: number, k: number): tf.Tensor => w[3 * d + k] as tf.Tensor;
    const { scale, shift } = gateColumns();
    const kernels = Array.from({ length: D }, (_, d) => swapCellAndOutputGates(param(d, 0), 1)); // [in, 4u] (i f o c)
    // inputs in time order [T·B, in]; the backward direction reads them reversed
    const xTime = tf.transpose(input as tf.Tensor, [1, 0, 2]);
    const xs = D === 1 ? [xTime] : [xTime, reverseTime(xTime)];
    // x·W + b for every step, per direction, then gate-major [T, B, 4·D·u] in loop order
    const pre4 = xs.map((xd, d) =>
      tf.reshape(tf.fused.matMul({ a: tf.reshape(xd, [steps * batch, inDim]) as tf.Tensor2D, b: kernels[d] as tf.Tensor2D, bias: swapCellAndOutputGates(param(d, 2), 0) }), [steps, batch, 4, 1, units]),
    );
    let pre = tf.reshape(D === 1 ? (pre4[0] as tf.Tensor) : tf.concat(pre4, 3), [steps, batch, 4 * du]);
    pre = tf.add(tf.mul(pre, scale), shift);
    // recurrent kernels [u, 4u] (i f o c), scaled like z
    const gateScale = tf.slice(tf.reshape(scale, [4, D, units]), [0, 0, 0], [4, 1, units]);
    const recurrents = Array.from({ length: D }, (_, d) => tf.reshape(tf.mul(tf.reshape(swapCellAndOutputGates(param(d, 1), 1), [units, 4, 1, units]), gateScale), [units, 4 * units]));
    /** h [B, D·u] · U per direction, as gate-major [B, 4·D·u]. */
    const recurrentProduct = (h: tf.Tensor): tf.Tensor => {
      if (D === 1) return K.matMul(h, recurrents[0] as tf.Tensor);
      const parts = K.split(h, D, 1).map((hd, d) => K.reshape(K.matMul(hd, recurrents[d] as tf.Tensor), [batch, 4, 1, units]));
      return K.reshape(K.concat(parts, 2), [batch, 4 * du]);
    };

    let held: tf.Tensor | undefined; // [T, B, D·u], 1 = real step (loop order)
    if (mask) {
      const m = tf.reshape(tf.transpose(tf.cast(tf.cast(tf.reshape(mask, [batch, steps]), 'bool'), 'float32')), [steps, batch, 1]);
      const ones = tf.ones([units]);
      held = tf.concat((D === 1 ? [m] : [m, reverseTime(m)]).map((md) => tf.mul(md, ones)), 2);
      const open = tf.sub(1, held);
      pre = tf.add(pre, tf.concat([tf.mul(open, -GATE_LOCK), tf.mul(open, GATE_LOCK), tf.zeros([steps, batch, 2 * du])], 2));
    }
    const preSteps = tf.unstack(pre);
    const keepSteps = held ? tf.unstack(tf.cast(held, 'bool')) : undefined;
    const zeroState = tf.zeros([batch, du]);

    const zs: tf.Tensor[] = [];
    const ifos: tf.Tensor[] = [];
    const gs: tf.Tensor[] = [];
    const cs: tf.Tensor[] = [];
    const tcs: tf.Tensor[] = [];
    const hs: tf.Tensor[] = [];
    let h: tf.Tensor | undefined;
    let c: tf.Tensor | undefined;
    for (let s = 0; s < steps; s++) {
      const z = h ? K.add(preSteps[s] as tf.Tensor, recurrentProduct(h)) : (preSteps[s] as tf.Tensor);
      const [zSigmoid, zCell] = K.split(z, [3 * du, du], 1) as [tf.Tensor, tf.Tensor];
      const ifo = K.clip01(zSigmoid);
      const g = K.tanh(zCell);
      const [i, f, o] = K.split(ifo, 3, 1) as [tf.Tensor, tf.Tensor, tf.Tensor];
      c = c ? K.add(K.mul(f, c), K.mul(i, g)) : K.mul(i, g);
      const tc = K.tanh(c);
      const candidate = K.mul(o, tc);
      // a masked step keeps h (c is kept by the locked gates); before the first step h = 0
      if (!keepSteps) h = candidate;
      else h = K.select(keepSteps[s] as tf.Tensor, candidate, h ?? zeroState);
      zs.push(zSigmoid);
      ifos.push(ifo);
      gs.push(g);
      cs.push(c);
      tcs.push(tc);
      hs.push(h);
    }
    const last = h as tf.Tensor;
    const states = tf.stack(hs); // [T, B, D·u], loop order
    const value = returnSequences ? tf.transpose(swapBackwardTime(states, D), [1, 0, 2]) : last;
    save([...xs, ...kernels, ...recurrents, tf.stack(zs), tf.stack(ifos), tf.stack(gs), tf.stack(cs), tf.stack(tcs), states, ...(held ? [held] : [])]);

    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const xsSaved = saved.slice(0, D);
      const kernelsSaved = saved.slice(D, 2 * D);
      const recurrentsT = saved.slice(2 * D, 3 * D).map((r) => tf.transpose(r)); // [4u, u]
      const [Z, IFO, G, C, TC, H, M] = saved.slice(3 * D) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
      /** dz [B, 4·D·u] (gate-major) · Uᵀ per direction, as [B, D·u]. */
      const recurrentBack = (dz: tf.Tensor): tf.Tensor => {
        if (D === 1) return K.matMul(dz, recurrentsT[0] as tf.Tensor);
        const parts = K.split(K.reshape(dz, [batch, 4, D, units]), D, 2);
        return K.concat(parts.map((p, d) => K.matMul(K.reshape(p, [batch, 4 * units]), recurrentsT[d] as tf.Tensor)), 1);
      };
      const cols = gateColumns();
      const zeros = tf.zeros([1, batch, du]);
      const previous = (t: tf.Tensor): tf.Tensor => (steps === 1 ? zeros : tf.concat([zeros, tf.slice(t, 0, steps - 1)], 0));
      const [I, F, O] = tf.split(IFO, 3, 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
      // d act / d z: the hard sigmoid passes where 0 ≤ z ≤ 1 (tfjs' clip gradient); tanh' = 1 − g²
      const inRange = tf.cast(tf.logicalAnd(tf.greaterEqual(Z, 0), tf.lessEqual(Z, 1)), 'float32');
      const deriv = tf.concat([inRange, tf.sub(1, tf.square(G))], 2);
      // dz = [dc·g, dc·c_prev, dh·tanh(c), dc·i] ⊙ deriv (columns i f o c): the factors for every step at once
      const factors = tf.unstack(tf.mul(tf.concat([G, previous(C), TC, I], 2), deriv));
      const outFactor = tf.unstack(tf.mul(O, tf.sub(1, tf.square(TC)))); // dh → dc through h = o·tanh(c)
      const forget = tf.unstack(F);
      const maskSteps = M ? tf.unstack(M) : undefined;
      const heldSteps = M ? tf.unstack(tf.sub(1, M)) : undefined;
      const dySteps = returnSequences ? tf.unstack(swapBackwardTime(tf.transpose(dy, [1, 0, 2]), D)) : undefined;

      const dzs: tf.Tensor[] = new Array<tf.Tensor>(steps);
      let dhRec: tf.Tensor | undefined;
      let dc: tf.Tensor | undefined;
      for (let s = steps - 1; s >= 0; s--) {
        const out = dySteps ? (dySteps[s] as tf.Tensor) : s === steps - 1 ? dy : undefined;
        const dh = dhRec && out ? K.add(dhRec, out) : ((dhRec ?? out) as tf.Tensor);
        const dhCand = maskSteps ? K.mul(dh, maskSteps[s] as tf.Tensor) : dh;
        const toCell = K.mul(dhCand, outFactor[s] as tf.Tensor);
        const dcTotal = dc ? K.add(dc, toCell) : toCell;
        const dz = K.mul(K.concat([dcTotal, dcTotal, dhCand, dcTotal], 1), factors[s] as tf.Tensor);
        dzs[s] = dz;
        if (s > 0) {
          dc = K.mul(dcTotal, forget[s] as tf.Tensor);
          dhRec = recurrentBack(dz);
          if (heldSteps) dhRec = K.add(dhRec, K.mul(dh, heldSteps[s] as tf.Tensor));
        }
      }
      const DZ = tf.stack(dzs); // [T, B, 4·D·u], loop order, gate-major
      const dPre = tf.unstack(tf.reshape(tf.mul(DZ, cols.scale), [steps * batch, 4, D, units]), 2); // per direction [T·B, 4, u]
      const hPrev = tf.split(tf.reshape(previous(H), [steps * batch, du]), D, 1); // per direction [T·B, u]
      const grads: tf.Tensor[] = [];
      let dx: tf.Tensor | undefined;
      for (let d = 0; d < D; d++) {
        const dp = tf.reshape(dPre[d] as tf.Tensor, [steps * batch, 4 * units]);
        const xd = tf.reshape(xsSaved[d] as tf.Tensor, [steps * batch, inDim]);
        // dU = Σ h_prevᵀ·dz over steps and batch (dz already carries the gate scale)
        const dRec = tf.matMul(hPrev[d] as tf.Tensor, dp, true, false);
        grads.push(swapCellAndOutputGates(tf.matMul(xd, dp, true, false), 1), swapCellAndOutputGates(dRec, 1), swapCellAndOutputGates(tf.sum(dp, 0), 0));
        const dxd = tf.reshape(tf.matMul(dp, kernelsSaved[d] as tf.Tensor, false, true), [steps, batch, inDim]);
        dx = dx ? tf.add(dx, reverseTime(dxd)) : dxd;
      }
      return [tf.transpose(dx as tf.Tensor, [1, 0, 2]), ...grads];
    };
    return { value, gradFunc };
  });
  return op(x, ...flatWeights);
}

export class FusedLstm extends tf.layers.Layer {
  static readonly className = 'FramewiseFusedLstm';
  readonly units: number;
  readonly bidirectional: boolean;
  readonly returnSequences: boolean;
  private readonly unitForgetBias: boolean;
  private readonly kernelSeed: number | null;
  private readonly recurrentSeed: number | null;
  private cells: Array<{ kernel: LayerVariable; recurrentKernel: LayerVariable; bias: LayerVariable }> = [];

  constructor(args: FusedLstmArgs) {
    const { units, bidirectional, returnSequences, unitForgetBias, kernelSeed, recurrentSeed, ...base } = args;
    super(base);
    if (!Number.isInteger(units) || units < 1) throw new Error(`FusedLstm: units must be a positive integer, got ${String(units)}`);
    this.units = units;
    this.bidirectional = bidirectional ?? false;
    this.returnSequences = returnSequences ?? false;
    this.unitForgetBias = unitForgetBias ?? false;
    this.kernelSeed = kernelSeed ?? null;
    this.recurrentSeed = recurrentSeed ?? null;
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const inDim = shape[shape.length - 1] as number;
    const u = this.units;
    this.cells = (this.bidirectional ? ['forward', 'backward'] : ['forward']).map((dir) => {
      const kernel = this.addWeight(`${dir}/kernel`, [inDim, 4 * u], 'float32', tf.initializers.glorotUniform({ seed: this.kernelSeed ?? undefined }));
      const recurrentKernel = this.addWeight(`${dir}/recurrent_kernel`, [u, 4 * u], 'float32', tf.initializers.orthogonal({ seed: this.recurrentSeed ?? undefined }));
      const bias = this.addWeight(`${dir}/bias`, [4 * u], 'float32', tf.initializers.zeros());
      if (this.unitForgetBias) {
        const value = tf.tidy(() => tf.concat([tf.zeros([u]), tf.ones([u]), tf.zeros([2 * u])]));
        bias.write(value);
        value.dispose();
      }
      return { kernel, recurrentKernel, bias };
    });
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const size = this.units * (this.bidirectional ? 2 : 1);
    return this.returnSequences ? [shape[0] ?? null, shape[1] ?? null, size] : [shape[0] ?? null, size];
  }

  /** The input's mask goes on with the sequence; a last-state output has no time axis and no mask. */
  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const m = Array.isArray(mask) ? mask[0] : mask;
    // tfjs-layers types say Tensor, but null is what "no mask" means to its executor
    return (this.returnSequences ? (m ?? null) : null) as unknown as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
      const rawMask = kwargs.mask as tf.Tensor | tf.Tensor[] | null | undefined;
      const mask = (Array.isArray(rawMask) ? rawMask[0] : rawMask) ?? undefined;
      const weights = this.cells.map((cell) => ({ kernel: cell.kernel.read(), recurrentKernel: cell.recurrentKernel.read(), bias: cell.bias.read() }));
      return fusedLstm(x, mask, weights, this.returnSequences);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      units: this.units,
      bidirectional: this.bidirectional,
      returnSequences: this.returnSequences,
      unitForgetBias: this.unitForgetBias,
      kernelSeed: this.kernelSeed,
      recurrentSeed: this.recurrentSeed,
    };
  }
}

tf.serialization.registerClass(FusedLstm);
