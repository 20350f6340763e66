/** The pure parts of the keypoint streams: MultiPose decoding and the hands geometry (anchors, NMS, crops). */
import { describe, expect, it } from 'vitest';
import { cropResize, cropToSquare, HAND_SLOT, handCrop, LANDMARK_CROP, palmAnchors, selectPalms, writeHand, type HandCrop } from '../../src/ml/streams/hands-stream.js';
import { decodePoses, POSE_SLOT, poseDim, poseWindow } from '../../src/ml/streams/pose-stream.js';

/** A raw MultiPose output (6 × 56) with the given people: box (square coords) and score; keypoints at the box centre. */
function multipose(people: Array<{ box: [number, number, number, number]; score: number }>): Float32Array {
  const raw = new Float32Array(6 * 56);
  people.forEach((p, c) => {
    const [x0, y0, x1, y1] = p.box;
    for (let k = 0; k < 17; k++) {
      raw[c * 56 + 3 * k] = (y0 + y1) / 2;
      raw[c * 56 + 3 * k + 1] = (x0 + x1) / 2;
      raw[c * 56 + 3 * k + 2] = 0.5;
    }
    raw.set([y0, x0, y1, x1, p.score], c * 56 + 51);
  });
  return raw;
}

describe('decodePoses', () => {
  const full = { x0: 0, y0: 0, w: 1, h: 1 };

  it('keeps people over the threshold, largest box first, ties by x, at most maxPeople', () => {
    const raw = multipose([
      { box: [0.5, 0, 0.75, 0.25], score: 0.5 }, // area 1/16, x0 0.5
      { box: [0.1, 0.1, 0.5, 0.5], score: 0.3 }, // area 0.16
      { box: [0, 0.5, 0.25, 0.75], score: 0.4 }, // area 1/16, x0 0: before the first on the tie
      { box: [0.3, 0.3, 0.9, 0.9], score: 0.05 }, // under the threshold
    ]);
    const out = new Float32Array(poseDim(2));
    expect(decodePoses(raw, full, 2, 0.1, out, 0)).toBe(true);
    expect([...out.subarray(51, 55)].map((v) => +v.toFixed(6))).toEqual([0.1, 0.1, 0.5, 0.5]);
    expect([...out.subarray(POSE_SLOT + 51, POSE_SLOT + 55)]).toEqual([0, 0.5, 0.25, 0.75]);
    expect(out[POSE_SLOT + 56]).toBe(1);
    expect(out[2 * POSE_SLOT]).toBe(1); // 2 kept of maxPeople 2
    // centres (0.3, 0.3) and (0.125, 0.625): distance over the diagonal √2
    expect(out[2 * POSE_SLOT + 1]).toBeCloseTo(Math.hypot(0.175, 0.325) / Math.SQRT2, 6);
    expect(out[2 * POSE_SLOT + 2]).toBe(1);
  });

  it('undoes the letterbox: picture coordinates, clamped to [0, 1]', () => {
    const content = { x0: 0, y0: 0.125, w: 1, h: 0.75 }; // 4:3 picture in the square
    const raw = multipose([{ box: [0.2, 0.05, 0.6, 0.5], score: 0.9 }]);
    const out = new Float32Array(poseDim(1));
    decodePoses(raw, content, 1, 0.1, out, 0);
    expect(out[51]).toBeCloseTo(0.2, 6);
    expect(out[52]).toBe(0); // 0.05 lies in the top bar: clamped
    expect(out[54]).toBeCloseTo((0.5 - 0.125) / 0.75, 6);
    expect(out[0]).toBeCloseTo(0.4, 6); // keypoint x (box centre)
    expect(out[1]).toBeCloseTo((0.275 - 0.125) / 0.75, 6);
    expect(out[POSE_SLOT + 2]).toBe(0); // one person: no pair
  });

  it('leaves the vector zero and reports nobody under the threshold', () => {
    const out = new Float32Array(poseDim(4));
    expect(decodePoses(multipose([{ box: [0, 0, 1, 1], score: 0.09 }]), full, 4, 0.1, out, 0)).toBe(false);
    expect(out.every((v) => v === 0)).toBe(true);
  });
});

