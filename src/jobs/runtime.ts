/**
 * Wiring shared by every surface (CLI, workers, API): configuration + per-call overrides →
 * media tools, feature store, backbone identity and a lazily opened backbone.
 */
import type { Config, TfjsBackendChoice } from '../config/index.js';
import { Extractor } from '../features/extract.js';
import { FeatureStore } from '../features/feature-store.js';
import type { MediaTools } from '../media/ffmpeg.js';
import type { FrameGeometry, SamplingPolicy } from '../media/sampling.js';
import type { Backbone, BackboneId, Engine, FeatureKind } from '../ml/backbone.js';
import { backboneIdentity, createBackbone } from '../ml/backbone-specs.js';

export interface RuntimeOptions {
  cacheDir: string;
  engine: Engine;
  backend: TfjsBackendChoice;
  backbone: BackboneId;
  featureKind: FeatureKind;
  batchSize: number;
  threads: number;
  tools: MediaTools;
  modelUrl: string | undefined;
}

export function runtimeFromConfig(config: Config, overrides: Partial<RuntimeOptions> = {}): RuntimeOptions {
  return {
    cacheDir: config.cacheDir,
    engine: config.engine,
    backend: config.backend,
    backbone: config.backbone,
    featureKind: config.featureKind,
    batchSize: config.batchSize,
    threads: config.threads,
    tools: { ffmpegPath: config.ffmpegPath, ffprobePath: config.ffprobePath, maxPixels: config.maxPixels, decodeTimeoutMs: config.decodeTimeoutMs },
    modelUrl: config.tfhubMobilenetUrl,
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
}

/** Open the backbone the runtime options name (engine, backend, batch, threads, cache). */
export function openBackbone(rt: RuntimeOptions): Promise<Backbone> {
  return createBackbone({
    id: rt.backbone,
    engine: rt.engine,
    featureKind: rt.featureKind,
    backend: rt.backend,
    batchSize: rt.batchSize,
    threads: rt.threads,
    cacheDir: rt.cacheDir,
    ...(rt.modelUrl !== undefined ? { modelUrl: rt.modelUrl } : {}),
  });
}

export async function createExtractor(rt: RuntimeOptions, sampling: SamplingPolicy, geometry: FrameGeometry, prefetch?: number): Promise<Extractor> {
  const identity = await backboneIdentity(rt.backbone, rt.featureKind, rt.modelUrl);
  return new Extractor({
    tools: rt.tools,
    store: new FeatureStore(rt.cacheDir),
    identity,
    sampling,
    geometry,
    ...(prefetch !== undefined ? { prefetch } : {}),
    openBackbone: () => openBackbone(rt),
  });
}
