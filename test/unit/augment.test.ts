/** Augmentation as pure logic: jittered sampling positions, their store keys, mirrored labels, the --augment flag. */
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { augmentArg } from '../../src/cli/train-options.js';
import { mirroredLabel } from '../../src/jobs/train.js';
import { buildGeometryFilters } from '../../src/media/ffmpeg-args.js';
import { formatSampling, JITTER_SPREAD, samplingKey, targetTimes } from '../../src/media/sampling.js';

describe('temporal jitter', () => {
  it('moves each frame within the middle of its own segment, in order, the same way for the same seed', () => {
    const n = 16;
    const duration = 8;
    const seg = duration / n;
    const plain = targetTimes({ kind: 'uniform', frames: n }, 0, duration);
    const runs = [1, 2, 3].map((seed) => targetTimes({ kind: 'uniform', frames: n, jitter: seed }, 0, duration));
    for (const t of runs) {
      expect(t).toHaveLength(n);
      t.forEach((x, i) => {
        expect(x).toBeGreaterThanOrEqual((i + 0.5 - JITTER_SPREAD) * seg - 1e-9);
        expect(x).toBeLessThanOrEqual((i + 0.5 + JITTER_SPREAD) * seg + 1e-9);
        if (i > 0) expect(x).toBeGreaterThan(t[i - 1] as number);
      });
      expect(t).not.toEqual(plain);
    }
    expect(runs[0]).not.toEqual(runs[1]);
    expect(targetTimes({ kind: 'uniform', frames: n, jitter: 2 }, 0, duration)).toEqual(runs[1]);
    // spread over the segment, not stuck at one offset
    const offsets = (runs[0] as number[]).map((x, i) => x / seg - i);
    expect(Math.max(...offsets) - Math.min(...offsets)).toBeGreaterThan(0.3);
  });

  it('every variant has its own feature-store key and name; the plain policy keeps its key', () => {
    const g = { size: 224, crop: 'center' as const };
    const keys = new Set([
      samplingKey({ kind: 'uniform', frames: 16 }, g),
      samplingKey({ kind: 'uniform', frames: 16, jitter: 1 }, g),
      samplingKey({ kind: 'uniform', frames: 16, jitter: 2 }, g),
      samplingKey({ kind: 'uniform', frames: 16 }, { ...g, flip: true }),
    ]);
    expect(keys.size).toBe(4);
    expect(samplingKey({ kind: 'uniform', frames: 16 }, g)).toBe('uniform16-224-center');
    expect(formatSampling({ kind: 'uniform', frames: 16, jitter: 3 })).toBe('uniform:16+jitter3');
    expect(buildGeometryFilters({ ...g, flip: true }).at(-1)).toBe('hflip');
    expect(buildGeometryFilters(g)).not.toContain('hflip');
  });
});

describe('mirrored labels', () => {
  it('swap left and right (case kept) when that class exists, else the clip is not mirrored; other labels stay', () => {
    const labels = new Set(['pan_left', 'pan_right', 'zoom_in', 'Turn_Left', 'Turn_Right', 'LEFT_HAND', 'wave_left']);
    expect(mirroredLabel('pan_left', labels)).toBe('pan_right');
    expect(mirroredLabel('pan_right', labels)).toBe('pan_left');
    expect(mirroredLabel('Turn_Left', labels)).toBe('Turn_Right');
    expect(mirroredLabel('zoom_in', labels)).toBe('zoom_in');
    expect(mirroredLabel('wave_left', labels)).toBeUndefined();
    expect(mirroredLabel('LEFT_HAND', new Set(['LEFT_HAND', 'RIGHT_HAND']))).toBe('RIGHT_HAND');
  });
});

describe('--augment', () => {
  it('reads jitter[:K] and flip; refuses anything else', () => {
    expect(augmentArg('jitter:3,flip')).toEqual({ jitter: 3, flip: true });
    expect(augmentArg('jitter')).toEqual({ jitter: 2 });
    expect(augmentArg('flip')).toEqual({ flip: true });
    for (const bad of ['mirror', 'jitter:0', 'jitter:99', 'jitter:x']) expect(() => augmentArg(bad)).toThrow(InvalidArgumentError);
  });
});
