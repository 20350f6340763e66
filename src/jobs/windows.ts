/**
 * Long videos: per-window scores over the whole video (many-to-many), memory flat with length.
 *
 * One sequential ffmpeg pass decodes the video at the windows' grid rate (N/W frames/s, see
 * `WindowsPolicy`), frames are embedded in batches as they arrive (each frame once: overlapping
 * windows share their frames' embeddings), windows are formed from the embedded frames as soon as
 * their last frame is in, and classified by the head in batches. What is held at any time: two
 * embed batches of frames, the embeddings of about one window plus one stride, and one classify
 * batch of windows; never all frames, never all window tensors. The per-window scores (a few
 * numbers per window) are what comes out.
 *
 * Feature store: the embeddings of the pass are stored (key: content hash, backbone, the grid's
 * sampling key) only when the pass has at most `maxStoredFrames` frames (default 4096: about
 * 8.5 minutes at the default 8 frames/s, 29 MB of 1792-d features), so a later run with other
 * windows or thresholds on the same grid skips decode and embed. Longer videos are not stored:
 * keeping them would hold all their embeddings until the write (memory no longer flat) and fill
 * the store with hundreds of MB per hour of video.
 *
 * Streams: a head over several per-frame streams (rgb, motion, pose, hands) is served the same
 * way: the pass (`windows-pass.ts`) decodes every output the streams need in its one decode and
 * embeds each stream; each stream's embeddings are stored under its own key (a second run finds
 * them all, or runs the pass again). The windows hold the head's raw steps (each stream's vector,
 * a keypoint stream's presence value after it).
 *
 * `scoreWindows` runs it all in one process (inline `label --windows`). Its parts serve queue
 * mode (`queue/window-stages.ts`): `runWindowsPass` (decode + the streams' models, the embed
 * worker) and `scoreStoredWindows` (stored embeddings → the head, the classify worker).
 */
import { performance } from 'node:perf_hooks';
import { FramewiseError } from '../errors/index.js';
import { contentHash, FeatureStore, type FeatureKey, type FeatureSequence, type VideoSummary } from '../features/feature-store.js';
import { checkBackboneStreams, streamFeatureKey, streamSpecs } from '../features/stream-keys.js';
import { openFrameStream, type FrameStream, type FrameStreamOpener, type KeypointStreamId } from '../features/streams.js';
import { probe, type MediaTools } from '../media/ffmpeg.js';
import { planWindows, windowGrid, type FrameGeometry, type WindowSpan, type WindowsPolicy } from '../media/sampling.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import type { HeadMetadata, SequenceExample, TemporalHead } from '../ml/head.js';
import { backboneIdentity } from '../ml/backbone-specs.js';
import { combineBlocks, layoutRawDim, type StreamLayout } from '../ml/stream-layout.js';
import { openBackbone, type RuntimeOptions } from './runtime.js';
import { DEFAULT_WINDOWS_OPTIONS, runWindowsPass, type WindowsProgress } from './windows-pass.js';

export { DEFAULT_WINDOWS_OPTIONS, runWindowsPass, type PassModels, type WindowsPass, type WindowsPassOptions, type WindowsProgress } from './windows-pass.js';

/** What the windows stage needs (the same parts an `Extractor` is made of). */
export interface WindowsDeps {
  tools: MediaTools;
  /** Where pass embeddings are cached (when small enough); undefined: never cached. */
  store: FeatureStore | undefined;
  /** The backbone the head expects (id, version, feature kind, dim). */
  identity: BackboneIdentity;
  /** The backbone, opened on first use (not on a feature-store hit). Not disposed here. */
  backbone: () => Promise<Backbone>;
  /** The keypoint streams' models (pose, hands), opened on first use. Not disposed here. @defaultValue none */
  keypointStream?: ((id: KeypointStreamId) => Promise<FrameStream>) | undefined;
}

export interface WindowsOptions {
  policy: WindowsPolicy;
  geometry: FrameGeometry;
  /** Frames per backbone call. @defaultValue 32 */
  embedBatch?: number;
  /** Windows per head call. @defaultValue 32 */
  classifyBatch?: number;
  /** Store the pass's embeddings when it has at most this many frames; 0 never. @defaultValue 4096 */
  maxStoredFrames?: number;
  signal?: AbortSignal;
  /** Called after each embed batch and at the end (for progress bars and job progress). */
  onProgress?: (p: WindowsProgress) => void;
}

/** One window's class probabilities (in the head's label order). */
export interface WindowScore {
  start: number;
  end: number;
  /** Frames the window was classified from (N, fewer at a short video's end or a slow source). */
  frames: number;
  scores: Float32Array;
}

