/**
 * Sampling policies: which moments of a clip become frames. Pure functions, no I/O.
 *
 * - `uniform`: N segments over the whole clip, one frame at the centre of each (TSN-style); with
 *   `jitter` (training augmentation), at a seeded random point of each segment instead.
 * - `fps`: a fixed rate from the start, at most `maxFrames` frames.
 * - `windows` (long videos, `WindowsPolicy`): W-second windows every S seconds over the whole
 *   video, each sampled like a clip with the head's `uniform:N`. Not a head's training policy:
 *   it is how a `uniform:N` head is applied to a video of any length.
 *
 * Never "the first N frames".
 */
import { z } from 'zod';
import { FramewiseError } from '../errors/index.js';

export const CROP_MODES = ['center', 'squash'] as const;
export type CropMode = (typeof CROP_MODES)[number];

export const SAMPLING_SCHEMA = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('uniform'),
    frames: z.number().int().min(1).max(512),
    /** Augmentation: a seed ≥ 1 moves each frame to a seeded random point of its segment (temporal jitter). */
    jitter: z.number().int().min(1).optional(),
  }),
  z.object({ kind: z.literal('fps'), fps: z.number().positive().max(240), maxFrames: z.number().int().min(1).max(100_000) }),
]);
export type SamplingPolicy = z.infer<typeof SAMPLING_SCHEMA>;

/** How sampled frames are made square: scale the short side then centre-crop, or squash the whole frame. */
export interface FrameGeometry {
  readonly size: number;
  readonly crop: CropMode;
  /** Augmentation: mirror the frames left–right (after the crop). */
  readonly flip?: boolean;
}

export const DEFAULT_SAMPLING: SamplingPolicy = Object.freeze({ kind: 'uniform', frames: 16 });
export const DEFAULT_CROP: CropMode = 'center';

/** The sequence length a head sees for this policy (the padded length). */
export function sequenceLength(policy: SamplingPolicy): number {
  return policy.kind === 'uniform' ? policy.frames : policy.maxFrames;
}

/**
 * A stable string for a policy + geometry, used in feature-store keys and results. For `windows`
 * the key names only the frame grid (`windowsgrid0.125`): every window size and stride on the same
 * grid decodes and embeds the same frames, so they share one feature-store entry.
 */
export function samplingKey(policy: DecodePolicy, geometry: FrameGeometry): string {
  const p =
    policy.kind === 'uniform'
      ? `uniform${policy.frames}${policy.jitter !== undefined ? `j${policy.jitter}` : ''}`
      : policy.kind === 'fps'
        ? `fps${policy.fps}x${policy.maxFrames}`
        : `windowsgrid${roundTime(windowGrid(policy).interval)}`;
  return `${p}-${geometry.size}-${geometry.crop}${geometry.flip ? '-flip' : ''}`;
}

/** Parse CLI-style sampling text: `uniform:16`, `fps:2`, `fps:2:64`. */
export function parseSampling(text: string): SamplingPolicy {
  const [kind, a, b] = text.split(':');
  const fail = (): never => {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid sampling '${text}': expected uniform:N (1-512) or fps:RATE[:MAXFRAMES]`);
  };
  let candidate: unknown;
  if (kind === 'uniform') candidate = { kind, frames: a === undefined ? 16 : Number(a) };
  else if (kind === 'fps') candidate = { kind, fps: Number(a), maxFrames: b === undefined ? 64 : Number(b) };
  else return fail();
  const parsed = SAMPLING_SCHEMA.safeParse(candidate);
  return parsed.success ? parsed.data : fail();
}

export function formatSampling(policy: SamplingPolicy): string {
  if (policy.kind === 'fps') return `fps:${policy.fps}:${policy.maxFrames}`;
  return `uniform:${policy.frames}${policy.jitter !== undefined ? `+jitter${policy.jitter}` : ''}`;
}

/** A number in [0, 1) for (seed, i): mulberry32 of both, the same on every machine. */
function seededUnit(seed: number, i: number): number {
  let t = (Math.imul(seed, 0x9e3779b1) + Math.imul(i + 1, 0x85ebca6b)) >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** How far from its segment's centre a jittered frame may move, as a share of the segment (±). */
export const JITTER_SPREAD = 0.4;

/**
 * Target times (seconds, on the decoder's clock: 0 at the video's first frame, see
 * `ZERO_CLOCK_FILTER`) for a clip starting at `start` and lasting `duration` seconds. For `uniform`: the centre of each of N equal segments. For `fps`: k / fps.
 */
export function targetTimes(policy: SamplingPolicy, start: number, duration: number): number[] {
  if (!(duration > 0)) return [start];
  if (policy.kind === 'uniform') {
    const seg = duration / policy.frames;
    const jitter = policy.jitter;
    // jitter: a seeded point of the middle 80 % of each segment, so frames keep their order
    const at = (i: number): number => (jitter === undefined ? 0.5 : 0.5 + (2 * seededUnit(jitter, i) - 1) * JITTER_SPREAD);
    return Array.from({ length: policy.frames }, (_, i) => start + (i + at(i)) * seg);
  }
  const count = Math.min(policy.maxFrames, Math.max(1, Math.floor(duration * policy.fps + 1e-9)));
  return Array.from({ length: count }, (_, i) => start + i / policy.fps);
}

// ---------------------------------------------------------------------------------------------
// windows: long videos

/**
 * W-second windows every S seconds over the whole video, each sampled like a clip with `frames`
 * (the head's `uniform:N`: the centre of each of N equal segments of the window).
 *
 * All windows take their frames from one grid, a frame every W/N seconds at the segment centres
 * ((j + 0.5)·W/N), so overlapping windows share frames: the video is decoded once, sequentially,
 * at N/W frames/s, and each frame is embedded once whatever the overlap. For that the stride is
 * a whole number of grid steps: `buildWindowsPolicy` rounds it (to the nearest, at least one).
 */
export interface WindowsPolicy {
  readonly kind: 'windows';
  /** Window length W (seconds). */
  readonly windowSec: number;
  /** Stride S (seconds): a whole number of grid steps (windowSec / frames). */
  readonly strideSec: number;
  /** Frames per window N: the head's `uniform:N`. */
  readonly frames: number;
}

/** Every policy the decoder understands: a head's policy, or windows over a long video. */
export type DecodePolicy = SamplingPolicy | WindowsPolicy;

/**
 * Default window length: 2 s. The bundled motion4 head was trained on clips of 1.6–3.2 s (2.4 s
 * on average) sampled `uniform:16`; 2 s windows see the same motion per frame at a slightly finer
 * time resolution. Head metadata does not record its clips' durations, so this is the default
 * for every head (`--windows W,S` overrides it).
 */
export const DEFAULT_WINDOW_SEC = 2;

/** Limits of `--windows`: a window of 0.1 s to 10 min, a stride of at most one window (no gaps). */
export const WINDOW_LIMITS = Object.freeze({ minWindowSec: 0.1, maxWindowSec: 600 });

/** Round to microseconds (stable keys and output). */
export const roundTime = (x: number): number => Math.round(x * 1e6) / 1e6;

/**
 * A windows policy for a `uniform:frames` head. Defaults: W = 2 s, S = W / 2 (every moment is
 * seen by two windows). The stride is rounded to a whole number of grid steps (W / frames).
 */
export function buildWindowsPolicy(frames: number, windowSec: number = DEFAULT_WINDOW_SEC, strideSec?: number): WindowsPolicy {
  const fail = (why: string): never => {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid windows: ${why}; expected W[,S] in seconds with ${WINDOW_LIMITS.minWindowSec} ≤ W ≤ ${WINDOW_LIMITS.maxWindowSec} and 0 < S ≤ W`);
  };
  if (!Number.isInteger(frames) || frames < 1 || frames > 512) fail(`frames per window must be 1-512, got ${frames}`);
  if (!(Number.isFinite(windowSec) && windowSec >= WINDOW_LIMITS.minWindowSec && windowSec <= WINDOW_LIMITS.maxWindowSec)) fail(`window ${windowSec} s`);
  const stride = strideSec ?? windowSec / 2;
  if (!(Number.isFinite(stride) && stride > 0 && stride <= windowSec + 1e-9)) fail(`stride ${stride} s`);
  const step = windowSec / frames;
  const steps = Math.max(1, Math.min(frames, Math.round(stride / step)));
  return { kind: 'windows', windowSec: roundTime(windowSec), strideSec: roundTime(steps * step), frames };
}

