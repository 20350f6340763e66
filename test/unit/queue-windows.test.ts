/** Pure pieces of windowed clips in queue mode: job ids, the submission's windows, stage progress. */
import { describe, expect, it } from 'vitest';
import { isFramewiseError } from '../../src/errors/index.js';
import { readProgress, toClipWindows } from '../../src/jobs/queue/clips.js';
import { clipJobId, windowsKeyOf } from '../../src/jobs/queue/idempotency.js';
import { CLIP_IDENTITY } from '../helpers/clip-identity.js';
import type { ModelInfo } from '../../src/jobs/queue/model-info.js';
import { windowsFeatureKey } from '../../src/jobs/windows.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';

const base = CLIP_IDENTITY;

const model = { model: base.model, backbone: base.backbone, sampling: base.sampling, metadata: { unknownThreshold: 0.4 } } as unknown as ModelInfo;

describe('windowed job ids', () => {
  it('differ from the clip-level id and between windows and thresholds; the same windows give the same id', () => {
    const plain = clipJobId(base);
    const w21 = clipJobId({ ...base, windows: { policy: buildWindowsPolicy(16, 2, 1) } });
    expect(w21).toMatch(/^clip-[0-9a-f]{32}$/);
    expect(w21).not.toBe(plain);
    expect(clipJobId({ ...base, windows: toClipWindows(model, 'auto', undefined) })).toBe(w21); // auto = 2,1
    expect(clipJobId({ ...base, windows: toClipWindows(model, '2, 1', undefined) })).toBe(w21);
    expect(clipJobId({ ...base, windows: undefined })).toBe(plain);
    for (const other of [{ policy: buildWindowsPolicy(16, 2, 0.5) }, { policy: buildWindowsPolicy(16, 3, 1) }, { policy: buildWindowsPolicy(16, 2, 1), threshold: 0.6 }]) {
      expect(clipJobId({ ...base, windows: other })).not.toBe(w21);
    }
  });

  it('use the feature-store key of `label --windows` (the grid, not the stride)', () => {
    const clip = { ...base, windows: { policy: buildWindowsPolicy(16, 2, 1) } };
    expect(windowsKeyOf(clip)).toEqual(windowsFeatureKey(base.contentHash, base.backbone, clip.windows.policy, { size: 224, crop: 'center' }));
    expect(windowsKeyOf(clip).sampling).toBe('windowsgrid0.125-224-center');
    expect(windowsKeyOf({ ...clip, windows: { policy: buildWindowsPolicy(16, 2, 0.5) } })).toEqual(windowsKeyOf(clip));
  });
});

describe('the windows of a submission', () => {
  it('are built with the model\'s frames per window, with an optional threshold', () => {
    expect(toClipWindows(model, undefined, undefined)).toBeUndefined();
    expect(toClipWindows(model, '2,1', 0.7)).toEqual({ policy: { kind: 'windows', windowSec: 2, strideSec: 1, frames: 16 }, threshold: 0.7 });
    expect(toClipWindows(model, '4', undefined)).toEqual({ policy: { kind: 'windows', windowSec: 4, strideSec: 2, frames: 16 } });
    expect(toClipWindows(model, '2,1', undefined, { hysteresis: 0.05, minSegmentSec: 6 })).toMatchObject({ hysteresis: 0.05, minSegmentSec: 6 });
  });

  it('check hysteresis and minimum segment length as `label` does, and they shape the job id only when given', () => {
    const fail = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(isFramewiseError(e, 'FW_ERR_CONFIG_INVALID')).toBe(true);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    // the model's threshold (0.4) bounds the hysteresis unless a threshold is given
    expect(fail(() => toClipWindows(model, '2,1', undefined, { hysteresis: 0.5 }))).toContain('hysteresis');
    expect(toClipWindows(model, '2,1', 0.8, { hysteresis: 0.5 })).toMatchObject({ threshold: 0.8, hysteresis: 0.5 });
    expect(fail(() => toClipWindows(model, undefined, undefined, { minSegmentSec: 3 }))).toContain('use them with `windows`');
    const plain = toClipWindows(model, '2,1', undefined);
    const ids = new Set([plain, toClipWindows(model, '2,1', undefined, { hysteresis: 0.05 }), toClipWindows(model, '2,1', undefined, { minSegmentSec: 6 })].map((windows) => clipJobId({ ...base, windows })));
    expect(ids.size).toBe(3);
    expect(clipJobId({ ...base, windows: plain })).toBe(clipJobId({ ...base, windows: { policy: buildWindowsPolicy(16, 2, 1) } }));
  });

  it('refuse bad values, a threshold without windows, and a head without uniform:N sampling', () => {
    const fps = { ...model, sampling: { ...base.sampling, policy: { kind: 'fps', fps: 2, maxFrames: 64 } } } as ModelInfo;
    for (const [m, w, t, text] of [
      [model, '2,5', undefined, 'S ≤ W'],
      [model, 'abc', undefined, "invalid windows 'abc'"],
      [model, '0', undefined, 'window 0 s'],
      [model, undefined, 0.5, 'use them with `windows`'],
      [model, '2,1', 1.5, '[0, 1]'],
      [fps, 'auto', undefined, 'uniform:N'],
    ] as const) {
      let err: unknown;
      try {
        toClipWindows(m, w, t);
      } catch (e) {
        err = e;
      }
      expect(isFramewiseError(err, 'FW_ERR_CONFIG_INVALID'), `${w} ${t}`).toBe(true);
      expect((err as Error).message).toContain(text);
    }
  });
});

describe('stage progress', () => {
  it('reads a percentage, or {percent, ...figures} as progress and detail', () => {
    expect(readProgress(40)).toEqual({ progress: 40, detail: null });
    expect(readProgress(undefined)).toEqual({ progress: 0, detail: null });
    expect(readProgress({ percent: 25, doneSec: 3, durationSec: 12, frames: 24, windows: 2, note: 'x' })).toEqual({ progress: 25, detail: { doneSec: 3, durationSec: 12, frames: 24, windows: 2 } });
    expect(readProgress({ percent: 5 })).toEqual({ progress: 5, detail: null });
  });
});
