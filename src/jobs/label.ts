/**
 * Labelling: features (from the store or computed) → the temporal head → top-k per video.
 * The result shape is a documented contract (README "Label output", JSON Schema
 * `schemas/result-v1.schema.json`): a clip-level result, and for long videos (`--windows`) the
 * same fields plus `video`, `labels`, `windows[]`, `segments[]` and `segmentation`.
 */
import { toFramewiseError, type FramewiseError } from '../errors/index.js';
import { stopsTheRun, type Extractor } from '../features/extract.js';
import type { StreamExtractor } from '../features/stream-extract.js';
import { combineSequences } from '../ml/stream-layout.js';
import type { FeatureSequence } from '../features/feature-store.js';
import type { InputItem } from '../features/inputs.js';
import { formatSampling, formatWindows, type FrameGeometry, type WindowsPolicy } from '../media/sampling.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import { checkCompatible, type TemporalHead } from '../ml/head.js';
import { topKIndices } from '../ml/metrics.js';
import { DEFAULT_HYSTERESIS, meanScores, mergeSegments, resolveThreshold, validateSegmentOptions, type Segment, type ThresholdSource } from './segments.js';
import { scoreWindows, type WindowsDeps, type WindowsOptions, type WindowsOutcome, type WindowsProgress } from './windows.js';

export interface LabelSuccess {
  path: string;
  ok: true;
  label: string;
  confidence: number;
  topK: Array<{ label: string; p: number }>;
  model: { id: string; version: string };
  backbone: { id: string; version: string; featureKind: string; engine: string; backend: string | null };
  sampling: { policy: string; size: number; crop: string; windowSec?: number; strideSec?: number; framesPerWindow?: number };
  frames: number;
  durationSec: number;
  cached: boolean;
  // --- windowed results (long videos) only ---
  /** The video as probed. */
  video?: { durationSec: number; width: number; height: number; fps: number };
  /** How `label`/`confidence`/`topK` were made from the windows. */
  aggregate?: 'mean-of-windows';
  /** The head's classes, in the order of every window's `scores`. */
  labels?: string[];
  windows?: WindowResult[];
  segments?: Segment[];
  segmentation?: SegmentationInfo;
  /** Thresholds the result was held to: `unknown`, the top probability below which the label is `unknown`. */
  thresholds?: { unknown: number };
}

export interface WindowResult {
  /** Seconds from the video start. */
  start: number;
  end: number;
  /** Frames the window was classified from. */
  frames: number;
  /** Class probabilities, in the order of `labels`. */
  scores: number[];
}

export interface SegmentationInfo {
  /** Unknown threshold (enter level) in use. */
  threshold: number;
  /** Where it came from: `--threshold`, the model's `unknownThreshold`, or the default. */
  thresholdSource: ThresholdSource;
  hysteresis: number;
  minSegmentSec: number;
  unknownLabel: string;
}

export interface LabelFailure {
  path: string;
  ok: false;
  error: { code: string; message: string };
}

export type LabelResult = LabelSuccess | LabelFailure;

export function failure(path: string, error: FramewiseError): LabelFailure {
  return { path, ok: false, error: { code: error.code, message: error.message } };
}

const round = (x: number): number => Math.round(x * 1e4) / 1e4;

/** Turn one probability row into a result. */
export function toLabelResult(path: string, probs: ArrayLike<number>, seq: FeatureSequence, cached: boolean, head: TemporalHead, extractor: Pick<Extractor, 'sampling' | 'identity' | 'loadedInfo'>, topK: number): LabelSuccess {
  const ranked = topKIndices(probs, topK);
  const best = ranked[0] as number;
  const { policy, geometry } = extractor.sampling;
  const info = extractor.loadedInfo;
  return {
    path,
    ok: true,
    label: head.labels[best] as string,
    confidence: round(probs[best] as number),
    topK: ranked.map((k) => ({ label: head.labels[k] as string, p: round(probs[k] as number) })),
    model: { id: head.metadata.id, version: head.metadata.version },
    backbone: {
      id: extractor.identity.id,
      version: extractor.identity.version,
      featureKind: extractor.identity.featureKind,
      engine: info?.engine ?? 'none (features from the store)',
      backend: info?.backend ?? null,
    },
    sampling: { policy: formatSampling(policy), size: geometry.size, crop: geometry.crop },
    frames: seq.count,
    durationSec: round(seq.video.durationSec),
    cached,
  };
}

