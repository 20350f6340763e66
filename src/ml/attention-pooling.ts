/**
 * Masked attention pooling over the steps of a sequence (a small custom tfjs-layers layer).
 *
 * For states h_t ([batch, T, H]): score_t = v · tanh(W h_t + b); the weights are a softmax over
 * the real (unmasked) steps only — a padded step gets a weight of exactly 0 — and the output is
 * Σ_t a_t h_t ([batch, H]). The mask comes from the Masking layer through the recurrent layer
 * (which copies its last real state into padded steps, so those must not be weighted).
 *
 * Registered for serialisation, so a saved head with this layer loads with `tf.loadLayersModel`.
 */
import { tf } from './tfjs-runtime.js';

type LayerArgs = ConstructorParameters<typeof tf.layers.Layer>[0];
type LayerVariable = ReturnType<tf.layers.Layer['addWeight']>;
type Kwargs = Record<string, unknown>;

export interface AttentionPoolingArgs extends NonNullable<LayerArgs> {
  /** Size of the hidden scoring layer (W is H × units). */
  units?: number;
  seed?: number;
}

/**
 * The attention weights for `states` [B, T, H] under `mask` [B, T] (1 = real step, 0 = padding;
 * undefined = every step real), given the scoring parameters. Exported for tests.
 */
export function maskedAttentionWeights(states: tf.Tensor, mask: tf.Tensor | undefined, w: tf.Tensor, b: tf.Tensor, v: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const [batch, steps, size] = states.shape as [number, number, number];
    const hidden = tf.tanh(tf.add(tf.matMul(tf.reshape(states, [batch * steps, size]), w), b));
    const scores = tf.reshape(tf.matMul(hidden, v), [batch, steps]);
    if (!mask) return tf.softmax(scores, -1) as tf.Tensor2D;
    const m = tf.cast(mask, 'float32');
    // a large negative score on padded steps, then exact zeros by multiplying with the mask
    const masked = tf.add(scores, tf.mul(tf.sub(1, m), -1e9));
    const shifted = tf.sub(masked, tf.max(masked, -1, true));
    const e = tf.mul(tf.exp(shifted), m);
    return tf.div(e, tf.add(tf.sum(e, -1, true), 1e-12)) as tf.Tensor2D;
  });
}

export class MaskedAttentionPooling extends tf.layers.Layer {
  static readonly className = 'FramewiseMaskedAttentionPooling';
  private readonly units: number;
  private readonly seed: number;
  private w: LayerVariable | undefined;
  private b: LayerVariable | undefined;
  private v: LayerVariable | undefined;

  constructor(args: AttentionPoolingArgs = {}) {
    const { units, seed, ...base } = args;
    super(base);
    this.units = units ?? 32;
    this.seed = seed ?? 1;
    this.supportsMasking = true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const size = shape[shape.length - 1] as number;
    this.w = this.addWeight('w', [size, this.units], 'float32', tf.initializers.glorotUniform({ seed: this.seed }));
    this.b = this.addWeight('b', [this.units], 'float32', tf.initializers.zeros());
    this.v = this.addWeight('v', [this.units, 1], 'float32', tf.initializers.glorotUniform({ seed: this.seed + 1 }));
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0] ?? null, shape[shape.length - 1] ?? null];
  }

  /** The output has no time axis: no mask goes on. */
  override computeMask(): tf.Tensor {
    // tfjs-layers types say Tensor, but null is what "no mask" means to its executor
    return null as unknown as tf.Tensor;
  }

  /** Attention weights [B, T] for states [B, T, H] (for inspection and tests). */
  attentionWeights(states: tf.Tensor, mask?: tf.Tensor): tf.Tensor2D {
    if (!this.w || !this.b || !this.v) throw new Error('MaskedAttentionPooling: not built');
    return maskedAttentionWeights(states, mask, this.w.read(), this.b.read(), this.v.read());
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const states = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
      const rawMask = kwargs.mask as tf.Tensor | tf.Tensor[] | undefined;
      const mask = Array.isArray(rawMask) ? rawMask[0] : rawMask;
      const a = this.attentionWeights(states, mask ?? undefined);
      return tf.sum(tf.mul(states, tf.expandDims(a, -1)), 1);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), units: this.units, seed: this.seed };
  }
}

tf.serialization.registerClass(MaskedAttentionPooling);