export interface WindowsOutcome {
  windows: WindowScore[];
  video: VideoSummary;
  /** Frames decoded and embedded in the pass (or read from the store). */
  frames: number;
  /** True when the embeddings came from the feature store (no decode, no embed). */
  cached: boolean;
  /** Whether this pass's embeddings were written to the feature store. */
  stored: boolean;
  /** The backbone that embedded the frames (undefined on a store hit). */
  backbone: BackboneInfo | undefined;
  timings: { totalMs: number; embedMs: number; classifyMs: number };
}

/** A window whose frames are all in: its embeddings, ready for the head. */
export interface FormedWindow {
  start: number;
  end: number;
  count: number;
  /** count × dim floats (a copy). */
  data: Float32Array;
}

interface HeldFrame {
  time: number;
  emb: Float32Array;
}

/**
 * Forms windows from embedded frames that arrive in time order. A window is complete when a frame
 * at or after its end arrives (or at the end of the video); what is kept is only the frames that
 * a window not yet formed may still need (about one window plus one stride).
 *
 * Windows are those of `planWindows(policy, D)`, with D the declared duration, or (when unknown,
 * 0) the last frame's time plus half a grid step.
 */
export class WindowFormer {
  private readonly W: number;
  private readonly S: number;
  private readonly half: number;
  private held: HeldFrame[] = [];
  private next = 0;
  private lastEmittedStart = -Infinity;
  private lastTime = -Infinity;
  private formed = 0;

  constructor(
    private readonly policy: WindowsPolicy,
    private readonly durationSec: number,
    private readonly dim: number,
  ) {
    this.W = policy.windowSec;
    this.S = policy.strideSec;
    this.half = windowGrid(policy).interval / 2;
  }

  /** Windows formed so far. */
  get count(): number {
    return this.formed;
  }

  /** Frames held right now (bounded: about (W + S) / grid interval). */
  get heldFrames(): number {
    return this.held.length;
  }

  private get knownDuration(): boolean {
    return this.durationSec > 0;
  }

  /** Add one frame's embedding (`dim` floats, copied); returns the windows it completes. */
  push(time: number, emb: Float32Array): FormedWindow[] {
    if (this.knownDuration && time >= this.durationSec + this.half) return []; // past the declared end: no window takes it
    this.lastTime = Math.max(this.lastTime, time);
    this.held.push({ time, emb: emb.slice(0, this.dim) });
    const out: FormedWindow[] = [];
    // a video no longer than one window is one window [0, D): formed at the end
    const single = this.knownDuration && this.durationSec <= this.W + this.half;
    for (;;) {
      const start = this.next * this.S;
      const end = start + this.W;
      if (single || time < end) break;
      if (this.knownDuration && end > this.durationSec + this.half) break; // the rest is the end-aligned window
      out.push(this.form({ start, end }));
      this.next++;
    }
    this.prune();
    return out;
  }

  /** The end of the video: the windows not formed yet (the last full ones, the end-aligned one). */
  finish(): FormedWindow[] {
    if (this.lastTime === -Infinity) return [];
    const D = this.knownDuration ? this.durationSec : this.lastTime + this.half;
    const out: FormedWindow[] = [];
    for (const span of planWindows(this.policy, D)) {
      if (span.start > this.lastEmittedStart + 1e-6) out.push(this.form(span));
    }
    this.held = [];
    return out;
  }

  private form(span: WindowSpan): FormedWindow {
    const frames = this.held.filter((f) => f.time >= span.start - 1e-9 && f.time < span.end - 1e-9);
    const data = new Float32Array(frames.length * this.dim);
    frames.forEach((f, i) => data.set(f.emb, i * this.dim));
    this.lastEmittedStart = span.start;
    this.formed++;
    return { start: span.start, end: span.end, count: frames.length, data };
  }

  /** Drop frames no future window needs: before the next window's start, keeping the last window's worth for an end-aligned window. */
  private prune(): void {
    const keepFrom = Math.min(this.next * this.S, this.lastTime - this.W - this.half);
    let drop = 0;
    while (drop < this.held.length && (this.held[drop] as HeldFrame).time < keepFrom - 1e-9) drop++;
    if (drop > 0) this.held.splice(0, drop);
  }
}

/** The feature-store key of a windows pass's rgb embeddings over a file with this content hash (every stream: `windowsStreamKeys`). */
export function windowsFeatureKey(hash: string, identity: BackboneIdentity, policy: WindowsPolicy, geometry: FrameGeometry): FeatureKey {
  return streamFeatureKey(hash, identity, policy, geometry, { id: 'rgb', version: '' });
}

