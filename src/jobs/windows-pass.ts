/**
 * A windows pass: one sequential decode of a long video at the windows' grid rate, every stream
 * of the head embedded batch by batch as the frames arrive (each frame once), memory flat with
 * the video's length. rgb alone decodes with `streamFrames`; any other set of streams (motion,
 * pose, hands, with or without rgb) decodes every output it needs in the same one pass
 * (`streamMulti`: the backbone's geometry for rgb, the difference images of `MOTION_FILTERS` for
 * motion, letterboxed squares for the keypoint streams), exactly what a clip's decode makes
 * (`decodeMulti`), on the windows' grid. rgb and motion go through the backbone, the keypoint
 * streams through their own models; each batch's vectors become the head's raw steps
 * (`combineBlocks`: a keypoint stream's presence value after its vector).
 *
 * The inline `scoreWindows` and the queue's embed stage (`queue/window-stages.ts`) both run it.
 */
import { performance } from 'node:perf_hooks';
import { FramewiseError } from '../errors/index.js';
import type { FeatureKey, FeatureSequence, FeatureStore, VideoSummary } from '../features/feature-store.js';
import { checkKeypointStream, decodeRequestFor, isRgbLayout, type StreamSpec } from '../features/stream-keys.js';
import { isKeypointStream, type FrameStream, type KeypointStreamId } from '../features/streams.js';
import { streamFrames, TRUNCATION_COVERAGE, type MediaTools, type VideoInfo } from '../media/ffmpeg.js';
import { letterboxContent } from '../media/multi-decode.js';
import { streamMulti, type MultiFrame } from '../media/multi-stream.js';
import { windowGrid, type FrameGeometry, type WindowsPolicy } from '../media/sampling.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import { combineBlocks } from '../ml/stream-layout.js';

export interface WindowsProgress {
  /** Seconds of video decoded and embedded so far. */
  doneSec: number;
  /** Declared duration (0 when unknown). */
  durationSec: number;
  frames: number;
  windows: number;
}

export const DEFAULT_WINDOWS_OPTIONS = Object.freeze({ embedBatch: 32, classifyBatch: 32, maxStoredFrames: 4096 });

/** The models a pass embeds with, each opened on first use. Not disposed here. */
export interface PassModels {
  /** The backbone of the rgb and motion streams. */
  backbone: () => Promise<Backbone>;
  /** The keypoint streams' models. @defaultValue none: a head over a keypoint stream cannot be served (FW_ERR_STREAM_UNAVAILABLE) */
  keypointStream?: ((id: KeypointStreamId) => Promise<FrameStream>) | undefined;
}

/** A windows pass: one sequential decode at the grid rate, each frame embedded once. */
export interface WindowsPassOptions {
  policy: WindowsPolicy;
  geometry: FrameGeometry;
  /** The streams, in the head's input order (their raw steps are what `onEmbedded` gets). */
  streams: readonly StreamSpec[];
  /** Frames per backbone call. @defaultValue 32 */
  embedBatch?: number;
  /** Store the pass's embeddings when it has at most this many frames; 0 never. @defaultValue 4096 */
  maxStoredFrames?: number;
  signal?: AbortSignal;
  /** Called after each embed batch (`windows: 0`: the caller knows its windows). */
  onProgress?: (p: WindowsProgress) => void;
  /** Where each stream's embeddings are stored (in `streams` order) when the pass has at most `maxStoredFrames` frames; undefined: not stored. */
  keys: readonly FeatureKey[] | undefined;
  /** Called with each embedded batch's raw steps (count × the layout's raw width, in time order) before the next batch is taken. */
  onEmbedded?: (times: readonly number[], rows: Float32Array, count: number) => Promise<void>;
}

export interface WindowsPass {
  video: VideoSummary;
  frames: number;
  /** Time of the last decoded frame. */
  lastTime: number;
  stored: boolean;
  /** The backbone that embedded rgb or motion frames (undefined for a head over keypoint streams alone). */
  backbone: BackboneInfo | undefined;
  embedMs: number;
}

export const videoSummary = (info: VideoInfo): VideoSummary => ({ durationSec: info.durationSec, width: info.width, height: info.height, fps: info.fps });

/** The frames of one output of the decode, two batch buffers of it (one embedding while the next fills). */
interface Output {
  take: (f: MultiFrame) => Uint8Array;
  size: number;
  bytes: number;
  bufs: [Uint8Array, Uint8Array];
}

/** Each stream's embedding of one batch. */
type Block = { data: Float32Array; present?: Uint8Array | undefined };

/**
 * Decode a video at the windows' grid rate in one sequential ffmpeg pass and embed every stream of
 * its frames in batches as they arrive. Each batch's raw steps go to `onEmbedded`; each stream's
 * embeddings are stored under its key when the pass has at most `maxStoredFrames` frames (kept
 * until then, let go as soon as it is longer). A video that stops well before its declared end is
 * FW_ERR_MEDIA_TRUNCATED. The models are opened (and checked against the streams) before the decode.
 */
