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
import { decodeMulti, decodeMultiClips, type MultiDecodeRequest, type MultiDecodeResult } from '../media/multi-decode.js';
import type { FrameGeometry, SamplingPolicy } from '../media/sampling.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import type { StreamLayout } from '../ml/stream-layout.js';
import { decodeGroupSize, stopsTheRun, type ExtractStats } from './extract.js';
import { contentHash, type FeatureKey, type FeatureSequence, type FeatureStore } from './feature-store.js';
import { createStageTimings, DecodeAhead, LookupTrend, timeStage } from './pipeline-schedule.js';
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
  /**
   * Files decoded ahead of the one being embedded: a fixed depth, or (default) a depth that adapts
   * to the embed's rate, from 2 up to 6 (`DecodeAhead`).
   */
  prefetch?: number;
  /** Most clips `extractMany` decodes in one ffmpeg process (as `ExtractorOptions.decodeGroup`). @defaultValue `DEFAULT_DECODE_GROUP` */
  decodeGroup?: number;
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
  private readonly lookups = new LookupTrend();
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
      } else out.push({ id, version: backboneStreamVersion(identity, id), dim: identity.dim, masked: false });
    }
    return out;
  }

  /** The feature-store key of each stream for a file with this content hash. */
  async keysFor(hash: string): Promise<FeatureKey[]> {
    const { identity, sampling, geometry } = this.opts;
    const keys: FeatureKey[] = [];
    for (const id of this.opts.streams) {
      if (!isKeypointStream(id)) keys.push(streamFeatureKey(hash, identity, sampling, geometry, { id, version: backboneStreamVersion(identity, id) }));
      else {
        const s = await this.getKeypoint(id);
        keys.push(streamFeatureKey(hash, identity, sampling, geometry, { id, version: s.version, inputSize: s.inputSize }));
      }
    }
    return keys;
  }

  /**
   * The decode stage: store lookups, then one decode for every stream that missed. While recent
   * lookups missed, the probe runs with the hash and lookups (its result is dropped on a hit).
   */
  async prepare(path: string, signal?: AbortSignal, probeAhead = this.lookups.mostlyMisses): Promise<Prepared> {
    const found = await this.lookup(path, probeAhead);
    if (!found.info || !found.request) return found;
    const { info, request } = found;
    const decoded = await timeStage(this.stats.timings, 'decodeMs', () => decodeMulti(info, this.opts.sampling, request, { tools: this.opts.tools, ...(signal ? { signal } : {}) }));
    this.stats.decoded++;
    return { seqs: found.seqs, keys: found.keys, info, decoded };
  }

  /** Checks, hash and store lookups of one file; on a miss, its probe and what to decode. */
  private async lookup(path: string, probeAhead = this.lookups.mostlyMisses): Promise<Prepared & { request?: MultiDecodeRequest }> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file: ${path}`, { cause: err });
    }
    if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${path}`);
    if (st.size === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_FILE', `file is empty (0 bytes): ${path}`);
    const { timings } = this.stats;
    const probing = probeAhead ? timeStage(timings, 'probeMs', () => probe(path, this.opts.tools)) : undefined;
    // a probe that turns out not to be needed (all hits, or a failed lookup) is not an unhandled rejection
    probing?.catch(() => undefined);
    const keys = await this.keysFor(await timeStage(timings, 'hashMs', () => contentHash(path)));
    const seqs = await timeStage(timings, 'storeReadMs', () => Promise.all(keys.map((k) => this.opts.store.get(k))));
    const allHit = seqs.every((s) => s !== undefined);
    this.lookups.observe(allHit);
    if (allHit) return { seqs, keys };
    const request: MultiDecodeRequest = {};
    for (const [i, id] of this.opts.streams.entries()) {
      if (seqs[i]) continue;
      if (id === 'rgb') request.rgb = this.opts.geometry;
      else if (id === 'motion') request.motion = this.opts.geometry;
      else (request.letterbox ??= []).push((await this.getKeypoint(id)).inputSize);
    }
    const info = await (probing ?? timeStage(timings, 'probeMs', () => probe(path, this.opts.tools)));
    return { seqs, keys, info, request };
  }

  /** The decode stage of several files: lookups as in `prepare`, then the misses decoded together in one ffmpeg process (`decodeMultiClips`). */
  private async prepareGroup(paths: readonly string[], signal?: AbortSignal): Promise<Array<Prepared | FramewiseError>> {
    const found = await Promise.all(paths.map((p) => this.lookup(p).catch((e: unknown) => toFramewiseError(e))));
    const misses = found.flatMap((f, i) => (f instanceof FramewiseError || !f.info || !f.request ? [] : [{ i, f, info: f.info, request: f.request }]));
    if (misses.length === 0) return found;
    const decoded = await timeStage(this.stats.timings, 'decodeMs', () =>
      decodeMultiClips(
        misses.map((m) => ({ info: m.info, policy: this.opts.sampling, request: m.request })),
        { tools: this.opts.tools, ...(signal ? { signal } : {}) },
      ),
    );
    const out: Array<Prepared | FramewiseError> = [...found];
    misses.forEach((m, j) => {
      const d = decoded[j];
      if (d === undefined || d instanceof FramewiseError) out[m.i] = d ?? toFramewiseError(new Error('not decoded'));
      else {
        this.stats.decoded++;
        out[m.i] = { seqs: m.f.seqs, keys: m.f.keys, info: m.info, decoded: d };
      }
    });
    return out;
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

  /**
   * The streams of many files, in input order, decoding files ahead of the embed (`prefetch`, or a
   * depth that adapts to the embed's rate). The embed side's wait for each decode is
   * `timings.decodeWaitMs`. A failure of one file is an outcome, never an exception.
   */
  async *extractMany<T extends { path: string }>(items: readonly T[], signal?: AbortSignal): AsyncGenerator<StreamOutcome<T>> {
    const fixed = this.opts.prefetch;
    const ahead = fixed !== undefined ? new DecodeAhead({ initial: fixed, min: Math.max(1, fixed), max: Math.max(1, fixed) }) : new DecodeAhead();
    const group = decodeGroupSize(this.opts.decodeGroup, this.opts.sampling, this.opts.geometry);
    const pending: Array<Promise<Prepared | FramewiseError>> = [];
    let next = 0;
    // files are decoded in groups (one ffmpeg process each), as in Extractor.extractMany
    const fill = (): void => {
      while (next < items.length && pending.length < ahead.depth + (group > 1 ? group : 0)) {
        const paths = items.slice(next, next + group).map((it) => it.path);
        next += paths.length;
        if (paths.length === 1) pending.push(this.prepare(paths[0] as string, signal).catch((e: unknown) => toFramewiseError(e)));
        else {
          const all = this.prepareGroup(paths, signal).catch((e: unknown) => paths.map(() => toFramewiseError(e)));
          paths.forEach((_, j) => pending.push(all.then((r) => r[j] as Prepared | FramewiseError)));
        }
      }
    };
    fill();
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) return;
      const item = items[i] as T;
      const w0 = performance.now();
      const d = await (pending.shift() as Promise<Prepared | FramewiseError>);
      const waitMs = performance.now() - w0;
      fill();
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
      this.stats.timings.decodeWaitMs += waitMs;
      let seqs: FeatureSequence[];
      try {
        const e0 = performance.now();
        seqs = await this.embed(d);
        ahead.observe(waitMs, performance.now() - e0);
        fill();
      } catch (err) {
        const error = toFramewiseError(err);
        // a model that cannot load is not this file's fault: stop the batch
        if (stopsTheRun(error) || error.code === 'FW_ERR_STREAM_UNAVAILABLE') throw error;
        this.stats.failed++;
        yield { item, ok: false, error };
        continue;
      }
      yield { item, ok: true, seqs, cached: false };
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
