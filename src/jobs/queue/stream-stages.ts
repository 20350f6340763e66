/**
 * The three stages of a clip whose model reads more than the backbone's rgb features (motion,
 * pose, hands, with or without rgb): the queue's form of inline `label` with a
 * `StreamExtractor`, built from the same parts, so that the result is the one inline `label`
 * gives for the file.
 *
 * - decode (`StreamExtractor.prepare`): every stream looked up in the feature store under its
 *   own key (a hit skips that stream's decoding), then one ffmpeg decode (`decodeMulti`) of
 *   exactly the outputs the missing streams need: the backbone's geometry for rgb, the difference
 *   images for motion, letterboxed squares for the keypoint streams. Each output goes to the
 *   artifact store; the return value says where, with the frames' times. No model is loaded here:
 *   the keys come from the model's recorded streams (`ClipRef.streams`).
 * - embed (`StreamExtractor.embed`): each missing stream embedded by the worker's models — rgb and
 *   motion through its one (batching) backbone, whose calls take frames of every job it holds,
 *   the keypoint streams through their own models (loaded once per worker, checked against the
 *   versions the model was trained on) — and stored; then the artifacts are removed.
 * - classify: every stream read from the store, put side by side as the head reads them
 *   (`combineSequences`), the head, `toLabelResult`.
 */
import { performance } from 'node:perf_hooks';
import { FramewiseError } from '../../errors/index.js';
import type { FeatureSequence } from '../../features/feature-store.js';
import { StreamExtractor, type Prepared } from '../../features/stream-extract.js';
import { checkBackboneStreams, checkKeypointStream, isRgbLayout, type StreamSpec } from '../../features/stream-keys.js';
import type { FrameStream, KeypointStreamId } from '../../features/streams.js';
import type { MultiDecodeResult } from '../../media/multi-decode.js';
import { checkCompatible, type TemporalHead } from '../../ml/head.js';
import { combineSequences } from '../../ml/stream-layout.js';
import { toLabelResult, type LabelSuccess } from '../label.js';
import { withUnknownThreshold } from '../thresholds.js';
import type { PassModels } from '../windows.js';
import { clipArtifactKeys, streamArtifactKey } from './artifact-store.js';
import { streamKeysOf } from './idempotency.js';
import type { ClipRef, DecodedOutput, EmbedJobResult, StreamsDecodeJobResult } from './payloads.js';
import { checkSameBytes, type StageDeps } from './stages.js';

/** A clip whose model reads more than rgb. */
export type StreamsClip = ClipRef & { streams: StreamSpec[] };

export const hasStreams = (clip: ClipRef): clip is StreamsClip => clip.streams !== undefined && !isRgbLayout(clip.streams);

const geometryOf = (clip: ClipRef): { size: number; crop: ClipRef['sampling']['crop'] } => ({ size: clip.sampling.size, crop: clip.sampling.crop });

/**
 * A keypoint stream as the decode stage knows it: what the model recorded (version, dimension)
 * and the side of its squares, without its model (it does not embed).
 */
function describedStream(spec: StreamSpec): FrameStream {
  return {
    id: spec.id as KeypointStreamId,
    version: spec.version,
    dim: spec.dim,
    inputSize: spec.inputSize ?? 0,
    embed: () => Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'this stage does not embed (no keypoint model in this worker)')),
    dispose: () => Promise.resolve(),
  };
}

/**
 * A StreamExtractor for this clip's streams, sampling and backbone. With `models` (the embed
 * worker's), it embeds with them (a keypoint model is checked against the stream the head was
 * trained on); without, it keys and decodes only. Never disposed: the models belong to the worker.
 */
function extractorFor(clip: StreamsClip, deps: StageDeps, models?: Required<PassModels>): StreamExtractor {
  const spec = (id: KeypointStreamId): StreamSpec => {
    const s = clip.streams.find((x) => x.id === id);
    if (!s) throw new FramewiseError('FW_ERR_INTERNAL', `clip ${clip.clipId} has no ${id} stream`);
    return s;
  };
  return new StreamExtractor({
    tools: deps.tools,
    store: deps.store,
    identity: clip.backbone,
    sampling: clip.sampling.policy,
    geometry: geometryOf(clip),
    streams: clip.streams.map((s) => s.id),
    openBackbone: models?.backbone ?? (() => Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'this stage does not embed (no backbone in this worker)'))),
    openKeypointStream: async (id) => {
      if (!models) return describedStream(spec(id));
      const stream = await models.keypointStream(id);
      checkKeypointStream(spec(id), stream);
      return stream;
    },
  });
}

/**
 * Decode stage: every stream looked up in the feature store, then one decode of the outputs the
 * missing streams need, each output to the artifact store. The model's backbone streams must be
 * this build's backbone (FW_ERR_MODEL_MISMATCH otherwise, before anything is decoded).
 */
