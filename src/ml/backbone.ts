/**
 * The contract between the frame CNN (backbone) and the temporal head.
 *
 * A backbone turns a batch of decoded frames (raw rgb24 bytes, square, `inputSize` pixels a
 * side, exactly as ffmpeg writes them) into one feature vector per frame.
 */

/** Backbones framewise knows. */
export const BACKBONE_IDS = ['mobilenet_v2_mid', 'mobilenet_v2', 'tfhub_mobilenet_v2'] as const;
export type BackboneId = (typeof BACKBONE_IDS)[number];

/** Engines that can run a backbone. */
export const ENGINES = ['onnx', 'tfjs'] as const;
export type Engine = (typeof ENGINES)[number];

/**
 * What one frame's feature is made of.
 * - `pooled`: global average of the last feature map (C values).
 * - `grid`: the last feature map averaged over a 2×2 grid of cells, then channel groups
 *   averaged down to keep the size near `pooled` (keeps *where* as well as *what*).
 */
export const FEATURE_KINDS = ['pooled', 'grid'] as const;
export type FeatureKind = (typeof FEATURE_KINDS)[number];

export interface BackboneSpec {
  readonly id: BackboneId;
  /** Human description, with provenance. */
  readonly description: string;
  /** Side of the square RGB input, in pixels. */
  readonly inputSize: number;
  /** Channels of the last feature map (= dimension of the `pooled` feature). */
  readonly channels: number;
  /** Side of the last feature map (7 for 224-pixel MobileNets). */
  readonly mapSize: number;
}

export interface BackboneInfo {
  readonly id: BackboneId;
  /** Version of the weights (package and version they come from); part of feature-store keys. */
  readonly version: string;
  readonly featureKind: FeatureKind;
  /** Dimension of one frame's feature vector for this feature kind. */
  readonly dim: number;
  readonly inputSize: number;
  readonly engine: Engine;
  /** The engine's backend or execution provider actually in use (e.g. `wasm`, `cpu`, `tensorflow`, `onnx-cpu`). */
  readonly backend: string;
}

export interface Backbone {
  readonly info: BackboneInfo;
  /**
   * Embed `count` frames. `frames` holds count × inputSize × inputSize × 3 bytes (rgb24, row-major, NHWC).
   * Returns count × dim floats. Batching is done inside; callers may pass any count.
   */
  embed(frames: Uint8Array, count: number): Promise<Float32Array>;
  /** Release the model (and its tensors or sessions). */
  dispose(): Promise<void>;
}