/** The frame grid of a windows policy: a frame every `interval` s, the first at `offset` (= interval / 2); `stride` in grid steps. */
export function windowGrid(policy: WindowsPolicy): { interval: number; offset: number; rate: number; strideSteps: number } {
  const interval = policy.windowSec / policy.frames;
  return { interval, offset: interval / 2, rate: policy.frames / policy.windowSec, strideSteps: Math.max(1, Math.round(policy.strideSec / interval)) };
}

/**
 * The most frames one windows pass over a video of `durationSec` seconds gives (grid frames over
 * the declared duration, plus two for rounding at the ends); the decoder stops there.
 */
export function maxPassFrames(policy: WindowsPolicy, durationSec: number): number {
  return Math.ceil(durationSec / windowGrid(policy).interval) + 2;
}

/** Parse `--windows`: `W,S`, `W` (S = W/2) or `auto` (the defaults), seconds. */
export function parseWindows(text: string, frames: number): WindowsPolicy {
  const t = text.trim().toLowerCase();
  if (t === 'auto' || t === 'default' || t === '') return buildWindowsPolicy(frames);
  const m = /^(\d+(?:\.\d+)?)(?:\s*[,:]\s*(\d+(?:\.\d+)?))?$/.exec(t);
  if (!m) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid windows '${text}': expected W,S in seconds (e.g. 2,1), W alone (S = W/2), or auto (W = ${DEFAULT_WINDOW_SEC}, S = ${DEFAULT_WINDOW_SEC / 2})`);
  }
  return buildWindowsPolicy(frames, Number(m[1]), m[2] === undefined ? undefined : Number(m[2]));
}

/** `windows:W,S:uniform:N` (for results). */
export function formatWindows(policy: WindowsPolicy): string {
  return `windows:${policy.windowSec},${policy.strideSec}:uniform:${policy.frames}`;
}

export interface WindowSpan {
  /** Seconds from the video start. */
  start: number;
  end: number;
}

/**
 * The windows of a video of `durationSec` seconds: [kS, kS + W) while they fit, then, when the
 * last of those ends before the video does, one more window aligned to the end ([D − W, D)), so
 * the whole video is covered and every window lasts W. A video shorter than W is one window [0, D).
 */
export function planWindows(policy: WindowsPolicy, durationSec: number): WindowSpan[] {
  const { interval } = windowGrid(policy);
  const W = policy.windowSec;
  const S = policy.strideSec;
  const D = Math.max(durationSec, 0);
  if (D <= W + interval / 2) return [{ start: 0, end: roundTime(D > 0 ? D : W) }];
  const out: WindowSpan[] = [];
  for (let k = 0; k * S + W <= D + interval / 2; k++) out.push({ start: roundTime(k * S), end: roundTime(k * S + W) });
  const lastEnd = out.length > 0 ? (out[out.length - 1] as WindowSpan).end : 0;
  if (D - lastEnd > interval / 2) out.push({ start: roundTime(D - W), end: roundTime(D) });
  return out;
}
