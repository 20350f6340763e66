/**
 * One stream's block of a fused head's input: [batch, T, D] → [batch, T, width] (the values
 * `offset … offset + width − 1` of every step). The step mask passes through unchanged.
 *
 * Registered for serialisation, so a saved fused head loads with `tf.loadLayersModel`.
 */
import { tf } from './tfjs-runtime.js';

export interface StreamSliceArgs {
  offset: number;
  width: number;
  name?: string;
}

export class StreamSlice extends tf.layers.Layer {
  static readonly className = 'FramewiseStreamSlice';
  private readonly offset: number;
  private readonly width: number;

  constructor(args: StreamSliceArgs) {
    super(args.name !== undefined ? { name: args.name } : {});
    this.offset = args.offset;
    this.width = args.width;
    this.supportsMasking = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [...s.slice(0, -1), this.width];
  }

  override computeMask(_inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const m = Array.isArray(mask) ? mask[0] : mask;
    return m as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? (inputs[0] as tf.Tensor) : inputs;
    return tf.tidy(() => {
      const begin = x.shape.map(() => 0);
      const size = x.shape.map(() => -1);
      begin[begin.length - 1] = this.offset;
      size[size.length - 1] = this.width;
      return tf.slice(x, begin, size);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), offset: this.offset, width: this.width };
  }
}

tf.serialization.registerClass(StreamSlice);