/** The feature-store keys of a windows pass over a file, one per stream of the head's layout (rgb: `windowsFeatureKey`). */
export function windowsStreamKeys(hash: string, identity: BackboneIdentity, policy: WindowsPolicy, geometry: FrameGeometry, layout: StreamLayout): FeatureKey[] {
  return streamSpecs(layout).map((s) => streamFeatureKey(hash, identity, policy, geometry, s));
}

/** Check that a head can score windows of this policy: a `uniform:N` head with N = the policy's frames per window. */
export function checkWindowsHead(meta: HeadMetadata, policy: WindowsPolicy): void {
  if (meta.sampling.policy.kind !== 'uniform' || meta.sampling.policy.frames !== policy.frames) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `windows need a head trained with uniform:N sampling and N = ${policy.frames} frames per window (this head: ${meta.sampling.policy.kind})`);
  }
}

/**
 * Windows formed from embedded frames as they arrive (`WindowFormer`, over the head's raw steps:
 * `dim` = the layout's raw width) and classified by the head in batches of `classifyBatch`: what
 * is pending is at most one batch of windows.
 */
class WindowScorer {
  readonly windows: WindowScore[] = [];
  classifyMs = 0;
  private pending: FormedWindow[] = [];
  private readonly former: WindowFormer;

  constructor(
    private readonly head: TemporalHead,
    policy: WindowsPolicy,
    durationSec: number,
    private readonly dim: number,
    private readonly classifyBatch: number,
  ) {
    this.former = new WindowFormer(policy, durationSec, dim);
  }

  /** Add `count` frames (`count × dim` floats), then classify the full batches of windows they complete. */
  async add(times: readonly number[], data: Float32Array, count: number): Promise<void> {
    for (let i = 0; i < count; i++) this.pending.push(...this.former.push(times[i] as number, data.subarray(i * this.dim, (i + 1) * this.dim)));
    await this.classify(false);
  }

  /** The end of the video: the last windows, classified. */
  async finish(): Promise<void> {
    this.pending.push(...this.former.finish());
    await this.classify(true);
  }

  private async classify(all: boolean): Promise<void> {
    while (this.pending.length >= this.classifyBatch || (all && this.pending.length > 0)) {
      const chunk = this.pending.slice(0, this.classifyBatch);
      this.pending = this.pending.slice(chunk.length);
      const c0 = performance.now();
      const examples: SequenceExample[] = chunk.map((w) => ({ data: w.data, count: w.count }));
      const rows = await this.head.predict(examples, this.classifyBatch);
      this.classifyMs += performance.now() - c0;
      chunk.forEach((w, i) => this.windows.push({ start: w.start, end: w.end, frames: w.count, scores: rows[i] as Float32Array }));
    }
  }
}

/**
 * Score the windows of a stored pass (a feature-store hit: one sequence per stream of the head, in
 * its order): no decode, no model but the head. The frames go to the head one at a time, so what
 * is held besides the stored sequences is one classify batch.
 */
