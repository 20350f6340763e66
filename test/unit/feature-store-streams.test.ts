/** Feature-store entries of streams other than rgb: their own paths, rgb paths unchanged, presence masks kept. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry, FeatureStore, type FeatureSequence } from '../../src/features/feature-store.js';
import { parseStreams } from '../../src/features/streams.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir();
});
afterAll(() => removeDir(dir));

const hash = 'cd'.repeat(32);
const rgbKey = { contentHash: hash, backboneId: 'mobilenet_v2_mid', backboneVersion: 'nsfwjs@4.4.0', featureKind: 'grid' as const, sampling: 'uniform16-224-center' };
const seq = (key: FeatureSequence['key'], fill: number, present?: number[]): FeatureSequence => ({
  key,
  count: 3,
  dim: 2,
  times: [0.1, 0.5, 0.9],
  data: Float32Array.from({ length: 6 }, (_, i) => i * fill),
  video: { durationSec: 1, width: 320, height: 240, fps: 25 },
  ...(present ? { present: Uint8Array.from(present) } : {}),
});

describe('feature store streams', () => {
  it('rgb keys keep their path (with or without stream: rgb); other streams get their own entry', async () => {
    const store = new FeatureStore(dir);
    const legacy = join(dir, 'features', 'v1', 'mobilenet_v2_mid', 'nsfwjs_4.4.0', 'grid', 'uniform16-224-center', 'cd', `${hash}.fwf`);
    expect(store.pathFor(rgbKey)).toBe(legacy);
    expect(store.pathFor({ ...rgbKey, stream: 'rgb' })).toBe(legacy);
    const motionKey = { ...rgbKey, stream: 'motion' };
    expect(store.pathFor(motionKey)).not.toBe(legacy);
    await store.put(seq(rgbKey, 1));
    await store.put(seq(motionKey, 2));
    expect(Array.from((await store.get(rgbKey))?.data ?? [])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(Array.from((await store.get(motionKey))?.data ?? [])).toEqual([0, 2, 4, 6, 8, 10]);
  });

  it('keeps a keypoint stream’s presence mask', async () => {
    const store = new FeatureStore(dir);
    const poseKey = { contentHash: hash, backboneId: 'pose', backboneVersion: 'movenet@abc', featureKind: 'pooled' as const, sampling: 'uniform16-256-letterbox', stream: 'pose' };
    await store.put(seq(poseKey, 1, [1, 0, 1]));
    const back = await store.get(poseKey);
    expect(Array.from(back?.present ?? [])).toEqual([1, 0, 1]);
    expect((await store.get(rgbKey))?.present).toBeUndefined();
  });

  it('an entry whose presence mask does not fit its frames is a miss', () => {
    const poseKey = { contentHash: hash, backboneId: 'pose', backboneVersion: 'movenet@abc', featureKind: 'pooled' as const, sampling: 'uniform16-256-letterbox', stream: 'pose' };
    expect(decodeEntry(encodeEntry(seq(poseKey, 1, [1, 0, 1])), poseKey)?.present).toEqual(Uint8Array.from([1, 0, 1]));
    expect(decodeEntry(encodeEntry(seq(poseKey, 1, [1, 0])), poseKey)).toBeUndefined();
    expect(decodeEntry(encodeEntry(seq(poseKey, 1, [1, 0, 1])), { ...poseKey, stream: 'hands' })).toBeUndefined();
  });

  it('parses stream sets in a canonical order and names the allowed values', () => {
    expect(parseStreams('motion, rgb')).toEqual(['rgb', 'motion']);
    expect(parseStreams('hands,pose,pose')).toEqual(['pose', 'hands']);
    expect(() => parseStreams('rgb,depth')).toThrow(/rgb, motion, pose, hands.*depth/);
  });
});
