/** The batching embedder: requests of several jobs share backbone calls, each gets its own rows back. */
import { describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchingBackbone } from '../../src/jobs/queue/batching-embedder.js';
import type { Backbone, BackboneInfo } from '../../src/ml/backbone.js';

const S = 2; // 2×2 "frames"
const FRAME = S * S * 3;
const DIM = 3;

/** A fake backbone: frame k's embedding is [first byte, count in this call, call number]. */
function fakeBackbone(delayMs = 5): Backbone & { calls: number[]; disposed: boolean } {
  const calls: number[] = [];
  const b = {
    calls,
    disposed: false,
    info: { id: 'mobilenet_v2', version: 'fake', featureKind: 'pooled', dim: DIM, inputSize: S, engine: 'onnx', backend: 'fake' } as BackboneInfo,
    async embed(frames: Uint8Array, count: number): Promise<Float32Array> {
      calls.push(count);
      await sleep(delayMs);
      if (frames[0] === 255) throw new Error('bad frame');
      const out = new Float32Array(count * DIM);
      for (let k = 0; k < count; k++) out.set([frames[k * FRAME] as number, count, calls.length], k * DIM);
      return out;
    },
    async dispose() {
      b.disposed = true;
    },
  };
  return b;
}

const frames = (values: number[]): Uint8Array => {
  const f = new Uint8Array(values.length * FRAME);
  values.forEach((v, k) => f.fill(v, k * FRAME, (k + 1) * FRAME));
  return f;
};

describe('BatchingBackbone', () => {
  it('puts requests that arrive within the wait into one call and splits the rows back', async () => {
    const inner = fakeBackbone();
    const b = new BatchingBackbone(inner, { maxFrames: 100, waitMs: 30 });
    const [a, c, d] = await Promise.all([b.embed(frames([1, 2]), 2), b.embed(frames([3]), 1), b.embed(frames([4, 5, 6]), 3)]);
    expect(inner.calls).toEqual([6]);
    expect(Array.from(a as Float32Array)).toEqual([1, 6, 1, 2, 6, 1]);
    expect(Array.from(c as Float32Array)).toEqual([3, 6, 1]);
    expect(Array.from(d as Float32Array)).toEqual([4, 6, 1, 5, 6, 1, 6, 6, 1]);
    expect(b.stats).toMatchObject({ calls: 1, requests: 3, frames: 6, maxRequestsPerCall: 3 });
    expect(b.info).toBe(inner.info);
  });

  it('never exceeds maxFrames with whole requests, and runs one call at a time', async () => {
    const inner = fakeBackbone(10);
    const b = new BatchingBackbone(inner, { maxFrames: 4, waitMs: 5 });
    const out = await Promise.all([b.embed(frames([1, 1, 1]), 3), b.embed(frames([2, 2]), 2), b.embed(frames([3, 3]), 2), b.embed(frames([4, 4, 4, 4, 4, 4]), 6)]);
    expect(inner.calls).toEqual([3, 4, 6]); // [3] alone (3+2 > 4), [2,2] together, the big one alone
    expect(out.map((o) => o.length / DIM)).toEqual([3, 2, 2, 6]);
    expect(Array.from(out[2] as Float32Array).filter((_, i) => i % DIM === 0)).toEqual([3, 3]);
  });

  it('a failing call fails only its own requests', async () => {
    const inner = fakeBackbone();
    const b = new BatchingBackbone(inner, { maxFrames: 1, waitMs: 0 });
    const results = await Promise.allSettled([b.embed(frames([255]), 1), b.embed(frames([7]), 1)]);
    expect(results[0]?.status).toBe('rejected');
    expect(results[1]).toMatchObject({ status: 'fulfilled' });
  });

  it('yields to the event loop between calls (timers run while a queue drains)', async () => {
    const inner = fakeBackbone(0);
    const b = new BatchingBackbone(inner, { maxFrames: 1, waitMs: 0 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await Promise.all(Array.from({ length: 30 }, (_, i) => b.embed(frames([i]), 1)));
    clearInterval(timer);
    expect(inner.calls).toHaveLength(30);
    expect(ticks).toBeGreaterThan(0);
  });

  it('validates its options and rejects work after dispose', async () => {
    expect(() => new BatchingBackbone(fakeBackbone(), { maxFrames: 0 })).toThrow(/maxFrames/);
    expect(() => new BatchingBackbone(fakeBackbone(), { waitMs: -1 })).toThrow(/waitMs/);
    const inner = fakeBackbone();
    const b = new BatchingBackbone(inner);
    await b.dispose();
    expect(inner.disposed).toBe(true);
    await expect(b.embed(frames([1]), 1)).rejects.toThrow(/closed/);
    expect((await new BatchingBackbone(fakeBackbone()).embed(new Uint8Array(0), 0)).length).toBe(0);
  });
});