export async function decodeStreamsStage(clip: StreamsClip, deps: StageDeps, signal?: AbortSignal): Promise<StreamsDecodeJobResult> {
  const t0 = performance.now();
  checkBackboneStreams(clip.streams, clip.backbone);
  const p = await extractorFor(clip, deps).prepare(clip.path, signal);
  checkSameBytes(clip, p.keys[0]?.contentHash ?? '');
  const { decoded, info } = p;
  if (!decoded || !info) return { streams: true, hit: true, frames: (p.seqs[0] as FeatureSequence).count, decodeMs: Math.round(performance.now() - t0) };
  const outputs: DecodedOutput[] = [];
  const put = async (out: Omit<DecodedOutput, 'artifactKey'>, data: Uint8Array): Promise<void> => {
    const artifactKey = streamArtifactKey(clip.clipId, out.name, out.size);
    await deps.artifacts.put(artifactKey, data);
    outputs.push({ ...out, artifactKey });
  };
  if (decoded.rgb) await put({ name: 'rgb', size: decoded.rgb.size }, decoded.rgb.data);
  if (decoded.motion) await put({ name: 'motion', size: decoded.motion.size }, decoded.motion.data);
  for (const lb of decoded.letterbox ?? []) await put({ name: 'letterbox', size: lb.size, content: lb.content }, lb.data);
  return { streams: true, hit: false, hits: p.seqs.map((s) => s !== undefined), info, count: decoded.times.length, times: decoded.times, outputs, decodeMs: Math.round(performance.now() - t0) };
}

/** The decoded outputs back from the artifact store, as `decodeMulti` gave them. */
async function readOutputs(clip: StreamsClip, decoded: Extract<StreamsDecodeJobResult, { hit: false }>, deps: StageDeps): Promise<MultiDecodeResult> {
  const out: MultiDecodeResult = { times: decoded.times };
  const count = decoded.count;
  for (const o of decoded.outputs) {
    const data = await deps.artifacts.get(o.artifactKey);
    if (!data) throw new FramewiseError('FW_ERR_ARTIFACT_MISSING', `decoded frames '${o.artifactKey}' are not in the artifact store ${deps.artifacts.location} (do the decode and embed workers share FRAMEWISE_DATA_DIR?)`);
    if (data.length !== count * o.size * o.size * 3) throw new FramewiseError('FW_ERR_ARTIFACT_STORE', `decoded frames '${o.artifactKey}' of ${clip.source} have ${data.length} bytes, not ${count} frames of ${o.size}²`);
    if (o.name === 'letterbox') (out.letterbox ??= []).push({ data, count, size: o.size, content: o.content ?? { x0: 0, y0: 0, w: 1, h: 1 } });
    else out[o.name] = { size: o.size, count, data, times: decoded.times };
  }
  return out;
}

/**
 * Embed stage: each stream the store does not hold, embedded from its decoded output by the
 * worker's models and stored (`StreamExtractor.embed`, as inline), then the clip's artifacts are
 * removed. Idempotent: streams already stored (a retry after the writes) are not embedded again.
 */
export async function embedStreamsStage(clip: StreamsClip, decoded: StreamsDecodeJobResult, deps: StageDeps, models: Required<PassModels>): Promise<EmbedJobResult> {
  const t0 = performance.now();
  const sx = extractorFor(clip, deps, models);
  const keys = await sx.keysFor(clip.contentHash);
  const seqs = await Promise.all(keys.map((k) => deps.store.get(k)));
  const gone = (): FramewiseError => new FramewiseError('FW_ERR_FEATURE_STORE', `the features of ${clip.source} left the feature store between decode and embed`);
  if (decoded.hit) {
    if (seqs.some((s) => s === undefined)) throw gone();
    return { cached: true, frames: decoded.frames, embedMs: 0, backbone: null };
  }
  if (decoded.hits.some((hit, i) => hit && seqs[i] === undefined)) throw gone();
  if (seqs.some((s) => s === undefined)) {
    const prepared: Prepared = { seqs, keys, info: decoded.info, decoded: await readOutputs(clip, decoded, deps) };
    await sx.embed(prepared);
  }
  for (const key of clipArtifactKeys(clip.clipId)) await deps.artifacts.delete(key);
  // the backbone that embedded frames of this clip (none when only keypoint streams were)
  return { cached: false, frames: decoded.count, embedMs: Math.round(performance.now() - t0), backbone: sx.loadedInfo ?? null };
}

/**
 * Classify stage: every stream from the store, side by side as the head reads them, the head, and
 * the result inline `label` gives (the model's unknown threshold applied).
 */
export async function classifyStreamsStage(clip: StreamsClip, embedded: EmbedJobResult, head: TemporalHead, topK: number, deps: StageDeps): Promise<LabelSuccess> {
  checkCompatible(head.metadata, clip.backbone, 'the classify worker');
  const layout = head.streams;
  if (layout.length !== clip.streams.length || layout.some((l, i) => l.id !== clip.streams[i]?.id || l.version !== clip.streams[i]?.version)) {
    throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the job's streams (${clip.streams.map((s) => s.id).join(',')}) are not the ones the head reads (${layout.map((l) => l.id).join(',')})`);
  }
  const seqs = await Promise.all(streamKeysOf(clip).map((k) => deps.store.get(k)));
  if (seqs.some((s) => s === undefined)) throw new FramewiseError('FW_ERR_FEATURE_STORE', `no stored features for ${clip.source} (feature store ${deps.store.root}; do all workers share FRAMEWISE_CACHE_DIR?)`);
  const all = seqs as FeatureSequence[];
  const [probs] = await head.predict([combineSequences(all, layout)]);
  // the result records the engine that embedded the frames (none when they came from the store)
  const view = { sampling: { policy: clip.sampling.policy, geometry: geometryOf(clip) }, identity: clip.backbone, loadedInfo: embedded.backbone ?? undefined };
  return withUnknownThreshold(toLabelResult(clip.source, probs as Float32Array, all[0] as FeatureSequence, embedded.cached, head, view, topK), head.metadata);
}
