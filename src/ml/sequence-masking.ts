/**
 * Marks padded steps for the layers after it: the mask `tf.layers.masking({ maskValue: 0 })`
 * computes (a step is padding when all its features are exactly 0), at a fraction of the cost.
 *
 * tfjs-layers computes a layer's mask three times per call of the model, and the Masking layer's
 * `any(notEqual(x, 0))` is a slow, scalar kernel on the wasm backend (~1.8 ms for a training
 * batch of 16 × 16 × 1792 features, ~13 % of a training step of the default head). Here the mask is
 * `max(|x|) ≠ 0` over the features (a vectorised reduction, ~0.3 ms), and the output is the input
 * unchanged: Masking multiplies each step by its mask, which leaves an all-zero step and a real
 * step as they are. (A step whose features are NaN is outside this contract: the input of a head is
 * standardised features.)
 *
 * Registered for serialisation, so a saved head with this layer loads with `tf.loadLayersModel`.
 */
import { tf } from './tfjs-runtime.js';

export class SequenceMasking extends tf.layers.Layer {
  static readonly className = 'FramewiseSequenceMasking';

  constructor(args: ConstructorParameters<typeof tf.layers.Layer>[0] = {}) {
    super(args);
    this.supportsMasking = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  /** [batch, T]: true for a step with any non-zero feature. */
  override computeMask(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    return tf.tidy(() => tf.notEqual(tf.max(tf.abs(x), -1), 0));
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    // a copy of the reference, not of the data: the model's executor may dispose what a layer returns
    return tf.clone(Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs);
  }
}

tf.serialization.registerClass(SequenceMasking);
