/**
 * The extract stage for several per-frame streams (features/streams.ts): video → one feature
 * sequence per stream, through the feature store.
 *
 * For each file: hash → look every stream up in the store; for the streams missing, probe and ONE
 * decode (media/multi-decode.ts: one ffmpeg process, one output per geometry the missing streams
 * need), then embed each missing stream (rgb and motion through the backbone, pose and hands
 * through their FrameStreams) and store it under its own key. Files are decoded ahead while the
 * current one is embedded; results come out in input order; one file's failure is an outcome.
 */
import { stat } from 'node:fs/promises';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { probe, type MediaTools, type VideoInfo } from '../media/ffmpeg.js';
import { decodeMulti, type MultiDecodeRequest, type MultiDecodeResult } from '../media/multi-decode.js';
import type { FrameGeometry, SamplingPolicy } from '../media/sampling.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import type { StreamLayout } from '../ml/stream-layout.js';
import { stopsTheRun, type ExtractStats } from './extract.js';
import { contentHash, type FeatureKey, type FeatureSequence, type FeatureStore } from './feature-store.js';
import { createStageTimings, timeStage } from './pipeline-schedule.js';
import { backboneStreamVersion, streamFeatureKey } from './stream-keys.js';
import { isKeypointStream, type FrameStream, type KeypointStreamId, type StreamId } from './streams.js';

export interface StreamExtractorOptions {
  tools: MediaTools;
  store: FeatureStore;
  /** The backbone of the rgb and motion streams. */
  identity: BackboneIdentity;
  openBackbone: () => Promise<Backbone>;
  /** Opens a keypoint stream (called once per stream, when its version is first needed). */
  openKeypointStream: (id: KeypointStreamId) => Promise<FrameStream>;
  sampling: SamplingPolicy;
  /** Geometry of the rgb and motion frames. */
  geometry: FrameGeometry;
  streams: readonly StreamId[];
  /** Files decoded ahead of the one being embedded (default 2). */
  prefetch?: number;
}

/** Per stream: frames embedded and the time it took (the stream's cost). */
export type StreamCost = Record<string, { frames: number; ms: number }>;

export type StreamOutcome<T> = { item: T; ok: true; seqs: FeatureSequence[]; cached: boolean } | { item: T; ok: false; error: FramewiseError };

/** What the decode stage gives: each stream's stored sequence (or undefined), its key, and for the streams that missed the one decode. */
export type Prepared = { seqs: Array<FeatureSequence | undefined>; keys: FeatureKey[]; info?: VideoInfo; decoded?: MultiDecodeResult };

export class StreamExtractor {
  readonly stats: ExtractStats = { decoded: 0, embedded: 0, cached: 0, failed: 0, framesEmbedded: 0, timings: createStageTimings() };
  readonly cost: StreamCost = {};
  private backbone: Promise<Backbone> | undefined;
  private readonly keypoint = new Map<KeypointStreamId, Promise<FrameStream>>();
  /** The backbone's own description, once it has been opened (engine and backend in use). */
  loadedInfo: BackboneInfo | undefined;

  constructor(private readonly opts: StreamExtractorOptions) {}

  get streams(): readonly StreamId[] {
    return this.opts.streams;
  }

  get identity(): BackboneIdentity {
    return this.opts.identity;
  }

  get sampling(): { policy: SamplingPolicy; geometry: FrameGeometry } {
    return { policy: this.opts.sampling, geometry: this.opts.geometry };
  }

  private getBackbone(): Promise<Backbone> {
    if (!this.backbone) {
      this.backbone = this.opts.openBackbone();
      this.backbone.then((b) => (this.loadedInfo = b.info)).catch(() => {
        this.backbone = undefined;
      });
    }
    return this.backbone;
  }

  private getKeypoint(id: KeypointStreamId): Promise<FrameStream> {
    let p = this.keypoint.get(id);
    if (!p) {
      p = this.opts.openKeypointStream(id);
      p.catch(() => this.keypoint.delete(id));
      this.keypoint.set(id, p);
    }
    return p;
  }

