/**
 * The extract stage: video → per-frame features, through the feature store.
 *
 * For each file: hash → store hit? done. Otherwise probe → one sequential decode → batched embed
 * → store. Files are decoded ahead (ffmpeg runs in its own processes) while the backbone embeds
 * the current one, so neither stage waits on the other; results come out in input order.
 */
import { stat } from 'node:fs/promises';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { decodeClips } from '../media/batch-decode.js';
import { decodeFrames, probe, SPOOL_MAX_BYTES, type FrameBatch, type MediaTools, type VideoInfo } from '../media/ffmpeg.js';
import { samplingKey, type FrameGeometry, type SamplingPolicy } from '../media/sampling.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import { contentHash, type FeatureKey, type FeatureSequence, type FeatureStore } from './feature-store.js';
import { createStageTimings, DecodeAhead, LookupTrend, timeStage, type StageTimings } from './pipeline-schedule.js';

export interface ExtractorOptions {
  tools: MediaTools;
  store: FeatureStore;
  identity: BackboneIdentity;
  /** Opens the backbone; called at most once, and only when something is not in the store. */
  openBackbone: () => Promise<Backbone>;
  sampling: SamplingPolicy;
  geometry: FrameGeometry;
  /**
   * Files decoded ahead of the one being embedded: a fixed depth, or (default) a depth that adapts
   * to the backbone's rate, from 2 up to 6 (`DecodeAhead`).
   */
  prefetch?: number;
  /**
   * Most clips `extractMany` decodes in one ffmpeg process (`decodeClips`: the same frames as one
   * process per clip, without paying ffmpeg's start-up for each); 1 = one process per clip.
   * @defaultValue `DEFAULT_DECODE_GROUP`
   */
  decodeGroup?: number;
}

/** Clips per ffmpeg process in `extractMany` (measured on surv_fight: 16 % less decode CPU at 4, 26 % at 8). */
export const DEFAULT_DECODE_GROUP = 4;

/**
 * Clips per ffmpeg process for this sampling: `requested` (default `DEFAULT_DECODE_GROUP`), or 1
 * when one clip's frames could exceed `SPOOL_MAX_BYTES` (long `fps` samplings: a group holds all
 * its clips' frames at once).
 */
export function decodeGroupSize(requested: number | undefined, sampling: SamplingPolicy, geometry: FrameGeometry): number {
  const most = sampling.kind === 'uniform' ? sampling.frames : sampling.maxFrames;
  if (most * geometry.size * geometry.size * 3 > SPOOL_MAX_BYTES) return 1;
  return Math.max(1, Math.floor(requested ?? DEFAULT_DECODE_GROUP));
}

export type ExtractOutcome<T> =
  | { item: T; ok: true; seq: FeatureSequence; cached: boolean; info: VideoInfo | undefined }
  | { item: T; ok: false; error: FramewiseError };

/** What `prepare` gives: a feature-store hit, or the decoded frames of a miss (with its store key). */
export type Decoded = { hit: FeatureSequence } | DecodedVideo;
export type DecodedVideo = { key: FeatureKey; info: VideoInfo; frames: FrameBatch };

export interface ExtractStats {
  decoded: number;
  embedded: number;
  cached: number;
  failed: number;
  framesEmbedded: number;
  /** Milliseconds per stage, summed over files (parallel stages each count their own time). */
  timings: StageTimings;
}

/**
 * Errors that are not the file's fault and would come back for every file (no backbone, a full
 * or read-only cache folder): a run stops with one error (exit 3) instead of failing each file.
 */
export function stopsTheRun(err: FramewiseError): boolean {
  return err.code === 'FW_ERR_BACKBONE_UNAVAILABLE' || err.code === 'FW_ERR_STORAGE_FULL' || err.code === 'FW_ERR_STORAGE_READONLY';
}

export class Extractor {
  readonly stats: ExtractStats = { decoded: 0, embedded: 0, cached: 0, failed: 0, framesEmbedded: 0, timings: createStageTimings() };
  private readonly lookups = new LookupTrend();
  private backbone: Promise<Backbone> | undefined;
  /** The backbone's own description, once it has been opened (engine and backend in use). */
  loadedInfo: BackboneInfo | undefined;

  /** @param sharesBackbone a variant: its backbone belongs to the extractor it came from (not disposed here). */
  constructor(
    private readonly opts: ExtractorOptions,
    private readonly sharesBackbone = false,
  ) {}

