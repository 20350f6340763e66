/**
 * Labelled features of several per-frame streams (features/streams.ts): one example per clip,
 * the streams' vectors side by side per frame (ml/stream-layout.ts), with the layout recorded so
 * that a head knows which block is which. Every stream is cached in the feature store on its own:
 * a stream set that shares streams with an earlier run re-embeds nothing.
 */
import { FramewiseError } from '../errors/index.js';
import { StreamExtractor } from '../features/stream-extract.js';
import { FeatureStore } from '../features/feature-store.js';
import type { InputItem } from '../features/inputs.js';
import { isBackboneStream, KEYPOINT_STREAMS, openFrameStream, STREAM_IDS, type FrameStreamOpener, type StreamId } from '../features/streams.js';
import type { FrameGeometry, SamplingPolicy } from '../media/sampling.js';
import { backboneIdentity } from '../ml/backbone-specs.js';
import { combineSequences, selectStreams } from '../ml/stream-layout.js';
import type { TemporalHead } from '../ml/head.js';
import { openBackbone, type RuntimeOptions } from './runtime.js';
import type { LabelledFeatures } from './head-training.js';

/** An extractor for `streams` from the runtime options (keypoint streams through `opener`, default their loaders). */
export async function createStreamExtractor(rt: RuntimeOptions, sampling: SamplingPolicy, geometry: FrameGeometry, streams: readonly StreamId[], opener: FrameStreamOpener = openFrameStream, prefetch?: number): Promise<StreamExtractor> {
  const identity = await backboneIdentity(rt.backbone, rt.featureKind, rt.modelUrl);
  return new StreamExtractor({
    tools: rt.tools,
    store: new FeatureStore(rt.cacheDir),
    identity,
    sampling,
    geometry,
    streams,
    ...(prefetch !== undefined ? { prefetch } : {}),
    openBackbone: () => openBackbone(rt),
    openKeypointStream: (id) => opener(id, { cacheDir: rt.cacheDir, threads: rt.threads, ...(rt.engine === 'onnx' || rt.engine === 'tfjs' ? { engine: rt.engine } : {}) }),
  });
}

/** Extract (or read from the store) every stream of labelled items; failures are collected. */
export async function collectStreamFeatures(items: readonly InputItem[], extractor: StreamExtractor, onItem?: (done: number, total: number, item: InputItem, ok: boolean) => void, signal?: AbortSignal): Promise<LabelledFeatures> {
  const layout = await extractor.layout();
  const out: LabelledFeatures = { items: [], examples: [], labels: [], failed: [], layout };
  let done = 0;
  for await (const r of extractor.extractMany(items, signal)) {
    done++;
    if (r.ok) {
      out.items.push(r.item);
      out.examples.push(combineSequences(r.seqs, layout));
      out.labels.push(r.item.label as string);
    } else out.failed.push({ source: r.item.source, error: r.error });
    onItem?.(done, items.length, r.item, r.ok);
  }
  return out;
}

/** The same rows with only some of their streams (a candidate stream set). */
export function withStreams(data: LabelledFeatures, streams: readonly StreamId[]): LabelledFeatures {
  const layout = data.layout;
  if (!layout) {
    if (streams.length === 1 && streams[0] === 'rgb') return data;
    throw new FramewiseError('FW_ERR_INTERNAL', 'these features hold the rgb stream only');
  }
  const missing = streams.filter((s) => !layout.some((l) => l.id === s));
  if (missing.length > 0) throw new FramewiseError('FW_ERR_INTERNAL', `these features lack the stream(s) ${missing.join(', ')}`);
  const sel = selectStreams(data.examples, layout, streams);
  return { ...data, examples: sel.examples, layout: sel.layout };
}

/**
 * The streams `auto` chooses among: rgb and motion, and each keypoint stream this build can load
 * (a missing optional model leaves it out; any other failure to load is an error).
 */
export async function availableStreams(rt: Pick<RuntimeOptions, 'cacheDir' | 'threads'>): Promise<StreamId[]> {
  const streams: StreamId[] = ['rgb', 'motion'];
  for (const id of KEYPOINT_STREAMS) {
    try {
      const s = await openFrameStream(id, { cacheDir: rt.cacheDir, threads: rt.threads });
      await s.dispose();
      streams.push(id);
    } catch (err) {
      if (!(err instanceof FramewiseError && err.code === 'FW_ERR_STREAM_UNAVAILABLE')) throw err;
    }
  }
  return STREAM_IDS.filter((s) => streams.includes(s));
}