export async function runWindowsPass(info: VideoInfo, models: PassModels, store: FeatureStore | undefined, tools: MediaTools, options: WindowsPassOptions): Promise<WindowsPass> {
  const { policy, geometry, signal, keys, streams } = options;
  const embedBatch = Math.max(1, options.embedBatch ?? DEFAULT_WINDOWS_OPTIONS.embedBatch);
  const maxStored = Math.max(0, options.maxStoredFrames ?? DEFAULT_WINDOWS_OPTIONS.maxStoredFrames);
  const abort = (): void => {
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
  };

  // the models first: a missing or mismatched one fails before a long decode starts
  const backbone = streams.some((s) => !isKeypointStream(s.id)) ? await models.backbone() : undefined;
  const keypoints = new Map<KeypointStreamId, FrameStream>();
  for (const s of streams) {
    if (backbone && !isKeypointStream(s.id) && backbone.info.dim !== s.dim) throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the backbone gives ${backbone.info.dim}-d features, the head's ${s.id} stream ${s.dim}-d`);
    if (!isKeypointStream(s.id)) continue;
    if (!models.keypointStream) throw new FramewiseError('FW_ERR_STREAM_UNAVAILABLE', `the ${s.id} stream is not available here`);
    const k = await models.keypointStream(s.id);
    checkKeypointStream(s, k);
    keypoints.set(s.id, k);
  }

  // the decode outputs, and which output each stream embeds
  const request = decodeRequestFor(streams, geometry);
  const outputs = new Map<string, Output>();
  const output = (name: string, size: number, take: (f: MultiFrame) => Uint8Array): void => {
    const bytes = size * size * 3;
    outputs.set(name, { take, size, bytes, bufs: [new Uint8Array(embedBatch * bytes), new Uint8Array(embedBatch * bytes)] });
  };
  if (request.rgb) output('rgb', geometry.size, (f) => f.rgb as Uint8Array);
  if (request.motion) output('motion', geometry.size, (f) => f.motion as Uint8Array);
  (request.letterbox ?? []).forEach((side, i) => output(`letterbox${side}`, side, (f) => (f.letterbox as Uint8Array[])[i] as Uint8Array));
  const outputOf = (s: StreamSpec): Output => outputs.get(isKeypointStream(s.id) ? `letterbox${(keypoints.get(s.id) as FrameStream).inputSize}` : s.id) as Output;
  const frames$: AsyncIterable<MultiFrame> = isRgbLayout(streams)
    ? (async function* () {
        for await (const f of streamFrames(info, policy, geometry, { tools, ...(signal ? { signal } : {}) })) yield { index: f.index, time: f.time, rgb: f.data };
      })()
    : streamMulti(info, policy, request, { tools, ...(signal ? { signal } : {}) });

  let fill = 0;
  let which: 0 | 1 = 0;
  let times: number[] = [];
  let inFlight: Promise<void> | undefined;
  let frames = 0;
  let lastTime = 0;
  let embedMs = 0;
  // each stream's embeddings kept for the feature store while the pass is small enough
  let keep: { times: number[]; blocks: Block[][] } | undefined = keys && store && maxStored > 0 ? { times: [], blocks: streams.map(() => []) } : undefined;
  let keptFrames = 0;

  const embedBuffered = (buf: 0 | 1, count: number, ts: number[]): Promise<void> => {
    const e0 = performance.now();
    const blocks = Promise.all(
      streams.map(async (s): Promise<Block> => {
        const out = outputOf(s);
        const data = out.bufs[buf].subarray(0, count * out.bytes);
        if (!isKeypointStream(s.id)) return { data: await (backbone as Backbone).embed(data, count) };
        return (keypoints.get(s.id) as FrameStream).embed({ data, count, size: out.size, content: letterboxContent(info.width, info.height, out.size) });
      }),
    );
    return blocks.then(async (bs) => {
      embedMs += performance.now() - e0;
      if (keep) {
        if (keptFrames + count <= maxStored) {
          bs.forEach((b, i) => (keep as { blocks: Block[][] }).blocks[i]?.push(b));
          keep.times.push(...ts);
          keptFrames += count;
        } else keep = undefined; // too long to store: let go of what was kept
      }
      frames += count;
      await options.onEmbedded?.(ts, combineBlocks(bs, streams, count), count);
      options.onProgress?.({ doneSec: lastTime, durationSec: info.durationSec, frames, windows: 0 });
    });
  };

  for await (const f of frames$) {
    for (const out of outputs.values()) out.bufs[which].set(out.take(f), fill * out.bytes);
    times.push(f.time);
    lastTime = f.time;
    fill++;
    if (fill === embedBatch) {
      if (inFlight) await inFlight;
      abort();
      inFlight = embedBuffered(which, fill, times);
      inFlight.catch(() => undefined); // awaited (and rethrown) before the next batch or after the pass
      which = which === 0 ? 1 : 0;
      fill = 0;
      times = [];
    }
  }
  if (inFlight) await inFlight;
  abort();
  if (fill > 0) await embedBuffered(which, fill, times);

  const { interval } = windowGrid(policy);
  if (info.durationSec > 0 && lastTime + 2 * interval < info.durationSec * TRUNCATION_COVERAGE) {
    throw new FramewiseError('FW_ERR_MEDIA_TRUNCATED', `the video stops at ${lastTime.toFixed(2)} s of its declared ${info.durationSec.toFixed(2)} s (truncated file): ${info.path}`, {
      details: { decodedSec: lastTime, durationSec: info.durationSec },
    });
  }

  let stored = false;
  if (keep && keys && store && keptFrames > 0) {
    for (const [i, s] of streams.entries()) {
      const data = new Float32Array(keptFrames * s.dim);
      const present = s.masked ? new Uint8Array(keptFrames) : undefined;
      let at = 0;
      for (const b of keep.blocks[i] as Block[]) {
        const n = Math.min(b.data.length, data.length - at * s.dim) / s.dim;
        data.set(b.data.subarray(0, n * s.dim), at * s.dim);
        if (present) present.set(b.present ? b.present.subarray(0, n) : new Uint8Array(n).fill(1), at);
        at += n;
      }
      const seq: FeatureSequence = { key: keys[i] as FeatureKey, count: keptFrames, dim: s.dim, times: keep.times, data, video: videoSummary(info), ...(present ? { present } : {}) };
      await store.put(seq);
    }
    stored = true;
  }
  return { video: videoSummary(info), frames, lastTime, stored, backbone: backbone?.info, embedMs };
}
