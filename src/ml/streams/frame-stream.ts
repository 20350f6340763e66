/**
 * The contract of a per-frame keypoint stream (pose, hands): what extraction hands in (square,
 * letterboxed rgb24 frames and where the picture lies inside them) and what comes out (one
 * fixed-length vector per frame, coordinates normalised to the picture, plus a presence flag).
 * The loaders live in pose-stream.ts and hands-stream.ts; their file headers document the
 * vector layouts.
 */
export type KeypointStreamId = 'pose' | 'hands';

/** n square frames, rgb24, side `size`: the video letterboxed (aspect kept, centred, black bars). */
export interface LetterboxedFrames {
  data: Uint8Array; // count × size × size × 3
  count: number;
  size: number;
  /** Where the picture lies inside the square, in [0,1] units of the square. */
  content: { x0: number; y0: number; w: number; h: number };
}

export interface FrameStream {
  readonly id: KeypointStreamId;
  /** Model id + weights version (e.g. 'movenet-multipose@<sha256 prefix>'): part of the feature-store key. */
  readonly version: string;
  /** Side of the letterboxed square frames it wants (e.g. 256). */
  readonly inputSize: number;
  /** Length of one frame's vector. */
  readonly dim: number;
  /** Per frame: a vector (count × dim floats; coordinates normalised to the picture, not the square) and whether anything was seen (1) or not (0). Batched inside; no tensor leaks. */
  embed(frames: LetterboxedFrames): Promise<{ data: Float32Array; present: Uint8Array }>;
  dispose(): Promise<void>;
}

export interface FrameStreamOptions {
  engine?: 'onnx' | 'tfjs'; // default onnx where the model converts, else tfjs
  cacheDir: string; // for converted .onnx files (like src/ml/onnx/onnx-cache.ts)
  threads?: number;
}

/**
 * The side of the letterboxed squares each keypoint stream takes (its loaders report the same as
 * `inputSize`, checked when one is opened). Known without loading a model, so that the queue's
 * decode and classify stages can key the feature store and decode the frames.
 */
export const KEYPOINT_INPUT_SIZES: Readonly<Record<KeypointStreamId, number>> = Object.freeze({ pose: 256, hands: 256 });