describe('hands geometry', () => {
  it('has the 2944 anchors of the 256² palm detector', () => {
    const a = palmAnchors();
    expect(a.length).toBe(2944 * 2);
    expect([a[0], a[1], a[2], a[3]]).toEqual([0.015625, 0.015625, 0.015625, 0.015625]);
    expect([a[4096], a[4097]]).toEqual([0.03125, 0.03125]); // first stride-16 anchor
    expect([a[a.length - 2], a[a.length - 1]]).toEqual([0.9375, 0.9375]);
  });

  it('selects palms over the threshold with NMS, best first, upright palms unrotated', () => {
    const anchors = new Float32Array([0.5, 0.5, 0.5, 0.5, 0.2, 0.2]);
    const raw = new Float32Array(3 * 19);
    const palm = (a: number, logit: number, dx: number, size: number): void => {
      raw.set([logit, dx, 0, size, size], a * 19);
      raw.set([0, 10, 0, 0, 0, -10], a * 19 + 5); // wrist below, middle finger base above: upright
    };
    palm(0, 2, 0, 64); // score 0.88
    palm(1, 3, 4, 64); // score 0.95, overlaps the first
    palm(2, 0.5, 0, 32); // score 0.62, elsewhere
    const kept = selectPalms(raw, anchors, 256, 2, 0.5);
    expect(kept.map((k) => +k.score.toFixed(3))).toEqual([0.953, 0.622]);
    expect(kept[0]!.rotation).toBeCloseTo(0, 6);
    expect(kept[0]!.cx).toBeCloseTo(0.5 + 4 / 256, 6);
    expect(selectPalms(raw, anchors, 256, 2, 0.97)).toEqual([]);
  });

  it('crops MediaPipe style: shifted half a palm towards the fingers, 2.6 palms wide', () => {
    const c = handCrop({ cx: 0.5, cy: 0.5, w: 0.1, h: 0.1, score: 1, rotation: 0 });
    expect(c.cx).toBeCloseTo(0.5, 6);
    expect(c.cy).toBeCloseTo(0.45, 6);
    expect(c.side).toBeCloseTo(0.26, 6);
    const turned = handCrop({ cx: 0.5, cy: 0.5, w: 0.1, h: 0.1, score: 1, rotation: Math.PI / 2 });
    expect(turned.cx).toBeCloseTo(0.55, 6); // fingers point right
    expect(cropToSquare(turned, 0.5, 0)).toEqual([expect.closeTo(0.55 + 0.13, 6), expect.closeTo(0.5, 6)]);
  });

  it('samples the rotated crop like a per-pixel bilinear reference (off the frame edge too)', () => {
    const size = 64;
    const frame = Uint8Array.from({ length: size * size * 3 }, (_, i) => (i * 37 + (i >> 7)) % 256);
    const crop: HandCrop = { cx: 0.2, cy: 0.3, side: 0.7, rotation: 0.4 };
    const out = new Uint8Array(LANDMARK_CROP * LANDMARK_CROP * 3);
    cropResize(frame, size, crop, out);
    const px = (x: number, y: number, c: number): number => (x < 0 || y < 0 || x >= size || y >= size ? 0 : frame[(y * size + x) * 3 + c]!);
    let worst = 0;
    let black = 0;
    for (let j = 0; j < LANDMARK_CROP; j += 7) {
      for (let i = 0; i < LANDMARK_CROP; i += 5) {
        const [u, v] = cropToSquare(crop, (i + 0.5) / LANDMARK_CROP, (j + 0.5) / LANDMARK_CROP);
        const sx = u * size - 0.5;
        const sy = v * size - 0.5;
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const fx = sx - x0;
        const fy = sy - y0;
        for (let c = 0; c < 3; c++) {
          const want = (px(x0, y0, c) * (1 - fx) + px(x0 + 1, y0, c) * fx) * (1 - fy) + (px(x0, y0 + 1, c) * (1 - fx) + px(x0 + 1, y0 + 1, c) * fx) * fy;
          worst = Math.max(worst, Math.abs(out[(j * LANDMARK_CROP + i) * 3 + c]! - want));
          if (want === 0) black++;
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(0.5 + 1e-9);
    expect(black).toBeGreaterThan(100); // part of the crop lies off the frame
  });

  it('writes landmarks in the picture and in the crop', () => {
    const out = new Float32Array(HAND_SLOT);
    const crop: HandCrop = { cx: 0.5, cy: 0.5, side: 0.5, rotation: 0 };
    const lm = new Float32Array(63);
    for (let k = 0; k < 21; k++) lm.set([112, 112 + k, 0], 3 * k); // down the crop's centre line
    writeHand(out, 0, { cx: 0.5, cy: 0.55, w: 0.2, h: 0.2, score: 0.9, rotation: 0 }, crop, lm, 0.8, 0.3, { x0: 0, y0: 0.125, w: 1, h: 0.75 });
    expect(out[0]).toBeCloseTo(0.5, 6);
    expect(out[1]).toBeCloseTo((0.5 - 0.125) / 0.75, 6);
    expect(out[42]).toBeCloseTo(0.5, 6);
    expect(out[43 + 2 * 20]).toBeCloseTo(132 / 224, 6);
    expect([out[88], out[89], out[90], out[91]].map((v) => +v!.toFixed(6))).toEqual([0.9, 0.8, 0.3, 1]);
    expect(out[84]).toBeCloseTo(0.5, 6);
    expect(out[87]).toBeCloseTo((0.25 + (132 / 224) * 0.5 - 0.125) / 0.75, 5);
  });
});

describe('poseWindow', () => {
  it('cuts the letterbox bars down to the picture rounded up to multiples of 32, centred on it', () => {
    expect(poseWindow({ x0: 0, y0: 0.21875, w: 1, h: 0.5625 }, 256)).toEqual({ x: 0, y: 48, w: 256, h: 160 }); // 16:9: 144 rows → 160
    expect(poseWindow({ x0: 0, y0: 0.125, w: 1, h: 0.75 }, 256)).toEqual({ x: 0, y: 32, w: 256, h: 192 }); // 4:3: exactly 192
    expect(poseWindow({ x0: 0.21875, y0: 0, w: 0.5625, h: 1 }, 256)).toEqual({ x: 48, y: 0, w: 160, h: 256 }); // portrait
    expect(poseWindow({ x0: 0, y0: 0, w: 1, h: 1 }, 256)).toEqual({ x: 0, y: 0, w: 256, h: 256 });
    expect(poseWindow({ x0: 0, y0: 0.49, w: 1, h: 0.02 }, 256)).toEqual({ x: 0, y: 112, w: 256, h: 32 }); // a sliver of 5 rows: 32, centred
  });
});
