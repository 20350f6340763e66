import { describe, expect, it } from 'vitest';
import { addTimings, createStageTimings, DecodeAhead, LookupTrend, roundTimings, timeStage } from '../../src/features/pipeline-schedule.js';
import { decodeGroupSize, DEFAULT_DECODE_GROUP } from '../../src/features/extract.js';

describe('DecodeAhead', () => {
  it('goes deeper while the embed waits for decodes, up to its maximum', () => {
    const a = new DecodeAhead({ initial: 2, min: 1, max: 4 });
    expect(a.depth).toBe(2);
    a.observe(50, 100); // waited half an embed
    expect(a.depth).toBe(3);
    a.observe(20, 100);
    a.observe(20, 100);
    a.observe(20, 100);
    expect(a.depth).toBe(4);
  });

  it('keeps its depth for short waits and comes down after three files ready in time', () => {
    const a = new DecodeAhead({ initial: 3, min: 2, max: 6 });
    a.observe(5, 100); // a tenth or less of an embed: not behind
    expect(a.depth).toBe(3);
    a.observe(0, 100);
    a.observe(0, 100);
    expect(a.depth).toBe(3);
    a.observe(0, 100);
    expect(a.depth).toBe(2);
    for (let i = 0; i < 9; i++) a.observe(0, 100);
    expect(a.depth).toBe(2);
  });

  it('ignores files that were not embedded (store hits, failures)', () => {
    const a = new DecodeAhead({ initial: 2, min: 1, max: 6 });
    for (let i = 0; i < 5; i++) a.observe(500, 0);
    expect(a.depth).toBe(2);
  });
});

describe('LookupTrend', () => {
  it('says mostly misses only after misses, and turns back after a few hits', () => {
    const t = new LookupTrend();
    expect(t.mostlyMisses).toBe(false);
    t.observe(false);
    expect(t.mostlyMisses).toBe(true);
    for (let i = 0; i < 10; i++) t.observe(false);
    let hits = 0;
    while (t.mostlyMisses) {
      t.observe(true);
      hits++;
    }
    expect(hits).toBeGreaterThan(0);
    expect(hits).toBeLessThanOrEqual(3);
  });
});

describe('stage timings', () => {
  it('adds the time of a stage, also when it throws', async () => {
    const t = createStageTimings();
    await timeStage(t, 'probeMs', () => new Promise((r) => setTimeout(r, 20)));
    await expect(timeStage(t, 'hashMs', () => new Promise((_r, j) => setTimeout(() => j(new Error('x')), 20)))).rejects.toThrow('x');
    expect(t.probeMs).toBeGreaterThanOrEqual(15);
    expect(t.hashMs).toBeGreaterThanOrEqual(15);
    expect(t.embedMs).toBe(0);
    const sum = createStageTimings();
    addTimings(sum, t);
    addTimings(sum, t);
    expect(sum.probeMs).toBeCloseTo(2 * t.probeMs, 6);
    expect(Number.isInteger(roundTimings(sum).probeMs)).toBe(true);
  });
});

describe('decodeGroupSize', () => {
  it('groups clips (default 4, or as asked), but never clips whose frames could exceed the spool limit', () => {
    const g = { size: 224, crop: 'center' } as const;
    expect(decodeGroupSize(undefined, { kind: 'uniform', frames: 16 }, g)).toBe(DEFAULT_DECODE_GROUP);
    expect(decodeGroupSize(8, { kind: 'uniform', frames: 16 }, g)).toBe(8);
    expect(decodeGroupSize(0, { kind: 'uniform', frames: 16 }, g)).toBe(1);
    // 100,000 frames of 224² rgb24 (15 GB) are decoded one clip per process
    expect(decodeGroupSize(undefined, { kind: 'fps', fps: 30, maxFrames: 100_000 }, g)).toBe(1);
    expect(decodeGroupSize(undefined, { kind: 'fps', fps: 2, maxFrames: 64 }, g)).toBe(DEFAULT_DECODE_GROUP);
  });
});
