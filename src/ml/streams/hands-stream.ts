/**
 * The `hands` stream: MediaPipe Hands as two models (Google, Apache-2.0; vendored in
 * pretrained/keypoints): the palm detector (`handdetect`) on the 256² letterboxed frame, then
 * the 21-point hand landmark model (`handlandmark-lite`) on a 224² crop per kept hand. Both
 * graphs are plain CNNs and convert whole to ONNX (engine `onnx`, the default; the palm
 * detector's preprocessing x/127.5 − 1 and the landmark model's x/255 are done inside the ONNX
 * graphs, which take uint8 pixels); engine `tfjs` runs the same graphs in TF.js (reference and
 * fallback). Anchor decoding and NMS are done here in TypeScript.
 *
 * Why the palm detector and not `handtrack` (the SSD in @vladmandic/human): on egogestar_dev
 * frames handtrack's best box scored < 0.1 on most frames of half the clips, often off the
 * hand, while the palm detector scores ≥ 0.5 on 36 of 46 frames of those same clips.
 *
 * The crop is MediaPipe's: the palm box rotated so the wrist → middle-finger-base direction
 * points up, shifted half a palm towards the fingers, its longer side × 2.6, sampled
 * bilinearly (outside the frame is black).
 *
 * Vector layout per frame, H = maxHands (default 2), dim = 92·H + 1:
 *   hand slot h (0 … H-1), at offset 92·h — hands ordered by crop size (largest first), ties by
 *   the crop centre's x:
 *     [0, 42)   21 landmarks × (x, y) in the picture (letterbox undone, clamped to [0, 1]),
 *               MediaPipe order: wrist, thumb 1-4, index 1-4 (8 = index fingertip), middle 1-4,
 *               ring 1-4, pinky 1-4
 *     [42, 84)  the same 21 × (x, y) relative to the hand's crop (0…1 across the rotated crop:
 *               the hand's own frame, wrist at the bottom)
 *     [84, 88)  the landmarks' bounding box x0, y0, x1, y1 in the picture
 *     88        palm detector score
 *     89        landmark model's hand-presence score
 *     90        handedness (landmark model's output, 0…1)
 *     91        present: 1 for a hand, 0 for an empty slot (whose other values are all 0)
 *   then, at offset 92·H: hand count / H.
 * A hand is kept when its palm score is ≥ minScore (default 0.5, MediaPipe's default
 * min_detection_confidence) after NMS (IoU > 0.3 with a better palm: dropped). `present` of a
 * frame = at least one hand kept.
 */
import { FramewiseError } from '../../errors/index.js';
import { tf } from '../tfjs-runtime.js';
import type { FrameStream, FrameStreamOptions, LetterboxedFrames } from './frame-stream.js';
import { ensureKeypointOnnx, keypointModelVersion, loadKeypointGraph } from './keypoint-models.js';
import { checkFrames, floatOutput, loadOrt, openStreamSession, streamThreads } from './onnx-session.js';
import { SerialCalls } from './serial-calls.js';

export const HANDS_INPUT_SIZE = 256;
export const HAND_LANDMARKS = 21;
export const HAND_SLOT = HAND_LANDMARKS * 4 + 4 + 4;
export const LANDMARK_CROP = 224;
const PALM_VALUES = 19;

export const HANDS_DEFAULTS = {
  maxHands: 2,
  minScore: 0.5,
  /** NMS: a palm overlapping a better one by more than this IoU is dropped. */
  iou: 0.3,
  /** MediaPipe's palm → hand rectangle: scale 2.6, shift −0.5 palm heights towards the fingers. */
  cropScale: 2.6,
  cropShift: -0.5,
} as const;

export interface HandsStreamOptions extends FrameStreamOptions {
  maxHands?: number;
  minScore?: number;
}

export const handsDim = (maxHands: number): number => HAND_SLOT * maxHands + 1;

type Content = LetterboxedFrames['content'];
const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

/** SSD anchor centres of MediaPipe's 256² palm detector: 2 per cell at strides 8 and 16, 6 at stride 32 (2944). */
export function palmAnchors(size = HANDS_INPUT_SIZE): Float32Array {
  const layers: Array<[number, number]> = [
    [size / 8, 2],
    [size / 16, 2],
    [size / 32, 6],
  ];
  const out: number[] = [];
  for (const [cells, per] of layers) {
    for (let y = 0; y < cells; y++) for (let x = 0; x < cells; x++) for (let k = 0; k < per; k++) out.push((x + 0.5) / cells, (y + 0.5) / cells);
  }
  return Float32Array.from(out);
}

