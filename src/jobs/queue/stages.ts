/**
 * The three stages of a clip's flow as plain async functions over a `ClipRef`. They call the
 * same building blocks as inline mode (`Extractor.prepare`, `Extractor.embed`,
 * `TemporalHead.predict`, `toLabelResult`); the BullMQ processors in `workers.ts` only carry them.
 * A windowed clip (`clip.windows`) has its own three stages: `window-stages.ts`; a clip whose
 * model reads more than the backbone's rgb features (`clip.streams`): `stream-stages.ts`.
 */
import { performance } from 'node:perf_hooks';
import { FramewiseError } from '../../errors/index.js';
import { Extractor } from '../../features/extract.js';
import type { FeatureStore } from '../../features/feature-store.js';
import type { FrameBatch, MediaTools } from '../../media/ffmpeg.js';
import type { Backbone } from '../../ml/backbone.js';
import { checkCompatible, type TemporalHead } from '../../ml/head.js';
import { toLabelResult, type LabelSuccess } from '../label.js';
import { withUnknownThreshold } from '../thresholds.js';
import { framesArtifactKey, type ArtifactStore } from './artifact-store.js';
import { featureKeyOf } from './idempotency.js';
import type { ClipRef, DecodeJobResult, EmbedJobResult } from './payloads.js';

export interface StageDeps {
  tools: MediaTools;
  store: FeatureStore;
  artifacts: ArtifactStore;
}

/** An Extractor for this clip's backbone and sampling; the backbone opens only if embedding is asked for. */
export function extractorFor(clip: ClipRef, deps: StageDeps, openBackbone?: () => Promise<Backbone>): Extractor {
  return new Extractor({
    tools: deps.tools,
    store: deps.store,
    identity: clip.backbone,
    sampling: clip.sampling.policy,
    geometry: { size: clip.sampling.size, crop: clip.sampling.crop },
    openBackbone:
      openBackbone ??
      (() => Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'this stage does not embed (no backbone in this worker)'))),
  });
}

/** The bytes read now are the bytes submitted (else FW_ERR_INPUT_CHANGED: the job would label another file). */
export function checkSameBytes(clip: ClipRef, hash: string): void {
  if (hash !== clip.contentHash) {
    throw new FramewiseError('FW_ERR_INPUT_CHANGED', `the file changed since it was submitted (sha256 ${hash.slice(0, 12)}… instead of ${clip.contentHash.slice(0, 12)}…): ${clip.source}`);
  }
}

/**
 * Decode stage: feature-store lookup first (a hit skips decoding), else probe + one sequential
 * decode; the rgb24 frames go to the artifact store, the small facts to the return value.
 */
export async function decodeStage(clip: ClipRef, deps: StageDeps, signal?: AbortSignal): Promise<DecodeJobResult> {
  const t0 = performance.now();
  const d = await extractorFor(clip, deps).prepare(clip.path, signal);
  checkSameBytes(clip, 'hit' in d ? d.hit.key.contentHash : d.key.contentHash);
  if ('hit' in d) return { hit: true, frames: d.hit.count, decodeMs: Math.round(performance.now() - t0) };
  const artifactKey = framesArtifactKey(clip.clipId);
  await deps.artifacts.put(artifactKey, d.frames.data);
  return { hit: false, artifactKey, info: d.info, count: d.frames.count, size: d.frames.size, times: d.frames.times, decodeMs: Math.round(performance.now() - t0) };
}

/**
 * Embed stage: the decoded frames through the backbone (`Extractor.embed`, which writes the
 * feature store), then the artifact is removed. Idempotent: when the store already holds the
 * features (a retry after a crash past the store write), nothing is embedded again.
 */
export async function embedStage(clip: ClipRef, decoded: DecodeJobResult, deps: StageDeps, backbone: Backbone): Promise<EmbedJobResult> {
  const t0 = performance.now();
  const key = featureKeyOf(clip);
  if (decoded.hit) {
    if (!(await deps.store.has(key))) throw new FramewiseError('FW_ERR_FEATURE_STORE', `the features of ${clip.source} left the feature store between decode and embed`);
    return { cached: true, frames: decoded.frames, embedMs: 0, backbone: null };
  }
  const data = await deps.artifacts.get(decoded.artifactKey);
  if (!data) {
    if (await deps.store.has(key)) return { cached: false, frames: decoded.count, embedMs: 0, backbone: backbone.info };
    throw new FramewiseError('FW_ERR_ARTIFACT_MISSING', `decoded frames '${decoded.artifactKey}' are not in the artifact store ${deps.artifacts.location} (do the decode and embed workers share FRAMEWISE_DATA_DIR?)`);
  }
  const frames: FrameBatch = { size: decoded.size, count: decoded.count, data, times: decoded.times };
  await extractorFor(clip, deps, () => Promise.resolve(backbone)).embed({ key, info: decoded.info, frames });
  await deps.artifacts.delete(decoded.artifactKey);
  return { cached: false, frames: decoded.count, embedMs: Math.round(performance.now() - t0), backbone: backbone.info };
}

/** Classify stage: stored features → the head → the same result inline `label` gives (the model's unknown threshold applied). */
export async function classifyStage(clip: ClipRef, embedded: EmbedJobResult, head: TemporalHead, topK: number, deps: StageDeps): Promise<LabelSuccess> {
  checkCompatible(head.metadata, clip.backbone, 'the classify worker');
  const seq = await deps.store.get(featureKeyOf(clip));
  if (!seq) throw new FramewiseError('FW_ERR_FEATURE_STORE', `no stored features for ${clip.source} (feature store ${deps.store.root}; do all workers share FRAMEWISE_CACHE_DIR?)`);
  const [probs] = await head.predict([{ data: seq.data, count: seq.count }]);
  const extractor = extractorFor(clip, deps);
  // the result records the engine that embedded the frames (none when they came from the store)
  if (embedded.backbone) extractor.loadedInfo = embedded.backbone;
  return withUnknownThreshold(toLabelResult(clip.source, probs as Float32Array, seq, embedded.cached, head, extractor, topK), head.metadata);
}
