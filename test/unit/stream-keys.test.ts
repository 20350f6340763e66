/**
 * Streams outside inline `label`, pure parts: the feature-store keys known from a head's recorded
 * layout (the same as the extractor's, the queue's and the windows'), the decode outputs they
 * need, the checks of a stream's model, the raw steps made a batch at a time, job ids that tell
 * models over other streams apart, the artifacts of a clip, and the one motion definition in
 * every decode's arguments.
 */
import { describe, expect, it } from 'vitest';
import { FeatureStore, type FeatureSequence } from '../../src/features/feature-store.js';
import { StreamExtractor } from '../../src/features/stream-extract.js';
import { backboneStreamVersion, checkBackboneStreams, checkKeypointStream, decodeRequestFor, streamFeatureKey, streamSpecs, type StreamSpec } from '../../src/features/stream-keys.js';
import type { FrameStream } from '../../src/features/streams.js';
import { clipArtifactKeys, framesArtifactKey, streamArtifactKey, validateArtifactKey } from '../../src/jobs/queue/artifact-store.js';
import { clipJobId, clipStreams, featureKeyOf, streamKeysOf, windowsKeysOf, windowsKeyOf } from '../../src/jobs/queue/idempotency.js';
import { windowsFeatureKey } from '../../src/jobs/windows.js';
import { buildDecodeArgs, MOTION_FILTERS, MOTION_VERSION } from '../../src/media/ffmpeg-args.js';
import { branchShowinfo, buildMultiDecodeArgs } from '../../src/media/multi-decode.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';
import { combineBlocks, combineSequences, type StreamLayout } from '../../src/ml/stream-layout.js';
import { HANDS_INPUT_SIZE } from '../../src/ml/streams/hands-stream.js';
import { KEYPOINT_INPUT_SIZES } from '../../src/ml/streams/frame-stream.js';
import { POSE_INPUT_SIZE } from '../../src/ml/streams/pose-stream.js';
import { CLIP_IDENTITY } from '../helpers/clip-identity.js';

const identity = CLIP_IDENTITY.backbone;
const sampling = CLIP_IDENTITY.sampling;
const geometry = { size: sampling.size, crop: sampling.crop };
const hash = CLIP_IDENTITY.contentHash;
const bb = backboneStreamVersion(identity);
const layout: StreamLayout = [
  { id: 'rgb', version: bb, dim: identity.dim, masked: false },
  { id: 'motion', version: backboneStreamVersion(identity, 'motion'), dim: identity.dim, masked: false },
  { id: 'pose', version: 'movenet-multipose@abc', dim: 231, masked: true },
  { id: 'hands', version: 'handdetect@1+handlandmark-lite@2', dim: 133, masked: true },
];

