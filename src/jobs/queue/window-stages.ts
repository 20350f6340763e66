/**
 * The three stages of a windowed clip ("which action, when": `windows` on POST /v1/clips), the
 * queue's form of inline `labelWindowed`. Same flow as a clip (decode ◄ embed ◄ classify), same
 * building blocks as inline mode (`runWindowsPass`, `scoreWindows`, `scoreStoredWindows`,
 * `toWindowedResult`), split so that the backbone runs in the embed worker and the head in the
 * classify worker:
 *
 * - decode: checks the bytes (content hash) and looks the pass up in the feature store (the keys
 *   `label --windows` uses, one per stream of the model), else probes. It decodes nothing: a windows pass is one sequential
 *   decode of the whole video, and handing its frames to the embed stage through the artifact
 *   store would park every frame of a long video on disk first (an hour at the 8 frames/s grid is
 *   ~29,000 frames of 150 KB: 4 GB) and write and read them all once more. The embed stage decodes
 *   instead, streaming frames into the models as ffmpeg gives them, memory flat.
 * - embed: that one decode pass (`runWindowsPass`: every output the model's streams need, in the
 *   one pass), the frames through the worker's models — rgb and motion through its (batching)
 *   backbone, pose and hands through their own — each frame once. A video whose pass fits the feature store (`maxStoredFrames`, 4096 frames like inline:
 *   about 8.5 minutes at 8 frames/s) has its embeddings stored, and the classify stage scores them.
 *   A longer one cannot be handed over that way (its embeddings would have to be held until the
 *   write), so the embed stage also runs the head over the windows as they form and returns the
 *   window scores: a few numbers per window, which the result lists anyway.
 * - classify: the stored embeddings → windows → the head, or the embed stage's window scores;
 *   then the segments and the result `label --windows` prints (`toWindowedResult`).
 */
import { performance } from 'node:perf_hooks';
import { FramewiseError } from '../../errors/index.js';
import { contentHash, type FeatureSequence } from '../../features/feature-store.js';
import { checkBackboneStreams, isRgbLayout } from '../../features/stream-keys.js';
import { probe } from '../../media/ffmpeg.js';
import { maxPassFrames, type FrameGeometry } from '../../media/sampling.js';
import { checkCompatible, type TemporalHead } from '../../ml/head.js';
import { segmentationFor, toWindowedResult, type LabelSuccess, type WindowResult } from '../label.js';
import { DEFAULT_WINDOWS_OPTIONS, runWindowsPass, scoreStoredWindows, scoreWindows, type PassModels, type WindowScore, type WindowsOutcome, type WindowsProgress } from '../windows.js';
import { clipStreams, windowsKeysOf } from './idempotency.js';
import type { ClipRef, ClipWindows, EmbedJobResult, WindowsDecodeJobResult } from './payloads.js';
import { checkSameBytes, type StageDeps } from './stages.js';

/** A clip submitted with windows. */
export type WindowedClip = ClipRef & { windows: ClipWindows };

export const isWindowed = (clip: ClipRef): clip is WindowedClip => clip.windows !== undefined;

const geometryOf = (clip: ClipRef): FrameGeometry => ({ size: clip.sampling.size, crop: clip.sampling.crop });

/** Whether the feature store holds the pass's embeddings of every stream. */
async function hasAll(clip: WindowedClip, deps: StageDeps): Promise<boolean> {
  return (await Promise.all(windowsKeysOf(clip).map((k) => deps.store.has(k)))).every(Boolean);
}

/** Decode stage of a windowed clip: the bytes checked, then a feature-store hit, or the probed video (no frames: see above). */
export async function decodeWindowsStage(clip: WindowedClip, deps: StageDeps): Promise<WindowsDecodeJobResult> {
  const t0 = performance.now();
  // the probe runs while the (long) video is hashed; on a store hit or changed bytes its result is dropped
  const probing = probe(clip.path, deps.tools);
  probing.catch(() => undefined);
  const hash = await contentHash(clip.path).catch((err: unknown) => {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `cannot read ${clip.source}`, { cause: err });
  });
  checkSameBytes(clip, hash);
  checkBackboneStreams(clipStreams(clip), clip.backbone);
  if (await hasAll(clip, deps)) return { windows: true, hit: true, decodeMs: Math.round(performance.now() - t0) };
  const info = await probing;
  return { windows: true, hit: false, info, decodeMs: Math.round(performance.now() - t0) };
}

export interface WindowsEmbedOptions {
  /** The job's head, opened only for a video too long for the feature store; the stage disposes it. */
  openHead: () => Promise<TemporalHead>;
  /** Store the pass when it has at most this many frames (else score here). @defaultValue 4096, as inline */
  maxStoredFrames?: number;
  /** Frames per backbone request. @defaultValue 32 */
  embedBatch?: number;
  signal?: AbortSignal;
  onProgress?: (p: WindowsProgress) => void;
}

/**
 * Embed stage of a windowed clip: one sequential decode into the worker's models (`models`: the
 * backbone for rgb and motion, the keypoint streams' own); the embeddings of every stream go to
 * the feature store, or (too long for it) the head scores the windows here. Idempotent: a pass
 * already stored (a retry after the write) is not run again.
 */