export async function scoreStoredWindows(seqs: readonly FeatureSequence[], head: TemporalHead, policy: WindowsPolicy, options: Pick<WindowsOptions, 'classifyBatch' | 'onProgress'> = {}): Promise<WindowsOutcome> {
  const t0 = performance.now();
  checkWindowsHead(head.metadata, policy);
  const layout = head.streams;
  if (seqs.length !== layout.length || seqs.some((s, i) => s.dim !== layout[i]?.dim)) {
    throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the stored pass has ${seqs.map((s) => `${s.dim}-d`).join(', ')} features; the head reads ${layout.map((l) => `${l.id} ${l.dim}-d`).join(', ')}`);
  }
  const first = seqs[0] as FeatureSequence;
  const count = Math.min(...seqs.map((s) => s.count));
  const scorer = new WindowScorer(head, policy, first.video.durationSec, layoutRawDim(layout), Math.max(1, options.classifyBatch ?? DEFAULT_WINDOWS_OPTIONS.classifyBatch));
  for (let i = 0; i < count; i++) {
    const blocks = seqs.map((s) => ({ data: s.data.subarray(i * s.dim, (i + 1) * s.dim), present: s.present?.subarray(i, i + 1) }));
    await scorer.add([first.times[i] as number], combineBlocks(blocks, layout, 1), 1);
  }
  await scorer.finish();
  options.onProgress?.({ doneSec: first.video.durationSec, durationSec: first.video.durationSec, frames: count, windows: scorer.windows.length });
  return { windows: scorer.windows, video: first.video, frames: count, cached: true, stored: false, backbone: undefined, timings: { totalMs: performance.now() - t0, embedMs: 0, classifyMs: scorer.classifyMs } };
}

/**
 * Score every window of a video with the head: one decode pass, batched embeds of every stream the
 * head reads, batched head calls, memory flat with the video's length. The head must be a
 * `uniform:N` head with N = the policy's frames (checked), and its backbone `deps.identity` (the
 * caller checks compatibility; the streams' models are checked when the pass opens them).
 */
export async function scoreWindows(path: string, head: TemporalHead, deps: WindowsDeps, options: WindowsOptions): Promise<WindowsOutcome> {
  const t0 = performance.now();
  const { policy, geometry } = options;
  const classifyBatch = Math.max(1, options.classifyBatch ?? DEFAULT_WINDOWS_OPTIONS.classifyBatch);
  checkWindowsHead(head.metadata, policy);
  const streams = streamSpecs(head.streams);
  checkBackboneStreams(streams, deps.identity);

  // the probe runs while the (long) video is hashed; on a store hit its result is dropped
  const probing = probe(path, deps.tools);
  probing.catch(() => undefined);
  const keys = deps.store ? windowsStreamKeys(await contentHash(path), deps.identity, policy, geometry, head.streams) : undefined;
  const hits = keys && deps.store ? await Promise.all(keys.map((k) => (deps.store as FeatureStore).get(k))) : undefined;
  // the same windows from the stored embeddings of every stream: no decode, no model but the head
  if (hits && hits.every((h) => h !== undefined)) return scoreStoredWindows(hits as FeatureSequence[], head, policy, options);

  const info = await probing;
  const scorer = new WindowScorer(head, policy, info.durationSec, layoutRawDim(head.streams), classifyBatch);
  const onProgress = options.onProgress;
  const pass = await runWindowsPass(info, deps, deps.store, deps.tools, {
    policy,
    geometry,
    streams,
    keys,
    ...(options.embedBatch !== undefined ? { embedBatch: options.embedBatch } : {}),
    ...(options.maxStoredFrames !== undefined ? { maxStoredFrames: options.maxStoredFrames } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onEmbedded: (times, rows, count) => scorer.add(times, rows, count),
    ...(onProgress ? { onProgress: (p: WindowsProgress) => onProgress({ ...p, windows: scorer.windows.length }) } : {}),
  });
  await scorer.finish();
  onProgress?.({ doneSec: info.durationSec || pass.lastTime, durationSec: info.durationSec, frames: pass.frames, windows: scorer.windows.length });
  return {
    windows: scorer.windows,
    video: pass.video,
    frames: pass.frames,
    cached: false,
    stored: pass.stored,
    backbone: pass.backbone,
    timings: { totalMs: performance.now() - t0, embedMs: pass.embedMs, classifyMs: scorer.classifyMs },
  };
}

/**
 * Windows dependencies from the runtime options (as `createExtractor` builds an Extractor): the
 * feature store in `rt.cacheDir`, the backbone's identity, and the backbone and the keypoint
 * streams (`opener`, default their loaders) opened on first use. `dispose` releases what was opened.
 */
export async function createWindowsDeps(rt: RuntimeOptions, opts: { store?: boolean; opener?: FrameStreamOpener } = {}): Promise<WindowsDeps & { dispose: () => Promise<void>; loaded: () => BackboneInfo | undefined }> {
  const identity = await backboneIdentity(rt.backbone, rt.featureKind, rt.modelUrl);
  let opened: Promise<Backbone> | undefined;
  let info: BackboneInfo | undefined;
  const backbone = (): Promise<Backbone> => {
    if (!opened) {
      opened = openBackbone(rt);
      opened.then((b) => (info = b.info)).catch(() => (opened = undefined));
    }
    return opened;
  };
  const keypoints = new Map<KeypointStreamId, Promise<FrameStream>>();
  const opener = opts.opener ?? openFrameStream;
  const keypointStream = (id: KeypointStreamId): Promise<FrameStream> => {
    let k = keypoints.get(id);
    if (!k) {
      k = opener(id, { cacheDir: rt.cacheDir, threads: rt.threads, ...(rt.engine === 'onnx' || rt.engine === 'tfjs' ? { engine: rt.engine } : {}) });
      k.catch(() => keypoints.delete(id));
      keypoints.set(id, k);
    }
    return k;
  };
  return {
    tools: rt.tools,
    store: opts.store === false ? undefined : new FeatureStore(rt.cacheDir),
    identity,
    backbone,
    keypointStream,
    loaded: () => info,
    dispose: async () => {
      const b = opened;
      opened = undefined;
      if (b) await (await b).dispose().catch(() => undefined);
      const ks = [...keypoints.values()];
      keypoints.clear();
      for (const k of ks) await (await k.catch(() => undefined))?.dispose().catch(() => undefined);
    },
  };
}
