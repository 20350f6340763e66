/**
 * The pose stream (MoveNet MultiPose) on real CCTV fight clips, letterboxed by ffmpeg: people
 * found, coordinates inside the picture, deterministic, ONNX against TF.js, no tensor leaks,
 * black frames → zero vector and present 0.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameStream, LetterboxedFrames } from '../../src/ml/streams/frame-stream.js';
import { ensureKeypointOnnx, loadKeypointGraph } from '../../src/ml/streams/keypoint-models.js';
import { loadPoseStream, POSE_SLOT, poseDim } from '../../src/ml/streams/pose-stream.js';
import { initTfjs, tf } from '../../src/ml/tfjs-runtime.js';
import { blackFrames, decodeLetterboxed } from '../helpers/letterbox.js';

const DATA = join(process.cwd(), '..', 'shared', 'datasets', 'surv_fight');
const CLIPS = 8;
const FRAMES = 8;
const S = 256;

let cacheDir: string;
let clips: LetterboxedFrames[];
let onnx: FrameStream;

beforeAll(async () => {
  expect(await initTfjs('wasm')).toBe('wasm');
  cacheDir = await mkdtemp(join(tmpdir(), 'framewise-pose-'));
  clips = [];
  for (let i = 1; i <= CLIPS; i++) clips.push(await decodeLetterboxed(join(DATA, 'fight', `fi${String(i).padStart(3, '0')}.mp4`), S, FRAMES));
  onnx = await loadPoseStream({ cacheDir, threads: 2 });
}, 300_000);

afterAll(async () => {
  await onnx?.dispose();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

/** Every picture coordinate of a frame's vector: 17 × (x, y) and the box, per slot. */
function coordinates(v: Float32Array, maxPeople: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < maxPeople; p++) {
    const o = p * POSE_SLOT;
    for (let k = 0; k < 17; k++) out.push(v[o + 3 * k] ?? NaN, v[o + 3 * k + 1] ?? NaN);
    for (let j = 51; j < 55; j++) out.push(v[o + j] ?? NaN);
  }
  return out;
}

describe('pose stream (onnx)', () => {
  it('reports its contract: 256² input, 57·4 + 3 dims, versioned by the weights', () => {
    expect(onnx.id).toBe('pose');
    expect(onnx.inputSize).toBe(S);
    expect(onnx.dim).toBe(poseDim(4));
    expect(onnx.dim).toBe(231);
    expect(onnx.version).toMatch(/^movenet-multipose@[0-9a-f]{12}$/);
  });

  it('finds people in most fight clips, with coordinates inside the picture', async () => {
    let clipsWithPeople = 0;
    for (const clip of clips) {
      expect(clip.count).toBe(FRAMES);
      const { data, present } = await onnx.embed(clip);
      expect(data.length).toBe(FRAMES * onnx.dim);
      let seen = 0;
      for (let f = 0; f < clip.count; f++) {
        const v = data.subarray(f * onnx.dim, (f + 1) * onnx.dim);
        for (const c of coordinates(v, 4)) {
          expect(c).toBeGreaterThanOrEqual(0);
          expect(c).toBeLessThanOrEqual(1);
        }
        const slots = [0, 1, 2, 3].map((p) => v[p * POSE_SLOT + 56] ?? 0);
        const people = slots.reduce((a, b) => a + b, 0);
        expect(present[f]).toBe(people > 0 ? 1 : 0);
        expect(v[4 * POSE_SLOT]).toBeCloseTo(people / 4, 6);
        // slots fill from the first, largest box first
        for (let p = 1; p < 4; p++) if (slots[p]) expect(slots[p - 1]).toBe(1);
        if (people >= 2) {
          const area = (p: number): number => ((v[p * POSE_SLOT + 53] ?? 0) - (v[p * POSE_SLOT + 51] ?? 0)) * ((v[p * POSE_SLOT + 54] ?? 0) - (v[p * POSE_SLOT + 52] ?? 0));
          expect(area(0)).toBeGreaterThanOrEqual(area(1));
          expect(v[4 * POSE_SLOT + 2]).toBe(1);
          expect(v[4 * POSE_SLOT + 1]).toBeGreaterThan(0);
        } else expect(v[4 * POSE_SLOT + 2]).toBe(0);
        seen += present[f] ?? 0;
      }
      if (seen >= clip.count / 2) clipsWithPeople++;
    }
    // measured: 7 of these 8 clips have a person in at least half of their frames
    expect(clipsWithPeople).toBeGreaterThanOrEqual(5);
  });

  it('is deterministic: the same frames give identical vectors', async () => {
    const a = await onnx.embed(clips[2]!);
    const b = await onnx.embed(clips[2]!);
    expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
    expect([...b.present]).toEqual([...a.present]);
  });

  it('gives a zero vector and present 0 on black frames', async () => {
    const { data, present } = await onnx.embed(blackFrames(S, 2));
    expect([...present]).toEqual([0, 0]);
    expect(data.every((x) => x === 0)).toBe(true);
  });

  it('rejects frames of another size', async () => {
    await expect(onnx.embed(blackFrames(224, 1))).rejects.toThrow(/256/);
  });
});

describe('pose: ONNX against TF.js', () => {
  it('the converted MultiPose matches TF.js on real frames within 1e-3 (keypoints, boxes, scores)', async () => {
    const model = await ensureKeypointOnnx('movenet-multipose', S, cacheDir);
    const session = await ort.InferenceSession.create(model.path, { intraOpNumThreads: 2 });
    const { model: graph } = await loadKeypointGraph('movenet-multipose');
    let worst = 0;
    try {
      for (const clip of clips.slice(0, 3)) {
        for (let f = 0; f < clip.count; f += 2) {
          const frame = clip.data.subarray(f * S * S * 3, (f + 1) * S * S * 3);
          const mine = (await session.run({ input: new ort.Tensor('uint8', frame, [1, S, S, 3]) })).poses!.data as Float32Array;
          const ref = tf.tidy(() => graph.execute(tf.tensor4d(Int32Array.from(frame), [1, S, S, 3], 'int32'), 'Identity') as tf.Tensor);
          const theirs = (await ref.data()) as Float32Array;
          ref.dispose();
          expect(mine.length).toBe(6 * 56);
          for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs((mine[i] ?? 0) - (theirs[i] ?? 0)));
        }
      }
    } finally {
      graph.dispose();
      await session.release();
    }
    // measured 1e-5; 1e-3 of the square is a quarter pixel at 256²
    expect(worst).toBeLessThan(1e-3);
  });

  it('the tfjs engine gives the same vectors (within 1e-3) and leaks no tensors', async () => {
    const tfjs = await loadPoseStream({ cacheDir, engine: 'tfjs' });
    try {
      const before = tf.memory().numTensors;
      for (const clip of clips.slice(0, 2)) {
        const a = await onnx.embed(clip);
        const b = await tfjs.embed(clip);
        for (let f = 0; f < clip.count; f++) {
          // a person with a score right at the threshold may be kept by one engine only: compare frames where both agree
          if (a.present[f] !== b.present[f]) continue;
          for (let i = 0; i < onnx.dim; i++) expect(Math.abs((a.data[f * onnx.dim + i] ?? 0) - (b.data[f * onnx.dim + i] ?? 0))).toBeLessThan(1e-3);
        }
        expect([...b.present]).toEqual([...a.present]);
      }
      const black = await tfjs.embed(blackFrames(S, 1));
      expect(black.present[0]).toBe(0);
      expect(black.data.every((x) => x === 0)).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await tfjs.dispose();
    }
  });
});
