/**
 * The `pose` stream: MoveNet MultiPose Lightning (Google, Apache-2.0; vendored in
 * pretrained/keypoints/movenet-multipose) on 256² letterboxed frames. The model runs on the
 * picture's part of the square, rounded to multiples of 32 (`poseWindow`: the bars cost no
 * work) and decodes up to 6 people inside its graph ([1, 6, 56]); the whole graph is converted
 * to ONNX per window shape (engine `onnx`, the default) or run by TF.js (engine `tfjs`, the
 * reference).
 *
 * Vector layout per frame, P = maxPeople (default 4), dim = 57·P + 3:
 *   person slot p (0 … P-1), at offset 57·p — people ordered by box area (largest first), ties
 *   by the box's left edge (smallest x0 first):
 *     [0, 51)   17 keypoints × (x, y, score), COCO order: nose, left eye, right eye, left ear,
 *               right ear, left shoulder, right shoulder, left elbow, right elbow, left wrist,
 *               right wrist, left hip, right hip, left knee, right knee, left ankle, right ankle
 *     [51, 55)  box x0, y0, x1, y1
 *     55        person score (MoveNet's box score)
 *     56        present: 1 for a person, 0 for an empty slot (whose other values are all 0)
 *   then, at offset 57·P:
 *     +0  person count / P (people kept, at most P)
 *     +1  nearest-pair distance: the smallest distance between two kept people's box centres,
 *         in picture pixels over the picture diagonal (0 when fewer than 2 people)
 *     +2  nearest-pair mask: 1 when at least 2 people, else 0
 * x and y are normalised to the picture (the letterbox undone with `content`, clamped to
 * [0, 1]). A person is kept when its score is ≥ minScore (default 0.1). Why 0.1: CCTV people
 * are small and blurred, and MoveNet scores them low. On the first 16 surv_fight `fight` clips
 * (8 frames at 8 fps, 256²) a person is kept in 70 % of frames at 0.1, 55 % at 0.15, 22 % at 0.25
 * (tfjs-models pose-detection's default); a black frame scores 0.00. The score stays in the
 * vector, so the head can discount weak detections. `present` of a frame = at least one person kept.
 */
import type * as Ort from 'onnxruntime-node';
import { FramewiseError } from '../../errors/index.js';
import { tf } from '../tfjs-runtime.js';
import type { FrameStream, FrameStreamOptions, LetterboxedFrames } from './frame-stream.js';
import { ensureKeypointOnnx, keypointModelVersion, loadKeypointGraph } from './keypoint-models.js';
import { checkFrames, floatOutput, loadOrt, openStreamSession, streamThreads } from './onnx-session.js';
import { SerialCalls } from './serial-calls.js';

export const POSE_INPUT_SIZE = 256;
export const POSE_KEYPOINTS = 17;
/** MoveNet MultiPose's fixed number of candidates per frame. */
export const POSE_CANDIDATES = 6;
const CANDIDATE = 56;
export const POSE_SLOT = POSE_KEYPOINTS * 3 + 4 + 1 + 1;
export const DEFAULT_MAX_PEOPLE = 4;
export const DEFAULT_MIN_POSE_SCORE = 0.1;

export interface PoseStreamOptions extends FrameStreamOptions {
  /** People per frame (default 4). */
  maxPeople?: number;
  /** Minimum person score (default 0.1). */
  minScore?: number;
}

export const poseDim = (maxPeople: number): number => POSE_SLOT * maxPeople + 3;

type Content = LetterboxedFrames['content'];
const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

/**
 * Decode one frame's raw MoveNet output (6 × 56, square coordinates) into the vector layout of
 * the file header, written at `out[offset …]` (which must be zero). Returns whether anyone was kept.
 */