  get identity(): BackboneIdentity {
    return this.opts.identity;
  }

  get sampling(): { policy: SamplingPolicy; geometry: FrameGeometry } {
    return { policy: this.opts.sampling, geometry: this.opts.geometry };
  }

  /**
   * An extractor for other sampling/geometry (augmented variants) that shares this one's store,
   * tools and backbone (opened once, by whichever extractor needs it first).
   */
  variant(sampling: SamplingPolicy, geometry: FrameGeometry): Extractor {
    return new Extractor({ ...this.opts, sampling, geometry, openBackbone: () => this.getBackbone() }, true);
  }

  get samplingKey(): string {
    return samplingKey(this.opts.sampling, this.opts.geometry);
  }

  async keyFor(path: string): Promise<FeatureKey> {
    const { identity } = this.opts;
    const hash = await timeStage(this.stats.timings, 'hashMs', () => contentHash(path));
    return { contentHash: hash, backboneId: identity.id, backboneVersion: identity.version, featureKind: identity.featureKind, sampling: this.samplingKey };
  }

  /**
   * The decode stage of one file: checks, content hash, feature-store lookup, then (on a miss)
   * probe and one sequential decode. While recent lookups missed (or when `probeAhead` says so),
   * the probe runs in parallel with the hash and lookup; its result is dropped on a hit. Queue
   * mode runs it in the decode worker.
   */
  async prepare(path: string, signal?: AbortSignal, probeAhead = this.lookups.mostlyMisses): Promise<Decoded> {
    const found = await this.lookup(path, probeAhead);
    if ('hit' in found) return found;
    const frames = await timeStage(this.stats.timings, 'decodeMs', () => decodeFrames(found.info, this.opts.sampling, this.opts.geometry, { tools: this.opts.tools, ...(signal ? { signal } : {}) }));
    this.stats.decoded++;
    return { ...found, frames };
  }

  /** Checks, content hash and feature-store lookup of one file; on a miss its probe (which runs with the hash while lookups miss). */
  private async lookup(path: string, probeAhead = this.lookups.mostlyMisses): Promise<{ hit: FeatureSequence } | { key: FeatureKey; info: VideoInfo }> {
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
    // a probe that turns out not to be needed (a hit, or a failed lookup) is not an unhandled rejection
    probing?.catch(() => undefined);
    const key = await this.keyFor(path);
    const hit = await timeStage(timings, 'storeReadMs', () => this.opts.store.get(key));
    this.lookups.observe(hit !== undefined);
    if (hit) return { hit };
    const info = await (probing ?? timeStage(timings, 'probeMs', () => probe(path, this.opts.tools)));
    return { key, info };
  }