/** A keypoint stream that saw its subject in fewer frames than this, over the screened clips, is not a candidate of `auto`. */
export const MIN_PRESENCE = 0.25;
/** Clips the screening of `auto` embeds (spread over the training data; their features stay in the store). */
export const SCREEN_CLIPS = 24;

export interface StreamScreen {
  stream: StreamId;
  /** Frames where the keypoint model saw its subject, over the frames of the screened clips. */
  presence: number;
  clips: number;
  kept: boolean;
}

/**
 * Before `auto` embeds every clip with every stream: each keypoint stream runs on a few clips
 * spread over the training data (label-free), and one that sees its subject in fewer than
 * MIN_PRESENCE of their frames (hands in CCTV, a body in egocentric video, anything in generated
 * test clips) is left out of the candidates. `from`: the candidates (default every stream this
 * build can load). Appearance streams are always kept; with no clip screened, every stream is kept.
 */
export async function screenKeypointStreams(rt: RuntimeOptions, sampling: SamplingPolicy, geometry: FrameGeometry, items: readonly InputItem[], from?: readonly StreamId[], signal?: AbortSignal): Promise<{ kept: StreamId[]; screened: StreamScreen[] }> {
  const streams = from ?? (await availableStreams(rt));
  const keypoint = streams.filter((s) => !isBackboneStream(s));
  if (keypoint.length === 0 || items.length === 0) return { kept: [...streams], screened: [] };
  const n = Math.min(SCREEN_CLIPS, items.length);
  const sample = Array.from({ length: n }, (_, i) => items[Math.floor((i * items.length) / n)] as InputItem);
  const sx = await createStreamExtractor(rt, sampling, geometry, keypoint);
  const seen = new Map<StreamId, { present: number; frames: number }>(keypoint.map((s) => [s, { present: 0, frames: 0 }]));
  let clips = 0;
  try {
    for await (const r of sx.extractMany(sample, signal)) {
      if (!r.ok) continue;
      clips++;
      r.seqs.forEach((seq, i) => {
        const c = seen.get(keypoint[i] as StreamId) as { present: number; frames: number };
        c.frames += seq.count;
        for (let t = 0; t < seq.count; t++) c.present += seq.present ? (seq.present[t] as number) : 1;
      });
    }
  } finally {
    await sx.dispose();
  }
  const screened = keypoint.map((stream) => {
    const c = seen.get(stream) as { present: number; frames: number };
    const presence = c.frames > 0 ? c.present / c.frames : 1;
    return { stream, presence, clips, kept: clips === 0 || presence >= MIN_PRESENCE };
  });
  return { kept: streams.filter((s) => isBackboneStream(s) || screened.some((x) => x.stream === s && x.kept)), screened };
}

/** True when a stream set needs only the backbone's rgb features (the classic extractor serves it). */
export const isRgbOnly = (streams: readonly StreamId[]): boolean => streams.length === 1 && streams[0] === 'rgb';

/** Streams that need the frame backbone (for runtime checks and costs). */
export const backboneStreams = (streams: readonly StreamId[]): StreamId[] => streams.filter(isBackboneStream);

/**
 * An extractor of exactly the streams a head reads, or undefined for a head over rgb alone (the
 * classic extractor serves it). `FW_ERR_MODEL_MISMATCH` when a stream's model here is not the
 * one the head was trained on.
 */
export async function createHeadStreamExtractor(rt: RuntimeOptions, head: Pick<TemporalHead, 'streams' | 'metadata'>, opener: FrameStreamOpener = openFrameStream, prefetch?: number): Promise<StreamExtractor | undefined> {
  const ids = head.streams.map((s) => s.id);
  if (isRgbOnly(ids)) return undefined;
  const { sampling } = head.metadata;
  const sx = await createStreamExtractor(rt, sampling.policy, { size: sampling.size, crop: sampling.crop }, ids, opener, prefetch);
  try {
    const layout = await sx.layout();
    layout.forEach((l, i) => {
      const want = head.streams[i];
      if (!want || l.version !== want.version || l.dim !== want.dim) {
        throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the head was trained on the ${l.id} stream ${want?.version ?? '?'} (${want?.dim ?? '?'}-d) but this build gives ${l.version} (${l.dim}-d)`);
      }
    });
  } catch (err) {
    await sx.dispose();
    throw err;
  }
  return sx;
}
