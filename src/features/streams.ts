/**
 * Per-frame streams: each gives one vector per sampled frame of a clip, stored in the feature
 * store under its own key (stream id + model version + sampling/geometry).
 *
 * - `rgb`: the backbone's feature of the frame (pooled or grid): what framewise always computed.
 * - `motion`: the backbone's feature of the frame-difference image |frame_t − frame_t−1| of
 *   consecutive source frames (made in the ffmpeg graph, media/multi-decode.ts).
 * - `pose`, `hands`: keypoint models (FrameStreams, src/ml/streams/) on letterboxed square
 *   frames; a per-frame presence mask says where nobody / no hand was seen (vector zero).
 */
import { FramewiseError } from '../errors/index.js';
import type { FrameStream, FrameStreamOptions, KeypointStreamId } from '../ml/streams/frame-stream.js';

// the keypoint streams' contract is declared once, beside its loaders
export type { FrameStream, FrameStreamOptions, KeypointStreamId, LetterboxedFrames } from '../ml/streams/frame-stream.js';

export const STREAM_IDS = ['rgb', 'motion', 'pose', 'hands'] as const;
export type StreamId = (typeof STREAM_IDS)[number];
export const KEYPOINT_STREAMS: readonly KeypointStreamId[] = ['pose', 'hands'];

export const isKeypointStream = (id: StreamId): id is KeypointStreamId => id === 'pose' || id === 'hands';
/** Streams computed by the frame backbone (rgb frames, difference images). */
export const isBackboneStream = (id: StreamId): id is 'rgb' | 'motion' => id === 'rgb' || id === 'motion';

/**
 * The default streams of `train` and `cv`: `motion`. Measured with the default head (3-member
 * ensembles, group-aware folds, seed 1; README "Accuracy"): motion alone 71.7 % on surv_fight and
 * 93.2 % on egogestar_dev, where `auto` (each stream alone, then the best two, chosen on the
 * training rows' own validation splits inside each fold) scored 67.0 and 91.5 %: with ~240 training
 * clips its validation splits are too small to tell candidates a few points apart, and it picked
 * rgb, pose or motion,hands in 3 of 5 folds. `auto` stays an option (`--streams auto`).
 */
export const DEFAULT_STREAMS: readonly StreamId[] = Object.freeze(['motion'] as StreamId[]);

/**
 * `rgb,motion` → ['rgb', 'motion'] in the canonical order (rgb, motion, pose, hands), each once.
 * `FW_ERR_CONFIG_INVALID` names the allowed values.
 */
export function parseStreams(text: string): StreamId[] {
  const parts = text
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  const bad = parts.filter((s) => !(STREAM_IDS as readonly string[]).includes(s));
  if (parts.length === 0 || bad.length > 0) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid streams '${text}': expected a comma-separated subset of ${STREAM_IDS.join(', ')}${bad.length ? ` (unknown: ${bad.join(', ')})` : ''}`);
  }
  return STREAM_IDS.filter((id) => parts.includes(id));
}

export const formatStreams = (streams: readonly StreamId[] | 'auto'): string => (streams === 'auto' ? 'auto' : streams.join(','));

/** Opens a keypoint stream (tests pass a double; the default loads src/ml/streams/{pose,hands}-stream). */
export type FrameStreamOpener = (id: KeypointStreamId, opts: FrameStreamOptions) => Promise<FrameStream>;

/** The keypoint streams' loaders (src/ml/streams/pose-stream.ts, hands-stream.ts). */
export const openFrameStream: FrameStreamOpener = async (id, opts) => {
  const file = id === 'pose' ? 'pose-stream' : 'hands-stream';
  const loader = id === 'pose' ? 'loadPoseStream' : 'loadHandsStream';
  // resolved at run time: the keypoint models are optional modules of the build
  const specifier = `../ml/streams/${file}.js`;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    throw new FramewiseError('FW_ERR_STREAM_UNAVAILABLE', `the ${id} stream is not available in this build (${file} cannot be loaded): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const load = mod[loader];
  if (typeof load !== 'function') throw new FramewiseError('FW_ERR_STREAM_UNAVAILABLE', `the ${id} stream is not available in this build (${file} has no ${loader})`);
  try {
    return (await (load as (o: FrameStreamOptions) => Promise<FrameStream>)(opts)) as FrameStream;
  } catch (err) {
    if (err instanceof FramewiseError) throw err;
    throw new FramewiseError('FW_ERR_STREAM_UNAVAILABLE', `cannot load the ${id} stream: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
};
