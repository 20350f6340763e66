/**
 * The models an embed worker holds, each loaded once per process and shared by every job it runs:
 * one batching backbone per (backbone, feature kind) for the rgb and motion streams (its calls
 * take the frames of every job waiting, whichever of the two streams they belong to), and one
 * model per keypoint stream (pose, hands; their calls are serialised inside the stream).
 */
import type { Logger } from '../../config/log.js';
import { isKeypointStream, openFrameStream, type FrameStream, type FrameStreamOpener, type KeypointStreamId } from '../../features/streams.js';
import type { Backbone } from '../../ml/backbone.js';
import { createBackbone } from '../../ml/backbone-specs.js';
import type { RuntimeOptions } from '../runtime.js';
import type { PassModels } from '../windows.js';
import { BatchingBackbone, type BatchingOptions } from './batching-embedder.js';
import type { ModelInfo } from './model-info.js';
import type { ClipRef } from './payloads.js';

export interface EmbedModelsOptions {
  runtime: RuntimeOptions;
  batching: Partial<BatchingOptions>;
  log: Logger;
  /** Wraps each backbone the batcher calls (tests count its calls). @defaultValue none */
  wrapBackbone?: ((backbone: Backbone) => Backbone) | undefined;
  /** Opens the keypoint streams. @defaultValue their loaders */
  opener?: FrameStreamOpener | undefined;
}

export class EmbedModels {
  /** The first batching backbone opened (for stats). */
  embedder: BatchingBackbone | undefined;
  private readonly backbones = new Map<string, Promise<BatchingBackbone>>();
  private readonly keypoints = new Map<KeypointStreamId, Promise<FrameStream>>();

  constructor(private readonly opts: EmbedModelsOptions) {}

  /** The batching backbone of a clip's backbone (opened and warmed on first use). */
  backbone(clip: Pick<ClipRef, 'backbone'>): Promise<BatchingBackbone> {
    const rt = this.opts.runtime;
    const key = `${clip.backbone.id}/${clip.backbone.featureKind}`;
    let b = this.backbones.get(key);
    if (!b) {
      b = createBackbone({
        id: clip.backbone.id,
        engine: rt.engine,
        featureKind: clip.backbone.featureKind,
        backend: rt.backend,
        batchSize: rt.batchSize,
        threads: rt.threads,
        cacheDir: rt.cacheDir,
        ...(rt.modelUrl !== undefined ? { modelUrl: rt.modelUrl } : {}),
      }).then((inner) => {
        const batching = new BatchingBackbone(this.opts.wrapBackbone ? this.opts.wrapBackbone(inner) : inner, this.opts.batching);
        this.embedder ??= batching;
        this.opts.log.info({ backbone: inner.info }, 'embed worker: backbone ready');
        return batching;
      });
      b.catch(() => this.backbones.delete(key));
      this.backbones.set(key, b);
    }
    return b;
  }

  /** A keypoint stream's model (opened on first use). */
  keypointStream(id: KeypointStreamId): Promise<FrameStream> {
    let k = this.keypoints.get(id);
    if (!k) {
      const rt = this.opts.runtime;
      k = (this.opts.opener ?? openFrameStream)(id, { cacheDir: rt.cacheDir, threads: rt.threads, ...(rt.engine === 'onnx' || rt.engine === 'tfjs' ? { engine: rt.engine } : {}) }).then((s) => {
        this.opts.log.info({ stream: id, version: s.version }, 'embed worker: keypoint stream ready');
        return s;
      });
      k.catch(() => this.keypoints.delete(id));
      this.keypoints.set(id, k);
    }
    return k;
  }

  /** The models of one clip's streams, as a windows pass and the stream stages take them. */
  forClip(clip: Pick<ClipRef, 'backbone'>): Required<PassModels> {
    return { backbone: () => this.backbone(clip), keypointStream: (id) => this.keypointStream(id) };
  }

  /** Load (and warm) what a model's streams need before jobs are taken: its backbone, its keypoint streams. */
  async warm(model: Pick<ModelInfo, 'backbone' | 'streams'>): Promise<void> {
    if (model.streams.some((s) => !isKeypointStream(s.id))) await this.backbone(model);
    for (const s of model.streams) if (isKeypointStream(s.id)) await this.keypointStream(s.id);
  }

  async dispose(): Promise<void> {
    const bs = [...this.backbones.values()];
    const ks = [...this.keypoints.values()];
    this.backbones.clear();
    this.keypoints.clear();
    for (const b of bs) await (await b.catch(() => undefined))?.dispose();
    for (const k of ks) await (await k.catch(() => undefined))?.dispose().catch(() => undefined);
  }
}
