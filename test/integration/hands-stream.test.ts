/**
 * The hands stream (MediaPipe palm detector + hand landmarks) on real egocentric gesture clips
 * (egogestar_dev), letterboxed by ffmpeg: hands found, coordinates inside the picture,
 * deterministic, ONNX against TF.js per converted model, no tensor leaks, black frames → zero
 * vector and present 0.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FrameStream, LetterboxedFrames } from '../../src/ml/streams/frame-stream.js';
import { cropResize, HAND_SLOT, handCrop, handsDim, LANDMARK_CROP, loadHandsStream, palmAnchors, selectPalms } from '../../src/ml/streams/hands-stream.js';
import { ensureKeypointOnnx, loadKeypointGraph } from '../../src/ml/streams/keypoint-models.js';
import { initTfjs, tf } from '../../src/ml/tfjs-runtime.js';
import { blackFrames, decodeLetterboxed } from '../helpers/letterbox.js';

const DATA = join(process.cwd(), '..', 'shared', 'datasets', 'egogestar_dev');
const S = 256;

let cacheDir: string;
let clips: LetterboxedFrames[];
let onnx: FrameStream;

beforeAll(async () => {
  expect(await initTfjs('wasm')).toBe('wasm');
  cacheDir = await mkdtemp(join(tmpdir(), 'framewise-hands-'));
  const rows = (await readFile(join(DATA, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => l.split(','));
  // recording sessions 1 and 2: one clip per class each (22 clips), 8 frames at 4 fps
  const picked = rows.filter((r) => r[2] === '1' || r[2] === '2');
  expect(picked.length).toBe(22);
  clips = [];
  for (const r of picked) clips.push(await decodeLetterboxed(join(DATA, r[0] ?? ''), S, 8, 4));
  onnx = await loadHandsStream({ cacheDir, threads: 2 });
}, 300_000);

afterAll(async () => {
  await onnx?.dispose();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe('hands stream (onnx)', () => {
  it('reports its contract: 256² input, 92·2 + 1 dims, versioned by both models', () => {
    expect(onnx.id).toBe('hands');
    expect(onnx.inputSize).toBe(S);
    expect(onnx.dim).toBe(handsDim(2));
    expect(onnx.dim).toBe(185);
    expect(onnx.version).toMatch(/^handdetect@[0-9a-f]{12}\+handlandmark-lite@[0-9a-f]{12}$/);
  });

  it('finds a hand in most egocentric gesture frames, with coordinates inside the picture', async () => {
    let frames = 0;
    let withHand = 0;
    for (const clip of clips) {
      const { data, present } = await onnx.embed(clip);
      expect(data.length).toBe(clip.count * onnx.dim);
      for (let f = 0; f < clip.count; f++) {
        const v = data.subarray(f * onnx.dim, (f + 1) * onnx.dim);
        const slots = [0, 1].map((h) => v[h * HAND_SLOT + 91] ?? 0);
        expect(present[f]).toBe(slots[0]);
        if (slots[1]) expect(slots[0]).toBe(1);
        expect(v[2 * HAND_SLOT]).toBeCloseTo((slots[0]! + slots[1]!) / 2, 6);
        for (let h = 0; h < 2; h++) {
          const o = h * HAND_SLOT;
          for (let j = 0; j < 88; j++) {
            expect(v[o + j]).toBeGreaterThanOrEqual(0);
            expect(v[o + j]).toBeLessThanOrEqual(1);
          }
          if (slots[h]) {
            expect(v[o + 88]).toBeGreaterThanOrEqual(0.5); // palm score over the threshold
            expect(v[o + 84]).toBeLessThanOrEqual(v[o + 86]!); // landmark box x0 ≤ x1
          } else expect(v.subarray(o, o + HAND_SLOT).every((x) => x === 0)).toBe(true);
        }
        frames++;
        withHand += present[f] ?? 0;
      }
    }
    // measured: a hand in 156 of these 169 frames (0.92)
    expect(frames).toBe(169);
    expect(withHand / frames).toBeGreaterThanOrEqual(0.7);
  });

  it('is deterministic: the same frames give identical vectors', async () => {
    const a = await onnx.embed(clips[3]!);
    const b = await onnx.embed(clips[3]!);
    expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer))).toBe(true);
  });

  it('gives a zero vector and present 0 on black frames', async () => {
    const { data, present } = await onnx.embed(blackFrames(S, 2));
    expect([...present]).toEqual([0, 0]);
    expect(data.every((x) => x === 0)).toBe(true);
  });
});

describe('converted models cache', () => {
  it('converts once and deterministically: a second open reads the file, a damaged file is converted again to the same bytes', async () => {
    const first = await ensureKeypointOnnx('handlandmark-lite', LANDMARK_CROP, cacheDir); // converted when the stream loaded
    const before = await stat(first.path);
    const again = await ensureKeypointOnnx('handlandmark-lite', LANDMARK_CROP, cacheDir);
    expect(again.sha256).toBe(first.sha256);
    expect((await stat(again.path)).mtimeMs).toBe(before.mtimeMs);
    await writeFile(first.path, 'damaged');
    const fixed = await ensureKeypointOnnx('handlandmark-lite', LANDMARK_CROP, cacheDir);
    expect(fixed.sha256).toBe(first.sha256);
    expect(createHash('sha256').update(await readFile(fixed.path)).digest('hex')).toBe(first.sha256);
  });
});

describe('hands: ONNX against TF.js', () => {
  it('each converted model matches TF.js on real frames and crops (palm outputs and landmarks within 0.01 px)', async () => {
    const det = await ensureKeypointOnnx('handdetect', S, cacheDir);
    const lm = await ensureKeypointOnnx('handlandmark-lite', LANDMARK_CROP, cacheDir);
    const detSession = await ort.InferenceSession.create(det.path, { intraOpNumThreads: 2 });
    const lmSession = await ort.InferenceSession.create(lm.path, { intraOpNumThreads: 2 });
    const detGraph = await loadKeypointGraph('handdetect');
    const lmGraph = await loadKeypointGraph('handlandmark-lite');
    const anchors = palmAnchors();
    let worstPalm = 0;
    let worstLandmark = 0;
    let worstScore = 0;
    let crops = 0;
    try {
      for (const clip of clips.slice(0, 6)) {
        for (let f = 0; f < clip.count; f += 3) {
          const frame = clip.data.subarray(f * S * S * 3, (f + 1) * S * S * 3);
          const mine = (await detSession.run({ input: new ort.Tensor('uint8', frame, [1, S, S, 3]) })).palms!.data as Float32Array;
          const ref = tf.tidy(() => detGraph.model.execute(tf.tensor4d(frame, [1, S, S, 3], 'float32').div(127.5).sub(1), 'Identity') as tf.Tensor);
          const theirs = (await ref.data()) as Float32Array;
          ref.dispose();
          expect(mine.length).toBe(2944 * 19);
          for (let i = 0; i < mine.length; i++) worstPalm = Math.max(worstPalm, Math.abs((mine[i] ?? 0) - (theirs[i] ?? 0)));
          for (const palm of selectPalms(mine, anchors, S, 2, 0.5)) {
            const crop = new Uint8Array(LANDMARK_CROP * LANDMARK_CROP * 3);
            cropResize(frame, S, handCrop(palm), crop);
            const out = await lmSession.run({ input: new ort.Tensor('uint8', crop, [1, LANDMARK_CROP, LANDMARK_CROP, 3]) });
            const refs = tf.tidy(() => lmGraph.model.execute(tf.tensor4d(crop, [1, LANDMARK_CROP, LANDMARK_CROP, 3], 'float32').div(255), ['Identity', 'Identity_1', 'Identity_2']) as tf.Tensor[]);
            const [l, p, h] = await Promise.all(refs.map((t) => t.data() as Promise<Float32Array>));
            tf.dispose(refs);
            const ml = out.landmarks!.data as Float32Array;
            for (let i = 0; i < ml.length; i++) worstLandmark = Math.max(worstLandmark, Math.abs((ml[i] ?? 0) - (l![i] ?? 0)));
            worstScore = Math.max(worstScore, Math.abs((out.presence!.data as Float32Array)[0]! - p![0]!), Math.abs((out.handedness!.data as Float32Array)[0]! - h![0]!));
            crops++;
          }
        }
      }
    } finally {
      detGraph.model.dispose();
      lmGraph.model.dispose();
      await detSession.release();
      await lmSession.release();
    }
    expect(crops).toBeGreaterThan(3);
    // palm outputs are logits and input-pixel offsets (measured 4e-4); landmarks are 224² crop pixels (measured 1e-4)
    expect(worstPalm).toBeLessThan(1e-2);
    expect(worstLandmark).toBeLessThan(1e-2);
    expect(worstScore).toBeLessThan(1e-4);
  });

  it('the tfjs engine gives the same vectors (within 5e-3) and leaks no tensors', async () => {
    const tfjs = await loadHandsStream({ cacheDir, engine: 'tfjs' });
    try {
      const before = tf.memory().numTensors;
      let compared = 0;
      for (const clip of clips.slice(0, 3)) {
        const a = await onnx.embed(clip);
        const b = await tfjs.embed(clip);
        for (let f = 0; f < clip.count; f++) {
          // a palm right at the threshold may be kept by one engine only: compare frames where both agree.
          // 5e-3 (≈1 px at 256²), not the per-model 1e-2 px: palm boxes differing by 1e-4 px move
          // the crop, whose uint8 pixels then round differently before the landmark model.
          if (a.present[f] !== b.present[f]) continue;
          compared++;
          for (let i = 0; i < onnx.dim; i++) expect(Math.abs((a.data[f * onnx.dim + i] ?? 0) - (b.data[f * onnx.dim + i] ?? 0))).toBeLessThan(5e-3);
        }
      }
      expect(compared).toBeGreaterThan(15);
      const black = await tfjs.embed(blackFrames(S, 1));
      expect(black.present[0]).toBe(0);
      expect(black.data.every((x) => x === 0)).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      await tfjs.dispose();
    }
  });
});