export async function embedWindowsStage(clip: WindowedClip, decoded: WindowsDecodeJobResult, deps: StageDeps, models: PassModels, options: WindowsEmbedOptions): Promise<EmbedJobResult> {
  const t0 = performance.now();
  const keys = windowsKeysOf(clip);
  const streams = clipStreams(clip);
  const { policy } = clip.windows;
  const stored = await hasAll(clip, deps);
  if (decoded.hit && !stored) throw new FramewiseError('FW_ERR_FEATURE_STORE', `the embeddings of ${clip.source} left the feature store between decode and embed`);
  if (decoded.hit || stored) {
    const backbone = !decoded.hit && streams.some((s) => s.id === 'rgb' || s.id === 'motion') ? await models.backbone() : undefined;
    return { cached: decoded.hit, frames: 0, embedMs: 0, backbone: backbone?.info ?? null, windows: { stored: true } };
  }
  const { info } = decoded;
  const pass = {
    policy,
    geometry: geometryOf(clip),
    streams,
    embedBatch: options.embedBatch ?? DEFAULT_WINDOWS_OPTIONS.embedBatch,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  };
  // the decoder stops at maxPassFrames: a pass within the limit is stored whole
  const frames = maxPassFrames(policy, info.durationSec);
  if (info.durationSec > 0 && frames <= (options.maxStoredFrames ?? DEFAULT_WINDOWS_OPTIONS.maxStoredFrames)) {
    const out = await runWindowsPass(info, models, deps.store, deps.tools, { ...pass, keys, maxStoredFrames: frames });
    if (!out.stored) throw new FramewiseError('FW_ERR_INTERNAL', `the windows pass over ${clip.source} gave ${out.frames} frames, more than the ${frames} it can (not stored)`);
    return { cached: false, frames: out.frames, embedMs: Math.round(performance.now() - t0), backbone: out.backbone ?? null, windows: { stored: true } };
  }
  const head = await options.openHead();
  try {
    checkCompatible(head.metadata, clip.backbone, 'the embed worker');
    checkSameStreams(clip, head);
    // no store: nothing of this pass is kept (nor the file hashed again)
    const { streams: _streams, ...scoring } = pass;
    const outcome = await scoreWindows(clip.path, head, { tools: deps.tools, store: undefined, identity: clip.backbone, backbone: models.backbone, keypointStream: models.keypointStream }, scoring);
    const scores: WindowResult[] = outcome.windows.map((w) => ({ start: w.start, end: w.end, frames: w.frames, scores: Array.from(w.scores) }));
    return { cached: false, frames: outcome.frames, embedMs: Math.round(performance.now() - t0), backbone: outcome.backbone ?? null, windows: { stored: false, video: outcome.video, scores } };
  } finally {
    head.dispose();
  }
}

/**
 * Classify stage of a windowed clip: the windows scored from the stored embeddings (or taken from
 * the embed stage), merged into segments: the result inline `labelWindowed` gives for the file,
 * `cached` and the engine saying what the embed stage did.
 */
export async function classifyWindowsStage(clip: WindowedClip, embedded: EmbedJobResult, head: TemporalHead, topK: number, deps: StageDeps): Promise<LabelSuccess> {
  checkCompatible(head.metadata, clip.backbone, 'the classify worker');
  const { policy } = clip.windows;
  const segmentation = segmentationFor(head, clip.windows);
  const done = embedded.windows;
  if (!done) throw new FramewiseError('FW_ERR_INTERNAL', `the embed stage of ${clip.clipId} did not run a windows pass`);
  let outcome: WindowsOutcome;
  if (done.stored) {
    checkSameStreams(clip, head);
    const seqs = await Promise.all(windowsKeysOf(clip).map((k) => deps.store.get(k)));
    if (seqs.some((s) => s === undefined)) throw new FramewiseError('FW_ERR_FEATURE_STORE', `no stored embeddings for ${clip.source} (feature store ${deps.store.root}; do all workers share FRAMEWISE_CACHE_DIR?)`);
    outcome = await scoreStoredWindows(seqs as FeatureSequence[], head, policy);
  } else {
    const windows: WindowScore[] = done.scores.map((w) => ({ start: w.start, end: w.end, frames: w.frames, scores: Float32Array.from(w.scores) }));
    outcome = { windows, video: done.video, frames: embedded.frames, cached: false, stored: false, backbone: undefined, timings: { totalMs: 0, embedMs: embedded.embedMs, classifyMs: 0 } };
  }
  const result = { ...outcome, cached: embedded.cached, backbone: embedded.backbone ?? undefined };
  return toWindowedResult(clip.source, result, head, clip.backbone, { policy, geometry: geometryOf(clip) }, segmentation, topK);
}

/** The head reads the streams the job was submitted with (ids and versions), else FW_ERR_MODEL_MISMATCH. */
function checkSameStreams(clip: WindowedClip, head: TemporalHead): void {
  const want = clipStreams(clip);
  const layout = head.streams;
  if (isRgbLayout(want) && isRgbLayout(layout)) return;
  if (layout.length !== want.length || layout.some((l, i) => l.id !== want[i]?.id || l.version !== want[i]?.version)) {
    throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the job's streams (${want.map((s) => s.id).join(',')}) are not the ones the head reads (${layout.map((l) => l.id).join(',')})`);
  }
}
