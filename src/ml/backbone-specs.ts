/** The backbones framewise knows, and the factory that opens one with the chosen engine. */
import { FramewiseError } from '../errors/index.js';
import type { TfjsBackendChoice } from '../config/index.js';
import type { Backbone, BackboneId, BackboneSpec, Engine, FeatureKind } from './backbone.js';

/** Where `tfhub_mobilenet_v2` loads from without FRAMEWISE_TFHUB_MOBILENET_URL (a constant here, so reading it loads no runtime). */
export const DEFAULT_TFHUB_MOBILENET_URL = 'https://tfhub.dev/google/tfjs-model/imagenet/mobilenet_v2_100_224/feature_vector/3/default/1';

export const BACKBONE_SPECS: Readonly<Record<BackboneId, BackboneSpec>> = Object.freeze({
  mobilenet_v2_mid: {
    id: 'mobilenet_v2_mid',
    description: 'MobileNetV2 width 1.4 (TF Hub imagenet/mobilenet_v2_140_224, fine-tuned by nsfwjs), weights shipped in the nsfwjs npm package',
    inputSize: 224,
    channels: 1792,
    mapSize: 7,
  },
  mobilenet_v2: {
    id: 'mobilenet_v2',
    description: 'Keras MobileNetV2 width 1.0 (ImageNet weights up to block_10, top fine-tuned by nsfwjs), weights shipped in the nsfwjs npm package',
    inputSize: 224,
    channels: 1280,
    mapSize: 7,
  },
  tfhub_mobilenet_v2: {
    id: 'tfhub_mobilenet_v2',
    description: 'TF Hub imagenet/mobilenet_v2_100_224 feature vector (ImageNet), loaded from TF Hub or a local copy: needs internet or FRAMEWISE_TFHUB_MOBILENET_URL',
    inputSize: 224,
    channels: 1280,
    mapSize: 1,
  },
});

/** Dimension of one frame's feature: `pooled` = C; `grid` = 4 cells × C/4 channel groups = C. */
export function featureDim(spec: BackboneSpec, kind: FeatureKind): number {
  return kind === 'pooled' ? spec.channels : 4 * Math.floor(spec.channels / 4);
}

/** The version string recorded with embeddings: where the weights came from. */
export function backboneVersion(_id: BackboneId, weightsVersion: string): string {
  return weightsVersion;
}

export interface BackboneOptions {
  id: BackboneId;
  engine: Engine;
  featureKind: FeatureKind;
  /** tfjs backend (engine tfjs). */
  backend?: TfjsBackendChoice;
  batchSize?: number;
  /** Intra-op threads (engine onnx). */
  threads?: number;
  cacheDir: string;
  modelUrl?: string;
}

/** Open a backbone with the requested engine. The onnx engine supports the nsfwjs backbones. */
export async function createBackbone(opts: BackboneOptions): Promise<Backbone> {
  if (opts.engine === 'onnx') {
    if (opts.id === 'tfhub_mobilenet_v2') {
      throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', "engine 'onnx' does not convert tfhub_mobilenet_v2; use --engine tfjs for it");
    }
    const { createOnnxBackbone } = await import('./onnx/onnx-backbone.js');
    return createOnnxBackbone({
      id: opts.id,
      featureKind: opts.featureKind,
      cacheDir: opts.cacheDir,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    });
  }
  const { createTfjsBackbone } = await import('./tfjs-backbone.js');
  return createTfjsBackbone({
    id: opts.id,
    featureKind: opts.featureKind,
    ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    ...(opts.modelUrl !== undefined ? { modelUrl: opts.modelUrl } : {}),
  });
}

export interface BackboneIdentity {
  id: BackboneId;
  version: string;
  featureKind: FeatureKind;
  dim: number;
}

/** Who a backbone is (id, weights version, feature kind, dim) without loading its weights: enough for feature-store keys. */
export async function backboneIdentity(id: BackboneId, featureKind: FeatureKind, modelUrl?: string): Promise<BackboneIdentity> {
  const spec = BACKBONE_SPECS[id];
  let version: string;
  if (id === 'tfhub_mobilenet_v2') {
    version = `tfhub:${modelUrl ?? DEFAULT_TFHUB_MOBILENET_URL}`;
  } else {
    const { nsfwjsVersion } = await import('./pretrained-weights.js');
    version = `nsfwjs@${await nsfwjsVersion()}`;
  }
  return { id, version: backboneVersion(id, version), featureKind, dim: featureDim(spec, featureKind) };
}
