/**
 * Idempotency: a clip's job id is derived from what determines its result — the content hash of
 * the bytes, the head (id + version), the backbone (id, weights version, feature kind), the
 * sampling, top-k, the model's per-frame streams when it reads more than rgb (each with its model
 * version) and, for windowed clips, the windows and threshold — so the same bytes submitted twice
 * map to the same job and one result, and models that read other streams never share one.
 */
import { createHash } from 'node:crypto';
import { backboneStreamVersion, isRgbLayout, streamFeatureKey, type StreamSpec } from '../../features/stream-keys.js';
import { formatWindows, samplingKey } from '../../media/sampling.js';
import { windowsFeatureKey } from '../windows.js';
import type { ClipRef, ClipWindows } from './payloads.js';
import type { FeatureKey } from '../../features/feature-store.js';

export interface ClipIdentity {
  contentHash: string;
  model: { id: string; version: string };
  backbone: ClipRef['backbone'];
  sampling: ClipRef['sampling'];
  topK: number;
  windows?: ClipWindows | undefined;
  /** The model's streams (rgb alone, or absent, leaves the id as it was before streams). */
  streams?: ReadonlyArray<Pick<StreamSpec, 'id' | 'version'>> | undefined;
}

const CLIP_ID = /^clip-[0-9a-f]{32}$/;
const BATCH_ID = /^batch-[0-9a-f]{32}$/;

/** `clip-<32 hex>`: the root (classify) job id of the clip's flow. */
export function clipJobId(c: ClipIdentity): string {
  const parts = [
    'v1',
    c.contentHash,
    c.model.id,
    c.model.version,
    c.backbone.id,
    c.backbone.version,
    c.backbone.featureKind,
    samplingKey(c.sampling.policy, { size: c.sampling.size, crop: c.sampling.crop }),
    String(c.topK),
    // clip-level ids are what they were before windows existed
    ...(c.windows ? [formatWindows(c.windows.policy), `threshold=${c.windows.threshold ?? 'model'}`] : []),
    // added later: present only when given, so earlier windowed job ids stay the same
    ...(c.windows?.hysteresis !== undefined ? [`hysteresis=${c.windows.hysteresis}`] : []),
    ...(c.windows?.minSegmentSec !== undefined ? [`minSegment=${c.windows.minSegmentSec}`] : []),
    // a model over other streams: its streams and their versions (rgb-only ids stay what they were)
    ...(c.streams && !isRgbLayout(c.streams) ? [`streams=${c.streams.map((s) => `${s.id}@${s.version}`).join(',')}`] : []),
  ];
  return `clip-${createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 32)}`;
}

/** The job ids of the stages of a clip's flow (BullMQ ids may not contain ':'). */
export function stageJobIds(clipId: string): { decode: string; embed: string; classify: string } {
  return { decode: `${clipId}-decode`, embed: `${clipId}-embed`, classify: clipId };
}

export const isClipId = (id: string): boolean => CLIP_ID.test(id);

/** One webhook job per (job or batch, URL, outcome): sent once per outcome, again after a re-run. */
export const webhookJobId = (id: string, url: string, outcome: string): string => `wh-${id}-${createHash('sha256').update(`${url}\n${outcome}`).digest('hex').slice(0, 16)}`;

/** The ingest job of a batch (one per batch). */
export const ingestJobId = (batchId: string): string => `ingest-${batchId}`;
export const isBatchId = (id: string): boolean => BATCH_ID.test(id);

/** The clip id a stage job id belongs to (`clip-…-decode` → `clip-…`), or undefined. */
export function clipIdOfJob(jobId: string): string | undefined {
  const m = /^(clip-[0-9a-f]{32})(-decode|-embed)?$/.exec(jobId);
  return m?.[1];
}

/** The feature-store key of a clip (the same key inline mode uses for these bytes). */
export function featureKeyOf(clip: Pick<ClipRef, 'contentHash' | 'backbone' | 'sampling'>): FeatureKey {
  return {
    contentHash: clip.contentHash,
    backboneId: clip.backbone.id,
    backboneVersion: clip.backbone.version,
    featureKind: clip.backbone.featureKind,
    sampling: samplingKey(clip.sampling.policy, { size: clip.sampling.size, crop: clip.sampling.crop }),
  };
}

/** The feature-store key of a windowed clip's pass (the same key `label --windows` uses for these bytes). */
export function windowsKeyOf(clip: Pick<ClipRef, 'contentHash' | 'backbone' | 'sampling'> & { windows: ClipWindows }): FeatureKey {
  return windowsFeatureKey(clip.contentHash, clip.backbone, clip.windows.policy, { size: clip.sampling.size, crop: clip.sampling.crop });
}

/** The streams a clip's model reads: its recorded ones, or rgb alone (the backbone's features). */
export function clipStreams(clip: Pick<ClipRef, 'backbone' | 'streams'>): StreamSpec[] {
  return clip.streams ?? [{ id: 'rgb', version: backboneStreamVersion(clip.backbone), dim: clip.backbone.dim, masked: false }];
}

/** The feature-store keys of every stream of a clip (the keys inline `label` uses for these bytes). */
export function streamKeysOf(clip: Pick<ClipRef, 'contentHash' | 'backbone' | 'sampling' | 'streams'>): FeatureKey[] {
  const geometry = { size: clip.sampling.size, crop: clip.sampling.crop };
  return clipStreams(clip).map((s) => streamFeatureKey(clip.contentHash, clip.backbone, clip.sampling.policy, geometry, s));
}

/** The feature-store keys of a windowed clip's pass, one per stream (the keys `label --windows` uses for these bytes). */
export function windowsKeysOf(clip: Pick<ClipRef, 'contentHash' | 'backbone' | 'sampling' | 'streams'> & { windows: ClipWindows }): FeatureKey[] {
  const geometry = { size: clip.sampling.size, crop: clip.sampling.crop };
  return clipStreams(clip).map((s) => streamFeatureKey(clip.contentHash, clip.backbone, clip.windows.policy, geometry, s));
}