  /**
   * The decode stage of several files: each one's lookup as in `prepare`, then the misses decoded
   * together in one ffmpeg process (`decodeClips`; the same frames, or each file's own error).
   * `decodeMs` counts the group's decode once.
   */
  private async prepareGroup(paths: readonly string[], signal?: AbortSignal): Promise<Array<Decoded | FramewiseError>> {
    const found = await Promise.all(paths.map((p) => this.lookup(p).catch((e: unknown) => toFramewiseError(e))));
    const misses = found.flatMap((f, i) => (f instanceof FramewiseError || 'hit' in f ? [] : [{ i, key: f.key, info: f.info }]));
    if (misses.length === 0) return found as Array<Decoded | FramewiseError>;
    const { sampling: policy, geometry, tools } = this.opts;
    const frames = await timeStage(this.stats.timings, 'decodeMs', () => decodeClips(misses.map((m) => ({ info: m.info, policy, geometry })), { tools, ...(signal ? { signal } : {}) }));
    const out: Array<Decoded | FramewiseError> = found.map((f) => (f instanceof FramewiseError || 'hit' in f ? f : toFramewiseError(new Error('not decoded'))));
    misses.forEach((m, j) => {
      const f = frames[j];
      if (f === undefined || f instanceof FramewiseError) out[m.i] = f ?? toFramewiseError(new Error('not decoded'));
      else {
        this.stats.decoded++;
        out[m.i] = { key: m.key, info: m.info, frames: f };
      }
    });
    return out;
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

  /** The embed stage: embed decoded frames and store the sequence. Queue mode runs it in the embed worker. */
  async embed(d: DecodedVideo): Promise<FeatureSequence> {
    const backbone = await this.getBackbone();
    const { identity } = this.opts;
    if (backbone.info.dim !== identity.dim || backbone.info.version !== identity.version) {
      throw new FramewiseError('FW_ERR_INTERNAL', `backbone reports ${backbone.info.version}/${backbone.info.dim}, expected ${identity.version}/${identity.dim}`);
    }
    const data = await timeStage(this.stats.timings, 'embedMs', () => backbone.embed(d.frames.data, d.frames.count));
    const seq: FeatureSequence = {
      key: d.key,
      count: d.frames.count,
      dim: identity.dim,
      times: d.frames.times,
      data,
      video: { durationSec: d.info.durationSec, width: d.info.width, height: d.info.height, fps: d.info.fps },
    };
    await timeStage(this.stats.timings, 'storeWriteMs', () => this.opts.store.put(seq));
    this.stats.embedded++;
    this.stats.framesEmbedded += d.frames.count;
    return seq;
  }

  /** Features of one file (store first). */
  async extractOne(path: string, signal?: AbortSignal): Promise<{ seq: FeatureSequence; cached: boolean; info: VideoInfo | undefined }> {
    const d = await this.prepare(path, signal);
    if ('hit' in d) {
      this.stats.cached++;
      return { seq: d.hit, cached: true, info: undefined };
    }
    return { seq: await this.embed(d), cached: false, info: d.info };
  }

  /**
   * Features for many files, in input order, decoding files ahead of the embed (`prefetch`, or a
   * depth that adapts to the backbone's rate). The embed side's wait for each decode is
   * `timings.decodeWaitMs`.
   * A failure of one file is an outcome, never an exception.
   */
  async *extractMany<T extends { path: string }>(items: readonly T[], signal?: AbortSignal): AsyncGenerator<ExtractOutcome<T>> {
    const fixed = this.opts.prefetch;
    const ahead = fixed !== undefined ? new DecodeAhead({ initial: fixed, min: Math.max(1, fixed), max: Math.max(1, fixed) }) : new DecodeAhead();
    const group = decodeGroupSize(this.opts.decodeGroup, this.opts.sampling, this.opts.geometry);
    const pending: Array<Promise<Decoded | FramewiseError>> = [];
    let next = 0;
    // files are decoded in groups (one ffmpeg process each); a new group starts while fewer than depth + group files are pending, so a whole group is always under way
    const fill = (): void => {
      while (next < items.length && pending.length < ahead.depth + (group > 1 ? group : 0)) {
        const paths = items.slice(next, next + group).map((it) => it.path);
        next += paths.length;
        if (paths.length === 1) pending.push(this.prepare(paths[0] as string, signal).catch((e: unknown) => toFramewiseError(e)));
        else {
          const all = this.prepareGroup(paths, signal).catch((e: unknown) => paths.map(() => toFramewiseError(e)));
          paths.forEach((_, j) => pending.push(all.then((r) => r[j] as Decoded | FramewiseError)));
        }
      }
    };
    fill();
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) return;
      const item = items[i] as T;
      const w0 = performance.now();
      const d = await (pending.shift() as Promise<Decoded | FramewiseError>);
      const waitMs = performance.now() - w0;
      fill();
      if (d instanceof FramewiseError) {
        this.stats.failed++;
        yield { item, ok: false, error: d };
        continue;
      }
      if ('hit' in d) {
        this.stats.cached++;
        yield { item, ok: true, seq: d.hit, cached: true, info: undefined };
        continue;
      }
      this.stats.timings.decodeWaitMs += waitMs;
      let seq: FeatureSequence;
      try {
        const e0 = performance.now();
        seq = await this.embed(d);
        ahead.observe(waitMs, performance.now() - e0);
        fill();
      } catch (err) {
        const error = toFramewiseError(err);
        // a backbone that cannot load, or a cache that cannot be written, is not this file's fault: stop the batch
        if (stopsTheRun(error)) throw error;
        this.stats.failed++;
        yield { item, ok: false, error };
        continue;
      }
      yield { item, ok: true, seq, cached: false, info: d.info };
    }
  }

  async dispose(): Promise<void> {
    const b = this.backbone;
    this.backbone = undefined;
    if (this.sharesBackbone) return;
    if (b) await (await b).dispose().catch(() => undefined);
  }
}