/** Label items in order with a head over several streams (each computed by `extractor`); failures are results too. */
export async function* labelStreamItems(items: readonly InputItem[], extractor: StreamExtractor, head: TemporalHead, topK: number, signal?: AbortSignal): AsyncGenerator<LabelResult> {
  const layout = head.streams;
  for await (const out of extractor.extractMany(items, signal)) {
    const path = out.item.source;
    if (!out.ok) {
      yield failure(path, out.error);
      continue;
    }
    const [probs] = await head.predict([combineSequences(out.seqs, layout)]);
    yield toLabelResult(path, probs as Float32Array, out.seqs[0] as FeatureSequence, out.cached, head, extractor, topK);
  }
}

/** Label items in order; failures are results too. */
export async function* labelItems(items: readonly InputItem[], extractor: Extractor, head: TemporalHead, topK: number, signal?: AbortSignal): AsyncGenerator<LabelResult> {
  for await (const out of extractor.extractMany(items, signal)) {
    const path = out.item.source;
    if (!out.ok) {
      yield failure(path, out.error);
      continue;
    }
    const [probs] = await head.predict([{ data: out.seq.data, count: out.seq.count }]);
    yield toLabelResult(path, probs as Float32Array, out.seq, out.cached, head, extractor, topK);
  }
}

// ---------------------------------------------------------------------------------------------
// windows: long videos

/** How a video is labelled window by window. */
export interface WindowsLabelOptions {
  policy: WindowsPolicy;
  geometry: FrameGeometry;
  /** Unknown threshold; default: the head's `unknownThreshold`, else 0.5. */
  threshold?: number;
  /** @defaultValue 0.1 */
  hysteresis?: number;
  /** Shorter segments are absorbed by a neighbour. @defaultValue the window length */
  minSegmentSec?: number;
  embedBatch?: number;
  classifyBatch?: number;
  maxStoredFrames?: number;
}

/** Merge settings for a head and options (threshold from the option, the model or the default). */
export function segmentationFor(head: Pick<TemporalHead, 'metadata'>, o: Pick<WindowsLabelOptions, 'policy' | 'threshold' | 'hysteresis' | 'minSegmentSec'>): SegmentationInfo {
  const { threshold, source } = resolveThreshold(o.threshold, head.metadata);
  // the default hysteresis never goes below zero (a low threshold holds down to 0); an explicit one is checked
  const hysteresis = o.hysteresis ?? Math.min(DEFAULT_HYSTERESIS, threshold);
  const minSegmentSec = o.minSegmentSec ?? o.policy.windowSec;
  validateSegmentOptions({ threshold, hysteresis, minSegmentSec });
  return { threshold, thresholdSource: source, hysteresis: round(hysteresis), minSegmentSec, unknownLabel: 'unknown' };
}

/**
 * A windowed result: the clip-level fields of `toLabelResult` from the mean of the window scores
 * (`aggregate: 'mean-of-windows'`), then the windows and the merged segments. As for clip-level
 * results with a threshold (`thresholds.unknown`), the top-level `label` is `unknown` when its
 * mean probability is below the threshold (a video with several actions usually is: its `topK`
 * still lists them); the segments say what happens when.
 */