export interface Palm {
  /** Square units [0, 1]. */
  cx: number;
  cy: number;
  w: number;
  h: number;
  score: number;
  /** Rotation (radians) that makes wrist → middle finger base point up. */
  rotation: number;
}

/** A rotated square crop: centre, side (square units) and rotation. */
export interface HandCrop {
  cx: number;
  cy: number;
  side: number;
  rotation: number;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

function iou(a: Palm, b: Palm): number {
  const ix = Math.max(0, Math.min(a.cx + a.w / 2, b.cx + b.w / 2) - Math.max(a.cx - a.w / 2, b.cx - b.w / 2));
  const iy = Math.max(0, Math.min(a.cy + a.h / 2, b.cy + b.h / 2) - Math.max(a.cy - a.h / 2, b.cy - b.h / 2));
  const inter = ix * iy;
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Palms from the detector's raw output ([A, 19], input pixels relative to each anchor): score
 * ≥ minScore, greedy NMS, at most maxHands, best first.
 */
export function selectPalms(raw: Float32Array, anchors: Float32Array, size: number, maxHands: number, minScore: number, iouLimit: number = HANDS_DEFAULTS.iou): Palm[] {
  const count = anchors.length / 2;
  const candidates: Array<Palm & { a: number }> = [];
  const logit = Math.log(minScore / (1 - minScore)); // compare logits: no exp for the 2944 rejected anchors
  for (let a = 0; a < count; a++) {
    const o = a * PALM_VALUES;
    const s = raw[o] ?? -Infinity;
    if (!(minScore <= 0 || s >= logit)) continue;
    const ax = anchors[2 * a] ?? 0;
    const ay = anchors[2 * a + 1] ?? 0;
    const w = (raw[o + 3] ?? 0) / size;
    const h = (raw[o + 4] ?? 0) / size;
    if (!(w > 0 && h > 0)) continue;
    const wx = (raw[o + 5] ?? 0) / size + ax;
    const wy = (raw[o + 6] ?? 0) / size + ay;
    const mx = (raw[o + 9] ?? 0) / size + ax;
    const my = (raw[o + 10] ?? 0) / size + ay;
    let rotation = Math.PI / 2 - Math.atan2(-(my - wy), mx - wx);
    rotation -= 2 * Math.PI * Math.floor((rotation + Math.PI) / (2 * Math.PI));
    candidates.push({ a, cx: (raw[o + 1] ?? 0) / size + ax, cy: (raw[o + 2] ?? 0) / size + ay, w, h, score: sigmoid(s), rotation });
  }
  candidates.sort((p, q) => q.score - p.score || p.a - q.a);
  const kept: Palm[] = [];
  for (const c of candidates) {
    if (kept.length >= maxHands) break;
    if (kept.every((k) => iou(k, c) <= iouLimit)) kept.push({ cx: c.cx, cy: c.cy, w: c.w, h: c.h, score: c.score, rotation: c.rotation });
  }
  return kept;
}

/** MediaPipe's hand rectangle for a palm: shifted towards the fingers, square, longer side × 2.6. */
export function handCrop(p: Palm): HandCrop {
  const shift = HANDS_DEFAULTS.cropShift * p.h;
  return {
    cx: p.cx - shift * Math.sin(p.rotation),
    cy: p.cy + shift * Math.cos(p.rotation),
    side: Math.max(p.w, p.h) * HANDS_DEFAULTS.cropScale,
    rotation: p.rotation,
  };
}

/** Crop coordinates (u, v in [0, 1] across the crop) → square coordinates. */
export function cropToSquare(c: HandCrop, u: number, v: number): [number, number] {
  const du = (u - 0.5) * c.side;
  const dv = (v - 0.5) * c.side;
  const cos = Math.cos(c.rotation);
  const sin = Math.sin(c.rotation);
  return [c.cx + du * cos - dv * sin, c.cy + du * sin + dv * cos];
}

/** Bilinear, rotated crop of an rgb24 square frame (side `size`) into out (`LANDMARK_CROP`² rgb24); outside the frame is black. */
export function cropResize(frame: Uint8Array, size: number, crop: HandCrop, out: Uint8Array): void {
  const n = LANDMARK_CROP;
  // source position (frame pixels, centres at +0.5) of crop pixel (i, j): origin + i·du + j·dv
  const cos = Math.cos(crop.rotation);
  const sin = Math.sin(crop.rotation);
  const step = (crop.side * size) / n;
  const [ox, oy] = cropToSquare(crop, 0.5 / n, 0.5 / n);
  const x00 = ox * size - 0.5;
  const y00 = oy * size - 0.5;
  const dux = step * cos;
  const duy = step * sin;
  const dvx = -step * sin;
  const dvy = step * cos;
  const at = (x: number, y: number, c: number): number => (x < 0 || y < 0 || x >= size || y >= size ? 0 : frame[(y * size + x) * 3 + c]!);
  let o = 0;
  for (let j = 0; j < n; j++) {
    let sx = x00 + j * dvx;
    let sy = y00 + j * dvy;
    for (let i = 0; i < n; i++, sx += dux, sy += duy, o += 3) {
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const w00 = (1 - fx) * (1 - fy);
      const w10 = fx * (1 - fy);
      const w01 = (1 - fx) * fy;
      const w11 = fx * fy;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < size && y0 + 1 < size) {
        const p = (y0 * size + x0) * 3;
        const q = p + size * 3;
        for (let c = 0; c < 3; c++) out[o + c] = Math.round(frame[p + c]! * w00 + frame[p + 3 + c]! * w10 + frame[q + c]! * w01 + frame[q + 3 + c]! * w11);
      } else {
        for (let c = 0; c < 3; c++) out[o + c] = Math.round(at(x0, y0, c) * w00 + at(x0 + 1, y0, c) * w10 + at(x0, y0 + 1, c) * w01 + at(x0 + 1, y0 + 1, c) * w11);
      }
    }
  }
}

/** Write one hand slot (see the file header) at out[o …]. `landmarks` are 21 × (x, y, z) in crop pixels (224²). */
export function writeHand(out: Float32Array, o: number, palm: Palm, crop: HandCrop, landmarks: Float32Array, presence: number, handedness: number, content: Content): void {
  let x0 = 1;
  let y0 = 1;
  let x1 = 0;
  let y1 = 0;
  for (let k = 0; k < HAND_LANDMARKS; k++) {
    const u = (landmarks[3 * k] ?? 0) / LANDMARK_CROP;
    const v = (landmarks[3 * k + 1] ?? 0) / LANDMARK_CROP;
    const [sx, sy] = cropToSquare(crop, u, v);
    const x = clamp01((sx - content.x0) / content.w);
    const y = clamp01((sy - content.y0) / content.h);
    out[o + 2 * k] = x;
    out[o + 2 * k + 1] = y;
    out[o + 42 + 2 * k] = clamp01(u);
    out[o + 42 + 2 * k + 1] = clamp01(v);
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x);
    y1 = Math.max(y1, y);
  }
  out[o + 84] = x0;
  out[o + 85] = y0;
  out[o + 86] = x1;
  out[o + 87] = y1;
  out[o + 88] = palm.score;
  out[o + 89] = presence;
  out[o + 90] = handedness;
  out[o + 91] = 1;
}