export function decodePoses(raw: Float32Array, content: Content, maxPeople: number, minScore: number, out: Float32Array, offset: number): boolean {
  const toX = (v: number): number => clamp01((v - content.x0) / content.w);
  const toY = (v: number): number => clamp01((v - content.y0) / content.h);
  const people: Array<{ c: number; x0: number; y0: number; x1: number; y1: number; area: number; score: number }> = [];
  for (let c = 0; c < POSE_CANDIDATES; c++) {
    const base = c * CANDIDATE;
    const score = raw[base + 55] ?? 0;
    if (!(score >= minScore)) continue;
    const y0 = toY(raw[base + 51] ?? 0);
    const x0 = toX(raw[base + 52] ?? 0);
    const y1 = toY(raw[base + 53] ?? 0);
    const x1 = toX(raw[base + 54] ?? 0);
    people.push({ c, x0, y0, x1, y1, area: Math.max(0, x1 - x0) * Math.max(0, y1 - y0) * content.w * content.h, score });
  }
  people.sort((a, b) => b.area - a.area || a.x0 - b.x0 || a.c - b.c);
  const kept = people.slice(0, maxPeople);
  kept.forEach((p, slot) => {
    const o = offset + slot * POSE_SLOT;
    const base = p.c * CANDIDATE;
    for (let k = 0; k < POSE_KEYPOINTS; k++) {
      out[o + 3 * k] = toX(raw[base + 3 * k + 1] ?? 0);
      out[o + 3 * k + 1] = toY(raw[base + 3 * k] ?? 0);
      out[o + 3 * k + 2] = raw[base + 3 * k + 2] ?? 0;
    }
    out[o + 51] = p.x0;
    out[o + 52] = p.y0;
    out[o + 53] = p.x1;
    out[o + 54] = p.y1;
    out[o + 55] = p.score;
    out[o + 56] = 1;
  });
  const g = offset + POSE_SLOT * maxPeople;
  out[g] = kept.length / maxPeople;
  if (kept.length >= 2) {
    const diag = Math.hypot(content.w, content.h);
    let best = Infinity;
    for (let i = 0; i < kept.length; i++) {
      for (let j = i + 1; j < kept.length; j++) {
        const a = kept[i]!;
        const b = kept[j]!;
        const dx = ((a.x0 + a.x1) / 2 - (b.x0 + b.x1) / 2) * content.w;
        const dy = ((a.y0 + a.y1) / 2 - (b.y0 + b.y1) / 2) * content.h;
        best = Math.min(best, Math.hypot(dx, dy) / diag);
      }
    }
    out[g + 1] = best;
    out[g + 2] = 1;
  }
  return kept.length > 0;
}

/** Pixel window of the square that MoveNet runs on. */
export interface PoseWindow {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * The picture inside the letterbox, each side rounded up to a multiple of 32 (what MultiPose
 * takes) and centred on it: the black bars are mostly cut away (a 16:9 picture runs at
 * 256×160 instead of 256², 40 % less work) and the picture itself is unchanged.
 */
export function poseWindow(content: Content, size: number): PoseWindow {
  const fit = (start: number, extent: number): [number, number] => {
    const at = Math.round(start * size);
    const len = Math.round(extent * size);
    const side = Math.min(size, Math.max(32, Math.ceil(len / 32) * 32));
    return [Math.min(Math.max(at - Math.floor((side - len) / 2), 0), size - side), side];
  };
  const [x, w] = fit(content.x0, content.w);
  const [y, h] = fit(content.y0, content.h);
  return { x, y, w, h };
}

/** The window's pixels (a view when it spans whole rows). */
function windowPixels(frame: Uint8Array, size: number, win: PoseWindow): Uint8Array {
  if (win.w === size) return frame.subarray(win.y * size * 3, (win.y + win.h) * size * 3);
  const out = new Uint8Array(win.w * win.h * 3);
  for (let r = 0; r < win.h; r++) out.set(frame.subarray(((win.y + r) * size + win.x) * 3, ((win.y + r) * size + win.x + win.w) * 3), r * win.w * 3);
  return out;
}

/** Raw MultiPose output in window coordinates → square coordinates (a copy). */
function windowToSquare(raw: Float32Array, win: PoseWindow, size: number): Float32Array {
  const out = Float32Array.from(raw);
  const ys = (v: number): number => (win.y + v * win.h) / size;
  const xs = (v: number): number => (win.x + v * win.w) / size;
  for (let c = 0; c < POSE_CANDIDATES; c++) {
    const b = c * CANDIDATE;
    for (let k = 0; k < POSE_KEYPOINTS; k++) {
      out[b + 3 * k] = ys(raw[b + 3 * k] ?? 0);
      out[b + 3 * k + 1] = xs(raw[b + 3 * k + 1] ?? 0);
    }
    out[b + 51] = ys(raw[b + 51] ?? 0);
    out[b + 52] = xs(raw[b + 52] ?? 0);
    out[b + 53] = ys(raw[b + 53] ?? 0);
    out[b + 54] = xs(raw[b + 54] ?? 0);
  }
  return out;
}

/** Runs the model on one window of pixels (h × w rgb24; raw 6 × 56 output in window coordinates). */
type PoseRunner = { run(pixels: Uint8Array, h: number, w: number): Promise<Float32Array>; dispose(): Promise<void> };

async function onnxRunner(opts: PoseStreamOptions): Promise<PoseRunner> {
  const ort = await loadOrt();
  const threads = streamThreads(opts.threads);
  // one converted model and session per window shape (a handful: one per aspect ratio)
  const sessions = new Map<string, Promise<Ort.InferenceSession>>();
  const session = (h: number, w: number): Promise<Ort.InferenceSession> => {
    const key = `${h}x${w}`;
    let s = sessions.get(key);
    if (!s) {
      s = ensureKeypointOnnx('movenet-multipose', { height: h, width: w }, opts.cacheDir).then((m) => openStreamSession(ort, m.path, threads));
      sessions.set(key, s);
      s.catch(() => sessions.delete(key));
    }
    return s;
  };
  return {
    async run(pixels, h, w) {
      const result = await (await session(h, w)).run({ input: new ort.Tensor('uint8', pixels, [1, h, w, 3]) });
      return floatOutput(result, 'poses');
    },
    async dispose() {
      for (const s of sessions.values()) await (await s.catch(() => undefined))?.release();
    },
  };
}

async function tfjsRunner(): Promise<PoseRunner> {
  const { model } = await loadKeypointGraph('movenet-multipose');
  return {
    async run(pixels, h, w) {
      const out = tf.tidy(() => model.execute(tf.tensor4d(Int32Array.from(pixels), [1, h, w, 3], 'int32'), 'Identity') as tf.Tensor);
      try {
        return (await out.data()) as Float32Array;
      } finally {
        out.dispose();
      }
    },
    dispose: () => {
      model.dispose();
      return Promise.resolve();
    },
  };
}

class PoseStream implements FrameStream {
  readonly id = 'pose' as const;
  readonly inputSize = POSE_INPUT_SIZE;
  readonly dim: number;
  readonly version = keypointModelVersion('movenet-multipose');
  private readonly calls = new SerialCalls();
  private released = false;

