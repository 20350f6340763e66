import { readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentHash, decodeEntry, encodeEntry, FeatureStore, type FeatureSequence } from '../../src/features/feature-store.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir();
});
afterAll(() => removeDir(dir));

const seq = (hash: string, fill: number): FeatureSequence => ({
  key: { contentHash: hash, backboneId: 'mobilenet_v2_mid', backboneVersion: 'nsfwjs@4.4.0', featureKind: 'pooled', sampling: 'uniform16-224-center' },
  count: 3,
  dim: 4,
  times: [0.1, 0.5, 0.9],
  data: Float32Array.from({ length: 12 }, (_, i) => i * fill),
  video: { durationSec: 1, width: 320, height: 240, fps: 25 },
});

describe('feature store', () => {
  it('round-trips an entry exactly', async () => {
    const store = new FeatureStore(dir);
    const s = seq('ab'.repeat(32), 0.5);
    await store.put(s);
    const back = await store.get(s.key);
    expect(back?.data).toEqual(s.data);
    expect(back?.times).toEqual(s.times);
    expect(await store.has(s.key)).toBe(true);
    expect(await store.get({ ...s.key, sampling: 'uniform8-224-center' })).toBeUndefined();
    expect(await store.get({ ...s.key, backboneVersion: 'nsfwjs@5' })).toBeUndefined();
  });

  it('a truncated entry is a miss and is removed', async () => {
    const store = new FeatureStore(dir);
    const s = seq('cd'.repeat(32), 1);
    await store.put(s);
    const file = store.pathFor(s.key);
    await truncate(file, 40);
    expect(await store.get(s.key)).toBeUndefined();
    expect(await store.has(s.key)).toBe(false);
    expect(decodeEntry(encodeEntry(s).subarray(0, 50))).toBeUndefined();
  });

  it('concurrent writers of the same key leave one whole entry and no temp files', async () => {
    const store = new FeatureStore(dir);
    const s = seq('ef'.repeat(32), 2);
    await Promise.all(Array.from({ length: 8 }, () => store.put(s)));
    expect((await store.get(s.key))?.data).toEqual(s.data);
    const files = await readdir(join(store.pathFor(s.key), '..'));
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('hashes file content, not names', async () => {
    await writeFile(join(dir, 'a.bin'), 'same bytes');
    await writeFile(join(dir, 'b.bin'), 'same bytes');
    await writeFile(join(dir, 'c.bin'), 'other bytes');
    const [a, b, c] = await Promise.all(['a.bin', 'b.bin', 'c.bin'].map((f) => contentHash(join(dir, f))));
    expect(a).toBe(b);
    expect(a).not.toBe(c);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });
});