interface HandsRunner {
  /** Palm detector on one square frame: [2944, 19]. */
  detect(frame: Uint8Array): Promise<Float32Array>;
  /** Landmarks on one 224² rgb24 crop. */
  landmarks(crop: Uint8Array): Promise<{ landmarks: Float32Array; presence: number; handedness: number }>;
  dispose(): Promise<void>;
}

async function onnxRunner(opts: HandsStreamOptions): Promise<HandsRunner> {
  const ort = await loadOrt();
  const threads = streamThreads(opts.threads);
  const det = await ensureKeypointOnnx('handdetect', HANDS_INPUT_SIZE, opts.cacheDir);
  const lm = await ensureKeypointOnnx('handlandmark-lite', LANDMARK_CROP, opts.cacheDir);
  const detector = await openStreamSession(ort, det.path, threads);
  let landmarker: Awaited<ReturnType<typeof openStreamSession>>;
  try {
    landmarker = await openStreamSession(ort, lm.path, threads);
  } catch (err) {
    await detector.release();
    throw err;
  }
  const s = HANDS_INPUT_SIZE;
  return {
    async detect(frame) {
      return floatOutput(await detector.run({ input: new ort.Tensor('uint8', frame, [1, s, s, 3]) }), 'palms');
    },
    async landmarks(crop) {
      const r = await landmarker.run({ input: new ort.Tensor('uint8', crop, [1, LANDMARK_CROP, LANDMARK_CROP, 3]) });
      return { landmarks: floatOutput(r, 'landmarks'), presence: floatOutput(r, 'presence')[0] ?? 0, handedness: floatOutput(r, 'handedness')[0] ?? 0 };
    },
    async dispose() {
      await detector.release();
      await landmarker.release();
    },
  };
}