export function toWindowedResult(
  path: string,
  outcome: WindowsOutcome,
  head: TemporalHead,
  identity: BackboneIdentity,
  o: Pick<WindowsLabelOptions, 'policy' | 'geometry'>,
  segmentation: SegmentationInfo,
  topK: number,
): LabelSuccess {
  const labels = head.labels;
  const probs = meanScores(outcome.windows, labels.length);
  const ranked = topKIndices(probs, topK);
  const best = ranked[0] as number;
  const t3 = (x: number): number => Math.round(x * 1e3) / 1e3;
  return {
    path,
    ok: true,
    label: (probs[best] as number) < segmentation.threshold ? segmentation.unknownLabel : (labels[best] as string),
    confidence: round(probs[best] as number),
    topK: ranked.map((k) => ({ label: labels[k] as string, p: round(probs[k] as number) })),
    model: { id: head.metadata.id, version: head.metadata.version },
    backbone: {
      id: identity.id,
      version: identity.version,
      featureKind: identity.featureKind,
      engine: outcome.backbone?.engine ?? 'none (features from the store)',
      backend: outcome.backbone?.backend ?? null,
    },
    sampling: { policy: formatWindows(o.policy), size: o.geometry.size, crop: o.geometry.crop, windowSec: o.policy.windowSec, strideSec: o.policy.strideSec, framesPerWindow: o.policy.frames },
    frames: outcome.frames,
    durationSec: round(outcome.video.durationSec),
    cached: outcome.cached,
    video: { durationSec: round(outcome.video.durationSec), width: outcome.video.width, height: outcome.video.height, fps: round(outcome.video.fps) },
    aggregate: 'mean-of-windows',
    labels: [...labels],
    windows: outcome.windows.map((w) => ({ start: t3(w.start), end: t3(w.end), frames: w.frames, scores: Array.from(w.scores, round) })),
    segments: mergeSegments(outcome.windows, labels, segmentation),
    segmentation,
    thresholds: { unknown: segmentation.threshold },
  };
}

/** Label one video window by window (the plain function queue workers can call too). */
export async function labelWindowed(
  path: string,
  source: string,
  head: TemporalHead,
  deps: WindowsDeps,
  o: WindowsLabelOptions,
  topK: number,
  run: { signal?: AbortSignal; onProgress?: (p: WindowsProgress) => void } = {},
): Promise<LabelSuccess> {
  // grid and pooled features have the same dimension: only the feature kind tells them apart
  checkCompatible(head.metadata, deps.identity, 'the model');
  const segmentation = segmentationFor(head, o);
  const opts: WindowsOptions = {
    policy: o.policy,
    geometry: o.geometry,
    ...(o.embedBatch !== undefined ? { embedBatch: o.embedBatch } : {}),
    ...(o.classifyBatch !== undefined ? { classifyBatch: o.classifyBatch } : {}),
    ...(o.maxStoredFrames !== undefined ? { maxStoredFrames: o.maxStoredFrames } : {}),
    ...(run.signal ? { signal: run.signal } : {}),
    ...(run.onProgress ? { onProgress: run.onProgress } : {}),
  };
  const outcome = await scoreWindows(path, head, deps, opts);
  return toWindowedResult(source, outcome, head, deps.identity, o, segmentation, topK);
}

/**
 * Label items window by window, in order; failures are results too (a backbone or keypoint model
 * that cannot load, or is not the one the head was trained on, stops the run).
 */
export async function* labelItemsWindowed(items: readonly InputItem[], head: TemporalHead, deps: WindowsDeps, o: WindowsLabelOptions, topK: number, signal?: AbortSignal): AsyncGenerator<LabelResult> {
  segmentationFor(head, o); // bad settings fail the run, not each file
  for (const item of items) {
    if (signal?.aborted) return;
    try {
      yield await labelWindowed(item.path, item.source, head, deps, o, topK, signal ? { signal } : {});
    } catch (err) {
      const e = toFramewiseError(err);
      if (stopsTheRun(e) || e.code === 'FW_ERR_CONFIG_INVALID' || e.code === 'FW_ERR_STREAM_UNAVAILABLE' || e.code === 'FW_ERR_MODEL_MISMATCH') throw e;
      yield failure(item.source, e);
    }
  }
}
