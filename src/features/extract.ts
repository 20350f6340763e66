/**
 * The extract stage: video → per-frame features, through the feature store.
 *
 * For each file: hash → store hit? done. Otherwise probe → one sequential decode → batched embed
 * → store. Files are decoded ahead (ffmpeg runs in its own processes) while the backbone embeds
 * the current one, so neither stage waits on the other; results come out in input order.
 */
import { stat } from 'node:fs/promises';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { decodeFrames, probe, type FrameBatch, type MediaTools, type VideoInfo } from '../media/ffmpeg.js';
import { samplingKey, type FrameGeometry, type SamplingPolicy } from '../media/sampling.js';
import type { Backbone, BackboneInfo } from '../ml/backbone.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import { contentHash, type FeatureKey, type FeatureSequence, type FeatureStore } from './feature-store.js';

export interface ExtractorOptions {
  tools: MediaTools;
  store: FeatureStore;
  identity: BackboneIdentity;
  /** Opens the backbone; called at most once, and only when something is not in the store. */
  openBackbone: () => Promise<Backbone>;
  sampling: SamplingPolicy;
  geometry: FrameGeometry;
  /** Files decoded ahead of the one being embedded (default 2). */
  prefetch?: number;
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
}

/**
 * Errors that are not the file's fault and would come back for every file (no backbone, a full
 * or read-only cache folder): a run stops with one error (exit 3) instead of failing each file.
 */
export function stopsTheRun(err: FramewiseError): boolean {
  return err.code === 'FW_ERR_BACKBONE_UNAVAILABLE' || err.code === 'FW_ERR_STORAGE_FULL' || err.code === 'FW_ERR_STORAGE_READONLY';
}

export class Extractor {
  readonly stats: ExtractStats = { decoded: 0, embedded: 0, cached: 0, failed: 0, framesEmbedded: 0 };
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
    return { contentHash: await contentHash(path), backboneId: identity.id, backboneVersion: identity.version, featureKind: identity.featureKind, sampling: this.samplingKey };
  }

  /**
   * The decode stage of one file: checks, content hash, feature-store lookup, then (on a miss)
   * probe and one sequential decode. Queue mode runs it in the decode worker.
   */
  async prepare(path: string, signal?: AbortSignal): Promise<Decoded> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file: ${path}`, { cause: err });
    }
    if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${path}`);
    if (st.size === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_FILE', `file is empty (0 bytes): ${path}`);
    const key = await this.keyFor(path);
    const hit = await this.opts.store.get(key);
    if (hit) return { hit };
    const info = await probe(path, this.opts.tools);
    const frames = await decodeFrames(info, this.opts.sampling, this.opts.geometry, { tools: this.opts.tools, ...(signal ? { signal } : {}) });
    this.stats.decoded++;
    return { key, info, frames };
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
    const data = await backbone.embed(d.frames.data, d.frames.count);
    const seq: FeatureSequence = {
      key: d.key,
      count: d.frames.count,
      dim: identity.dim,
      times: d.frames.times,
      data,
      video: { durationSec: d.info.durationSec, width: d.info.width, height: d.info.height, fps: d.info.fps },
    };
    await this.opts.store.put(seq);
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
   * Features for many files, in input order, decoding up to `prefetch` files ahead of the embed.
   * A failure of one file is an outcome, never an exception.
   */
  async *extractMany<T extends { path: string }>(items: readonly T[], signal?: AbortSignal): AsyncGenerator<ExtractOutcome<T>> {
    const ahead = Math.max(1, this.opts.prefetch ?? 2);
    const pending: Array<Promise<Decoded | FramewiseError>> = [];
    const start = (i: number): void => {
      const item = items[i];
      if (item) pending.push(this.prepare(item.path, signal).catch((e: unknown) => toFramewiseError(e)));
    };
    let next = 0;
    while (next < Math.min(ahead, items.length)) start(next++);
    for (let i = 0; i < items.length; i++) {
      if (signal?.aborted) return;
      const item = items[i] as T;
      const d = await (pending.shift() as Promise<Decoded | FramewiseError>);
      if (next < items.length) start(next++);
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
      try {
        yield { item, ok: true, seq: await this.embed(d), cached: false, info: d.info };
      } catch (err) {
        const error = toFramewiseError(err);
        // a backbone that cannot load, or a cache that cannot be written, is not this file's fault: stop the batch
        if (stopsTheRun(error)) throw error;
        this.stats.failed++;
        yield { item, ok: false, error };
      }
    }
  }

  async dispose(): Promise<void> {
    const b = this.backbone;
    this.backbone = undefined;
    if (this.sharesBackbone) return;
    if (b) await (await b).dispose().catch(() => undefined);
  }
}