describe('stream keys from a head\'s layout', () => {
  it('keypoint streams take the input sides their loaders report', () => {
    expect(KEYPOINT_INPUT_SIZES).toEqual({ pose: POSE_INPUT_SIZE, hands: HANDS_INPUT_SIZE });
    expect(streamSpecs(layout).map((s) => s.inputSize)).toEqual([undefined, undefined, POSE_INPUT_SIZE, HANDS_INPUT_SIZE]);
  });

  it('are the keys the extractor, the queue and the windows use: rgb as it always was, each other stream its own', async () => {
    const specs = streamSpecs(layout);
    const keys = specs.map((s) => streamFeatureKey(hash, identity, sampling.policy, geometry, s));
    expect(keys[0]).toEqual(featureKeyOf(CLIP_IDENTITY));
    // motion: its own stream, and the motion images' version beside the weights' (MOTION_VERSION)
    expect(keys[1]).toEqual({ ...keys[0], backboneVersion: `${identity.version}+${MOTION_VERSION}`, stream: 'motion' });
    expect(keys[2]).toEqual({ contentHash: hash, backboneId: 'pose', backboneVersion: 'movenet-multipose@abc', featureKind: 'pooled', sampling: 'uniform16-256-letterbox', stream: 'pose' });
    expect(new Set(keys.map((k) => new FeatureStore('/s').pathFor(k))).size).toBe(4);
    // the queue's keys of a clip over these streams
    expect(streamKeysOf({ ...CLIP_IDENTITY, streams: specs })).toEqual(keys);
    // the extractor's (keypoint models opened: their version and side)
    const double = (id: 'pose' | 'hands'): FrameStream => ({ id, version: layout.find((l) => l.id === id)?.version as string, inputSize: 256, dim: 1, embed: () => Promise.reject(new Error('no')), dispose: async () => {} });
    const sx = new StreamExtractor({ tools: { ffmpegPath: 'ffmpeg', ffprobePath: 'ffprobe', maxPixels: 1, decodeTimeoutMs: 1 }, store: new FeatureStore('/s'), identity, sampling: sampling.policy, geometry, streams: layout.map((l) => l.id), openBackbone: () => Promise.reject(new Error('no')), openKeypointStream: async (id) => double(id) });
    expect(await sx.keysFor(hash)).toEqual(keys);
    // windows: the rgb key `label --windows` always used, then the other streams on the same grid
    const windows = { policy: buildWindowsPolicy(16, 2, 1) };
    const wkeys = windowsKeysOf({ ...CLIP_IDENTITY, streams: specs, windows });
    expect(wkeys[0]).toEqual(windowsFeatureKey(hash, identity, windows.policy, geometry));
    expect(wkeys[0]).toEqual(windowsKeyOf({ ...CLIP_IDENTITY, windows }));
    expect(wkeys[2]?.sampling).toBe('windowsgrid0.125-256-letterbox');
    // a clip that records no streams reads rgb alone
    expect(clipStreams({ backbone: identity }).map((s) => s.id)).toEqual(['rgb']);
  });

  it('ask the decode for each output once', () => {
    expect(decodeRequestFor(streamSpecs(layout), geometry)).toEqual({ rgb: geometry, motion: geometry, letterbox: [256] });
    expect(decodeRequestFor(streamSpecs([layout[2] as StreamLayout[number]]), geometry)).toEqual({ letterbox: [256] });
  });

  it('refuse a stream whose model is not the one the head was trained on', () => {
    const specs = streamSpecs(layout);
    expect(() => checkBackboneStreams(specs, identity)).not.toThrow();
    expect(() => checkBackboneStreams(specs, { ...identity, version: 'nsfwjs@5' })).toThrow(expect.objectContaining({ code: 'FW_ERR_MODEL_MISMATCH' }));
    // a head trained on motion images of another definition (before MOTION_VERSION): refused
    expect(() => checkBackboneStreams(streamSpecs([layout[0] as StreamSpec, { ...(layout[1] as StreamSpec), version: bb }]), identity)).toThrow(expect.objectContaining({ code: 'FW_ERR_MODEL_MISMATCH' }));
    // a head over rgb alone is checked elsewhere (checkCompatible): any weights version passes here
    expect(() => checkBackboneStreams(streamSpecs([{ ...(layout[0] as StreamSpec), version: 'old' }]), identity)).not.toThrow();
    const pose = specs[2] as StreamSpec;
    expect(() => checkKeypointStream(pose, { version: pose.version, dim: 231, inputSize: 256 })).not.toThrow();
    for (const other of [{ version: 'movenet@other', dim: 231, inputSize: 256 }, { version: pose.version, dim: 57, inputSize: 256 }, { version: pose.version, dim: 231, inputSize: 192 }]) {
      expect(() => checkKeypointStream(pose, other)).toThrow(expect.objectContaining({ code: 'FW_ERR_MODEL_MISMATCH' }));
    }
  });
});

describe('raw steps a batch at a time', () => {
  it('are combineSequences\' steps (presence after a keypoint vector); a lone unmasked stream is its own step', () => {
    const small: StreamLayout = [
      { id: 'motion', version: 'm', dim: 2, masked: false },
      { id: 'pose', version: 'p', dim: 3, masked: true },
    ];
    const seq = (data: number[], dim: number, present?: number[]): FeatureSequence =>
      ({ key: {} as FeatureSequence['key'], count: data.length / dim, dim, times: [], data: Float32Array.from(data), video: { durationSec: 0, width: 0, height: 0, fps: 0 }, ...(present ? { present: Uint8Array.from(present) } : {}) }) as FeatureSequence;
    const motion = seq([1, 2, 3, 4, 5, 6], 2);
    const pose = seq([0, 0, 0, 7, 8, 9, 0, 0, 0], 3, [0, 1, 0]);
    const whole = combineSequences([motion, pose], small);
    expect(Array.from(combineBlocks([motion, pose], small, 3))).toEqual(Array.from(whole.data));
    expect(Array.from(combineBlocks([motion, pose], small, 3).subarray(0, 6))).toEqual([1, 2, 0, 0, 0, 0]);
    const one = combineBlocks([{ data: motion.data }], [small[0] as StreamLayout[number]], 3);
    expect(one.buffer).toBe(motion.data.buffer);
  });
});