async function tfjsRunner(): Promise<HandsRunner> {
  const det = await loadKeypointGraph('handdetect');
  let lm: Awaited<ReturnType<typeof loadKeypointGraph>>;
  try {
    lm = await loadKeypointGraph('handlandmark-lite');
  } catch (err) {
    det.model.dispose();
    throw err;
  }
  const s = HANDS_INPUT_SIZE;
  return {
    async detect(frame) {
      const out = tf.tidy(() => det.model.execute(tf.tensor4d(frame, [1, s, s, 3], 'float32').div(127.5).sub(1), 'Identity') as tf.Tensor);
      try {
        return (await out.data()) as Float32Array;
      } finally {
        out.dispose();
      }
    },
    async landmarks(crop) {
      const outs = tf.tidy(() => lm.model.execute(tf.tensor4d(crop, [1, LANDMARK_CROP, LANDMARK_CROP, 3], 'float32').div(255), ['Identity', 'Identity_1', 'Identity_2']) as tf.Tensor[]);
      try {
        const [landmarks, presence, handedness] = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
        return { landmarks: landmarks ?? new Float32Array(), presence: presence?.[0] ?? 0, handedness: handedness?.[0] ?? 0 };
      } finally {
        tf.dispose(outs);
      }
    },
    dispose() {
      det.model.dispose();
      lm.model.dispose();
      return Promise.resolve();
    },
  };
}

class HandsStream implements FrameStream {
  readonly id = 'hands' as const;
  readonly inputSize = HANDS_INPUT_SIZE;
  readonly dim: number;
  readonly version = `${keypointModelVersion('handdetect')}+${keypointModelVersion('handlandmark-lite')}`;
  private readonly calls = new SerialCalls();
  private released = false;
  private readonly crop = new Uint8Array(LANDMARK_CROP * LANDMARK_CROP * 3);
  private readonly anchors = palmAnchors();

  constructor(
    private readonly runner: HandsRunner,
    private readonly maxHands: number,
    private readonly minScore: number,
  ) {
    this.dim = handsDim(maxHands);
  }

  embed(frames: LetterboxedFrames): Promise<{ data: Float32Array; present: Uint8Array }> {
    if (this.released) return Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'hands stream used after dispose()'));
    return this.calls.run(() => this.embedNow(frames));
  }

  private async embedNow(frames: LetterboxedFrames): Promise<{ data: Float32Array; present: Uint8Array }> {
    checkFrames(frames, this.inputSize, 'hands');
    const size = this.inputSize;
    const bytes = size * size * 3;
    const data = new Float32Array(frames.count * this.dim);
    const present = new Uint8Array(frames.count);
    for (let i = 0; i < frames.count; i++) {
      const frame = frames.data.subarray(i * bytes, (i + 1) * bytes);
      const palms = selectPalms(await this.runner.detect(frame), this.anchors, size, this.maxHands, this.minScore);
      const hands = palms.map((palm) => ({ palm, crop: handCrop(palm) }));
      hands.sort((a, b) => b.crop.side - a.crop.side || a.crop.cx - b.crop.cx);
      const base = i * this.dim;
      for (const [h, { palm, crop }] of hands.entries()) {
        cropResize(frame, size, crop, this.crop);
        const lm = await this.runner.landmarks(this.crop);
        writeHand(data, base + h * HAND_SLOT, palm, crop, lm.landmarks, lm.presence, lm.handedness, frames.content);
      }
      data[base + this.maxHands * HAND_SLOT] = hands.length / this.maxHands;
      present[i] = hands.length > 0 ? 1 : 0;
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

/** Open the hands stream (see the file header for the vector layout). */
export async function loadHandsStream(opts: HandsStreamOptions): Promise<FrameStream> {
  const maxHands = opts.maxHands ?? HANDS_DEFAULTS.maxHands;
  const minScore = opts.minScore ?? HANDS_DEFAULTS.minScore;
  if (!Number.isInteger(maxHands) || maxHands < 1 || maxHands > 4) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `hands stream: maxHands must be an integer from 1 to 4, got ${maxHands}`);
  if (!(minScore > 0 && minScore < 1)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `hands stream: minScore must be within (0, 1), got ${minScore}`);
  const engine = opts.engine ?? 'onnx';
  if (engine !== 'onnx' && engine !== 'tfjs') throw new FramewiseError('FW_ERR_CONFIG_INVALID', `hands stream: engine must be onnx or tfjs, got ${String(engine)}`);
  const runner = engine === 'onnx' ? await onnxRunner(opts) : await tfjsRunner();
  const stream = new HandsStream(runner, maxHands, minScore);
  try {
    const size = HANDS_INPUT_SIZE;
    await stream.embed({ data: new Uint8Array(size * size * 3), count: 1, size, content: { x0: 0, y0: 0, w: 1, h: 1 } });
    // warm the landmark model too (the black warm-up frame has no hand)
    await runner.landmarks(new Uint8Array(LANDMARK_CROP * LANDMARK_CROP * 3));
  } catch (err) {
    await stream.dispose();
    throw err;
  }
  return stream;
}
