/**
 * What a per-frame stream needs besides its model: its feature-store key for a file, and the
 * decode output it embeds. Pure: the keys are known from a head's recorded layout (and the
 * keypoint streams' fixed input sizes), so the queue's decode and classify stages key the store
 * without loading a model, and `label --windows` looks a pass up before opening one.
 */
import { FramewiseError } from '../errors/index.js';
import { MOTION_VERSION } from '../media/ffmpeg-args.js';
import type { MultiDecodeRequest } from '../media/multi-decode.js';
import { samplingKey, type DecodePolicy, type FrameGeometry } from '../media/sampling.js';
import type { BackboneIdentity } from '../ml/backbone-specs.js';
import type { StreamLayout, StreamLayoutEntry } from '../ml/stream-layout.js';
import { KEYPOINT_INPUT_SIZES, type FrameStream } from '../ml/streams/frame-stream.js';
import type { FeatureKey } from './feature-store.js';
import { isKeypointStream, type StreamId } from './streams.js';

/** A stream of a head's layout, with the side of the letterboxed squares a keypoint stream takes. */
export interface StreamSpec extends StreamLayoutEntry {
  /** Keypoint streams: the side of their letterboxed square frames. */
  inputSize?: number;
}

/** The specs of a head's streams (in its input order). */
export function streamSpecs(layout: StreamLayout): StreamSpec[] {
  return layout.map((s) => (isKeypointStream(s.id) ? { ...s, inputSize: KEYPOINT_INPUT_SIZES[s.id] } : { ...s }));
}

/** The version string a backbone stream (rgb, motion) records: `<backbone id>@<weights version>:<feature kind>`, and for motion `+<motion images version>`. */
export const backboneStreamVersion = (identity: Pick<BackboneIdentity, 'id' | 'version' | 'featureKind'>, id: 'rgb' | 'motion' = 'rgb'): string =>
  `${identity.id}@${identity.version}:${identity.featureKind}${id === 'motion' ? `+${MOTION_VERSION}` : ''}`;

/**
 * The feature-store key of one stream of a file with this content hash, under a sampling (or
 * windows) policy: rgb keeps the key it always had; motion adds its stream; a keypoint stream is
 * keyed by its own model version and its letterboxed square (never cropped or mirrored).
 */
export function streamFeatureKey(hash: string, identity: BackboneIdentity, policy: DecodePolicy, geometry: FrameGeometry, spec: { id: StreamId; version: string; inputSize?: number | undefined }): FeatureKey {
  const rgbKey: FeatureKey = { contentHash: hash, backboneId: identity.id, backboneVersion: identity.version, featureKind: identity.featureKind, sampling: samplingKey(policy, geometry) };
  if (spec.id === 'rgb') return rgbKey;
  // the motion images' version is part of the key: features of other motion images are never read
  if (spec.id === 'motion') return { ...rgbKey, backboneVersion: `${identity.version}+${MOTION_VERSION}`, stream: 'motion' };
  const side = spec.inputSize ?? KEYPOINT_INPUT_SIZES[spec.id];
  const lb = samplingKey(policy, { size: side, crop: 'center' }).replace(/-center$/, '-letterbox');
  return { contentHash: hash, backboneId: spec.id, backboneVersion: spec.version, featureKind: 'pooled', sampling: lb, stream: spec.id };
}

/** The decode outputs that streams need: the backbone's geometry for rgb and motion, a letterboxed square per keypoint side. */
export function decodeRequestFor(specs: readonly Pick<StreamSpec, 'id' | 'inputSize'>[], geometry: FrameGeometry): MultiDecodeRequest {
  const request: MultiDecodeRequest = {};
  for (const s of specs) {
    if (s.id === 'rgb') request.rgb = geometry;
    else if (s.id === 'motion') request.motion = geometry;
    else {
      const side = s.inputSize ?? KEYPOINT_INPUT_SIZES[s.id];
      if (!(request.letterbox ??= []).includes(side)) request.letterbox.push(side);
    }
  }
  return request;
}

/** True for a head over the backbone's rgb features alone (the paths that predate streams serve it). */
export const isRgbLayout = (specs: readonly Pick<StreamLayoutEntry, 'id'>[]): boolean => specs.length === 1 && specs[0]?.id === 'rgb';

/**
 * A head over several streams reads rgb and motion features of one backbone version: the one
 * `identity` names, else FW_ERR_MODEL_MISMATCH (a head over rgb alone is checked by `checkCompatible`).
 */
export function checkBackboneStreams(specs: readonly StreamSpec[], identity: BackboneIdentity): void {
  if (isRgbLayout(specs)) return;
  for (const s of specs) {
    const want = s.id === 'rgb' || s.id === 'motion' ? backboneStreamVersion(identity, s.id) : '';
    if ((s.id === 'rgb' || s.id === 'motion') && (s.version !== want || s.dim !== identity.dim)) {
      throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the head was trained on the ${s.id} stream ${s.version} (${s.dim}-d) but this build gives ${want} (${identity.dim}-d)`);
    }
  }
}

/** The keypoint stream opened here is the one the head was trained on (version, dimension, input side), else FW_ERR_MODEL_MISMATCH. */
export function checkKeypointStream(spec: StreamSpec, stream: Pick<FrameStream, 'version' | 'dim' | 'inputSize'>): void {
  if (stream.version !== spec.version || stream.dim !== spec.dim || (spec.inputSize !== undefined && stream.inputSize !== spec.inputSize)) {
    throw new FramewiseError('FW_ERR_MODEL_MISMATCH', `the head was trained on the ${spec.id} stream ${spec.version} (${spec.dim}-d) but this build gives ${stream.version} (${stream.dim}-d, ${stream.inputSize}² input)`);
  }
}