describe('queue mode', () => {
  it('job ids tell models over other streams apart; a model over rgb alone keeps the id it had', () => {
    const plain = clipJobId(CLIP_IDENTITY);
    expect(clipJobId({ ...CLIP_IDENTITY, streams: [{ id: 'rgb', version: bb }] })).toBe(plain);
    const ids = ([
      [{ id: 'motion', version: bb }],
      [{ id: 'rgb', version: bb }, { id: 'motion', version: bb }],
      [{ id: 'motion', version: bb }, { id: 'pose', version: 'movenet-multipose@abc' }],
      [{ id: 'motion', version: bb }, { id: 'pose', version: 'movenet-multipose@def' }],
    ] as Array<Array<Pick<StreamSpec, 'id' | 'version'>>>).map((streams) => clipJobId({ ...CLIP_IDENTITY, streams }));
    expect(new Set([plain, ...ids]).size).toBe(5);
    ids.forEach((id) => expect(id).toMatch(/^clip-[0-9a-f]{32}$/));
    expect(clipJobId({ ...CLIP_IDENTITY, streams: [{ id: 'motion', version: bb }] })).toBe(ids[0]);
  });

  it('a clip\'s artifacts: one per decoded output, every one named by clipArtifactKeys', () => {
    const id = 'clip-0123456789abcdef0123456789abcdef';
    const outputs = [streamArtifactKey(id, 'rgb', 224), streamArtifactKey(id, 'motion', 224), streamArtifactKey(id, 'letterbox', 256)];
    expect(outputs[0]).toBe(framesArtifactKey(id));
    expect(new Set(outputs).size).toBe(3);
    outputs.forEach((k) => expect(validateArtifactKey(k)).toBe(k));
    expect(clipArtifactKeys(id)).toEqual(expect.arrayContaining(outputs));
  });
});

describe('one motion definition', () => {
  it('every decode that makes motion uses MOTION_FILTERS after the geometry and before the sampling, clips and windows alike', () => {
    const clip = buildMultiDecodeArgs('file:/v/a.mp4', { kind: 'uniform', frames: 4 }, { rgb: geometry, motion: geometry, letterbox: [256] }, { demuxer: 'mov', frameInterval: 0.04 }, [0.25, 0.75, 1.25, 1.75]);
    const policy = buildWindowsPolicy(16, 2, 1);
    const win = buildMultiDecodeArgs('file:/v/a.mp4', policy, { motion: geometry, letterbox: [256] }, { demuxer: 'mov', frameInterval: 0.04, duration: 60 }, undefined, { tagAll: true });
    for (const plan of [clip, win]) {
      const motion = plan.branches.find((b) => b.name === 'motion')?.filters ?? '';
      expect(motion).toContain(`${MOTION_FILTERS.join(',')},select=`);
    }
    // windows: the grid select and frame limit of the single-output windows decode; every branch reports its times
    const single = buildDecodeArgs('file:/v/a.mp4', policy, geometry, { demuxer: 'mov', duration: 60, frameInterval: 0.04 }, undefined);
    const select = /select='[^']*'/.exec(single.args.join(' '))?.[0] as string;
    expect(win.branches.every((b) => b.filters.includes(select))).toBe(true);
    expect(win.maxFrames).toBe(single.maxFrames);
    win.branches.forEach((b, i) => expect(b.filters.endsWith(branchShowinfo(i))).toBe(true));
    expect(clip.branches.map((b) => b.filters.includes('showinfo'))).toEqual([true, false, false]);
  });
});
