/**
 * The batching embedder: one backbone shared by the several embed jobs an embed worker holds at
 * once. Each job asks for its frames' embeddings; requests that arrive within `waitMs` of each
 * other (up to `maxFrames` frames) go to the backbone in one call, one call at a time.
 *
 * It is itself a `Backbone`, so the embed stage is the same `Extractor.embed` as inline mode.
 * Between calls it yields to the event loop, so BullMQ can renew job locks even when the engine
 * is synchronous (TF.js wasm); keep FRAMEWISE_BATCH_SIZE small with that engine.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Backbone, BackboneInfo } from '../../ml/backbone.js';

export interface BatchingOptions {
  /**
   * Most frames per backbone call (a single larger request is sent alone; the backbone splits
   * it into its own batches).
   * @defaultValue 32
   */
  maxFrames: number;
  /**
   * How long the first request of a call waits for others, in ms.
   * @defaultValue 20
   */
  waitMs: number;
}

export const DEFAULT_BATCHING: BatchingOptions = Object.freeze({ maxFrames: 32, waitMs: 20 });

export function validateBatchingOptions(o: BatchingOptions): BatchingOptions {
  if (!Number.isInteger(o.maxFrames) || o.maxFrames < 1) throw new RangeError(`maxFrames must be a positive integer, got ${o.maxFrames}`);
  if (!Number.isFinite(o.waitMs) || o.waitMs < 0) throw new RangeError(`waitMs must be a number of milliseconds >= 0, got ${o.waitMs}`);
  return o;
}

interface Pending {
  frames: Uint8Array;
  count: number;
  resolve: (v: Float32Array) => void;
  reject: (e: unknown) => void;
}

export interface BatchingStats {
  /** Backbone calls made. */
  calls: number;
  /** Embed requests (one per job). */
  requests: number;
  frames: number;
  /** Most requests served by one call. */
  maxRequestsPerCall: number;
}

export class BatchingBackbone implements Backbone {
  readonly stats: BatchingStats = { calls: 0, requests: 0, frames: 0, maxRequestsPerCall: 0 };
  private readonly opts: BatchingOptions;
  private queue: Pending[] = [];
  private queuedFrames = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;

  constructor(
    private readonly inner: Backbone,
    opts: Partial<BatchingOptions> = {},
  ) {
    this.opts = validateBatchingOptions({ ...DEFAULT_BATCHING, ...opts });
  }

  get info(): BackboneInfo {
    return this.inner.info;
  }

  embed(frames: Uint8Array, count: number): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new Error('the batching embedder is closed'));
    if (count === 0) return Promise.resolve(new Float32Array(0));
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ frames, count, resolve, reject });
      this.queuedFrames += count;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running) return; // the loop picks the queue up when the current call ends
    if (this.queuedFrames >= this.opts.maxFrames || this.opts.waitMs === 0) {
      this.clearTimer();
      void this.drain();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.drain();
      }, this.opts.waitMs);
    }
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Take requests for one call: at least one, then whole requests while they fit in maxFrames. */
  private take(): Pending[] {
    const batch: Pending[] = [];
    let frames = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0] as Pending;
      if (batch.length > 0 && frames + next.count > this.opts.maxFrames) break;
      batch.push(next);
      frames += next.count;
      this.queue.shift();
    }
    this.queuedFrames -= frames;
    return batch;
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        await this.run(batch);
        // let lock renewals, progress updates and new requests in before the next call
        await yieldToLoop();
      }
    } finally {
      this.running = false;
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    const total = batch.reduce((n, p) => n + p.count, 0);
    const frameBytes = total > 0 ? (batch[0] as Pending).frames.length / (batch[0] as Pending).count : 0;
    let input: Uint8Array;
    if (batch.length === 1) input = (batch[0] as Pending).frames;
    else {
      input = new Uint8Array(total * frameBytes);
      let off = 0;
      for (const p of batch) {
        input.set(p.frames.subarray(0, p.count * frameBytes), off);
        off += p.count * frameBytes;
      }
    }
    this.stats.calls++;
    this.stats.requests += batch.length;
    this.stats.frames += total;
    this.stats.maxRequestsPerCall = Math.max(this.stats.maxRequestsPerCall, batch.length);
    let out: Float32Array;
    try {
      out = await this.inner.embed(input, total);
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    const dim = out.length / total;
    let row = 0;
    for (const p of batch) {
      p.resolve(out.slice(row * dim, (row + p.count) * dim));
      row += p.count;
    }
  }

  async dispose(): Promise<void> {
    this.closed = true;
    this.clearTimer();
    const left = this.queue.splice(0);
    for (const p of left) p.reject(new Error('the batching embedder was closed'));
    await this.inner.dispose();
  }
}