  constructor(
    private readonly runner: PoseRunner,
    private readonly maxPeople: number,
    private readonly minScore: number,
  ) {
    this.dim = poseDim(maxPeople);
  }

  embed(frames: LetterboxedFrames): Promise<{ data: Float32Array; present: Uint8Array }> {
    if (this.released) return Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'pose stream used after dispose()'));
    return this.calls.run(() => this.embedNow(frames));
  }

  private async embedNow(frames: LetterboxedFrames): Promise<{ data: Float32Array; present: Uint8Array }> {
    checkFrames(frames, this.inputSize, 'pose');
    const size = this.inputSize;
    const bytes = size * size * 3;
    const win = poseWindow(frames.content, size);
    const data = new Float32Array(frames.count * this.dim);
    const present = new Uint8Array(frames.count);
    for (let i = 0; i < frames.count; i++) {
      const pixels = windowPixels(frames.data.subarray(i * bytes, (i + 1) * bytes), size, win);
      const raw = windowToSquare(await this.runner.run(pixels, win.h, win.w), win, size);
      present[i] = decodePoses(raw, frames.content, this.maxPeople, this.minScore, data, i * this.dim) ? 1 : 0;
    }
    return { data, present };
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.calls.idle();
    await this.runner.dispose();
  }
}

/** Open the pose stream (see the file header for the vector layout). */
export async function loadPoseStream(opts: PoseStreamOptions): Promise<FrameStream> {
  const maxPeople = opts.maxPeople ?? DEFAULT_MAX_PEOPLE;
  const minScore = opts.minScore ?? DEFAULT_MIN_POSE_SCORE;
  if (!Number.isInteger(maxPeople) || maxPeople < 1 || maxPeople > POSE_CANDIDATES) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `pose stream: maxPeople must be an integer from 1 to ${POSE_CANDIDATES}, got ${maxPeople}`);
  }
  if (!(minScore >= 0 && minScore <= 1)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `pose stream: minScore must be within [0, 1], got ${minScore}`);
  const engine = opts.engine ?? 'onnx';
  if (engine !== 'onnx' && engine !== 'tfjs') throw new FramewiseError('FW_ERR_CONFIG_INVALID', `pose stream: engine must be onnx or tfjs, got ${String(engine)}`);
  const runner = engine === 'onnx' ? await onnxRunner(opts) : await tfjsRunner();
  const stream = new PoseStream(runner, maxPeople, minScore);
  try {
    // warm-up: the first run allocates and pre-packs; keep it out of timings
    const size = POSE_INPUT_SIZE;
    await stream.embed({ data: new Uint8Array(size * size * 3), count: 1, size, content: { x0: 0, y0: 0, w: 1, h: 1 } });
  } catch (err) {
    await stream.dispose();
    throw err;
  }
  return stream;
}