  /** What each stream gives per frame (id, version, dim, presence mask): the head's input layout. */
  async layout(): Promise<StreamLayout> {
    const { identity } = this.opts;
    const out: StreamLayout = [];
    for (const id of this.opts.streams) {
      if (isKeypointStream(id)) {
        const s = await this.getKeypoint(id);
        out.push({ id, version: s.version, dim: s.dim, masked: true });
      } else out.push({ id, version: backboneStreamVersion(identity), dim: identity.dim, masked: false });
    }
    return out;
  }

  /** The feature-store key of each stream for a file with this content hash. */
  async keysFor(hash: string): Promise<FeatureKey[]> {
    const { identity, sampling, geometry } = this.opts;
    const keys: FeatureKey[] = [];
    for (const id of this.opts.streams) {
      if (!isKeypointStream(id)) keys.push(streamFeatureKey(hash, identity, sampling, geometry, { id, version: backboneStreamVersion(identity) }));
      else {
        const s = await this.getKeypoint(id);
        keys.push(streamFeatureKey(hash, identity, sampling, geometry, { id, version: s.version, inputSize: s.inputSize }));
      }
    }
    return keys;
  }

  /** The decode stage: store lookups, then one decode for every stream that missed. */
  async prepare(path: string, signal?: AbortSignal): Promise<Prepared> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file: ${path}`, { cause: err });
    }
    if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${path}`);
    if (st.size === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_FILE', `file is empty (0 bytes): ${path}`);
    const { timings } = this.stats;
    const keys = await this.keysFor(await timeStage(timings, 'hashMs', () => contentHash(path)));
    const seqs = await timeStage(timings, 'storeReadMs', () => Promise.all(keys.map((k) => this.opts.store.get(k))));
    if (seqs.every((s) => s !== undefined)) return { seqs, keys };
    const request: MultiDecodeRequest = {};
    for (const [i, id] of this.opts.streams.entries()) {
      if (seqs[i]) continue;
      if (id === 'rgb') request.rgb = this.opts.geometry;
      else if (id === 'motion') request.motion = this.opts.geometry;
      else (request.letterbox ??= []).push((await this.getKeypoint(id)).inputSize);
    }
    const info = await timeStage(timings, 'probeMs', () => probe(path, this.opts.tools));
    const decoded = await timeStage(timings, 'decodeMs', () => decodeMulti(info, this.opts.sampling, request, { tools: this.opts.tools, ...(signal ? { signal } : {}) }));
    this.stats.decoded++;
    return { seqs, keys, info, decoded };
  }

  /** The embed stage: embed and store each stream that missed. */
  async embed(p: Prepared): Promise<FeatureSequence[]> {
    const { decoded, info } = p;
    if (!decoded || !info) return p.seqs as FeatureSequence[];
    const video = { durationSec: info.durationSec, width: info.width, height: info.height, fps: info.fps };
    const out: FeatureSequence[] = [];
    for (const [i, id] of this.opts.streams.entries()) {
      const have = p.seqs[i];
      if (have) {
        out.push(have);
        continue;
      }
      const t0 = performance.now();
      let data: Float32Array;
      let present: Uint8Array | undefined;
      let dim: number;
      if (id === 'rgb' || id === 'motion') {
        const frames = decoded[id];
        if (!frames) throw new FramewiseError('FW_ERR_INTERNAL', `no ${id} frames decoded`);
        const backbone = await this.getBackbone();
        data = await backbone.embed(frames.data, frames.count);
        dim = this.opts.identity.dim;
      } else {
        const s = await this.getKeypoint(id as KeypointStreamId);
        const frames = decoded.letterbox?.find((b) => b.size === s.inputSize);
        if (!frames) throw new FramewiseError('FW_ERR_INTERNAL', `no letterboxed frames of side ${s.inputSize} decoded`);
        ({ data, present } = await s.embed(frames));
        dim = s.dim;
      }
      const c = (this.cost[id] ??= { frames: 0, ms: 0 });
      c.frames += decoded.times.length;
      c.ms += performance.now() - t0;
      this.stats.timings.embedMs += performance.now() - t0;
      const seq: FeatureSequence = { key: p.keys[i] as FeatureKey, count: decoded.times.length, dim, times: decoded.times, data, video, ...(present ? { present } : {}) };
      await timeStage(this.stats.timings, 'storeWriteMs', () => this.opts.store.put(seq));
      this.stats.framesEmbedded += seq.count;
      out.push(seq);
    }
    this.stats.embedded++;
    return out;
  }

  /**
   * Frames/s of each stream's embedding on one file's frames (decoded once; nothing stored; each
   * model is warmed on one frame first, so loading is not counted).
   */
  async measureSpeeds(path: string): Promise<Partial<Record<StreamId, number>>> {
    const info = await probe(path, this.opts.tools);
    const request: MultiDecodeRequest = {};
    for (const id of this.opts.streams) {
      if (id === 'rgb') request.rgb = this.opts.geometry;
      else if (id === 'motion') request.motion = this.opts.geometry;
      else (request.letterbox ??= []).push((await this.getKeypoint(id)).inputSize);
    }
    const decoded = await decodeMulti(info, this.opts.sampling, request, { tools: this.opts.tools });
    const out: Partial<Record<StreamId, number>> = {};
    for (const id of this.opts.streams) {
      let run: (n: number) => Promise<unknown>;
      if (id === 'rgb' || id === 'motion') {
        const frames = decoded[id] as NonNullable<MultiDecodeResult['rgb']>;
        const backbone = await this.getBackbone();
        const bytes = frames.size * frames.size * 3;
        run = (n) => backbone.embed(frames.data.subarray(0, n * bytes), n);
      } else {
        const s = await this.getKeypoint(id);
        const lb = decoded.letterbox?.find((b) => b.size === s.inputSize) as NonNullable<MultiDecodeResult['letterbox']>[number];
        const bytes = lb.size * lb.size * 3;
        run = (n) => s.embed({ ...lb, data: lb.data.subarray(0, n * bytes), count: n });
      }
      await run(1);
      const t0 = performance.now();
      await run(decoded.times.length);
      out[id] = decoded.times.length / Math.max(1e-6, (performance.now() - t0) / 1000);
    }
    return out;
  }

  /** The streams of many files, in input order, decoding up to `prefetch` files ahead of the embed. */
  async *extractMany<T extends { path: string }>(items: readonly T[], signal?: AbortSignal): AsyncGenerator<StreamOutcome<T>> {
    const ahead = Math.max(1, this.opts.prefetch ?? 2);
    const pending: Array<Promise<Prepared | FramewiseError>> = [];
    const start = (i: number): void => {
      const item = items[i];
      if (item) pending.push(this.prepare(item.path, signal).catch((e: unknown) => toFramewiseError(e)));
    };
    let next = 0;
    while (next < Math.min(ahead, items.length)) start(next++);
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) return;
      const item = items[i] as T;
      const d = await (pending.shift() as Promise<Prepared | FramewiseError>);
      if (next < items.length) start(next++);
      if (d instanceof FramewiseError) {
        if (stopsTheRun(d) || d.code === 'FW_ERR_STREAM_UNAVAILABLE') throw d;
        this.stats.failed++;
        yield { item, ok: false, error: d };
        continue;
      }
      if (!d.decoded) {
        this.stats.cached++;
        yield { item, ok: true, seqs: d.seqs as FeatureSequence[], cached: true };
        continue;
      }
      try {
        yield { item, ok: true, seqs: await this.embed(d), cached: false };
      } catch (err) {
        const error = toFramewiseError(err);
        // a model that cannot load is not this file's fault: stop the batch
        if (stopsTheRun(error) || error.code === 'FW_ERR_STREAM_UNAVAILABLE') throw error;
        this.stats.failed++;
        yield { item, ok: false, error };
      }
    }
  }

  async dispose(): Promise<void> {
    const b = this.backbone;
    this.backbone = undefined;
    if (b) await (await b).dispose().catch(() => undefined);
    const ks = [...this.keypoint.values()];
    this.keypoint.clear();
    for (const k of ks) await (await k).dispose().catch(() => undefined);
  }
}
