/**
 * Masked mean pooling over the steps of a sequence (a small custom tfjs-layers layer): for
 * x [batch, T, H] and the sequence mask [batch, T] (1 = real step), Σ_t m_t x_t / Σ_t m_t.
 * Padded steps get no weight; with no mask every step counts. Registered for serialisation.
 */
import { tf } from './tfjs-runtime.js';

type LayerArgs = ConstructorParameters<typeof tf.layers.Layer>[0];
type Kwargs = Record<string, unknown>;

/** The masked mean of `x` [B, T, H] under `mask` [B, T] (undefined: every step real). Exported for tests. */
export function maskedMean(x: tf.Tensor, mask: tf.Tensor | undefined): tf.Tensor2D {
  return tf.tidy(() => {
    if (!mask) return tf.mean(x, 1) as tf.Tensor2D;
    const m = tf.expandDims(tf.cast(mask, 'float32'), -1);
    return tf.div(tf.sum(tf.mul(x, m), 1), tf.maximum(tf.sum(m, 1), 1)) as tf.Tensor2D;
  });
}

export class MaskedMeanPooling extends tf.layers.Layer {
  static readonly className = 'FramewiseMaskedMeanPooling';

  constructor(args: NonNullable<LayerArgs> = {}) {
    super(args);
    this.supportsMasking = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [shape[0] ?? null, shape[shape.length - 1] ?? null];
  }

  /** The output has no time axis: no mask goes on. */
  override computeMask(): tf.Tensor {
    return null as unknown as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    const rawMask = kwargs.mask as tf.Tensor | tf.Tensor[] | undefined;
    const mask = Array.isArray(rawMask) ? rawMask[0] : rawMask;
    return maskedMean(x, mask ?? undefined);
  }
}

tf.serialization.registerClass(MaskedMeanPooling);
