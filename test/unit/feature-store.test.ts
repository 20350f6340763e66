import { createHash } from 'node:crypto';
import { access, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
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

  it('an entry whose data bytes were flipped (same length) fails its checksum: a miss, removed', async () => {
    const store = new FeatureStore(dir);
    const s = seq('a1'.repeat(32), 3);
    await store.put(s);
    const file = store.pathFor(s.key);
    const buf = await readFile(file);
    const at = buf.length - 4 - 32 - 8; // inside the float data
    buf[at] = (buf[at] as number) ^ 0xff;
    await writeFile(file, buf);
    expect(decodeEntry(buf, s.key)).toBeUndefined();
    expect(await store.get(s.key)).toBeUndefined();
    await expect(access(file)).rejects.toThrow();
    await store.put(s);
    expect((await store.get(s.key))?.data).toEqual(s.data);
  });

  /** A well-formed version-2 entry (valid checksum) around any header object. */
  const entryWith = (header: Record<string, unknown>, floats: number): Buffer => {
    const h = Buffer.from(JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(h.length);
    const body = Buffer.concat([Buffer.from('FWF2'), len, h, Buffer.alloc(floats * 4)]);
    return Buffer.concat([body, createHash('sha256').update(body).digest(), Buffer.from('FWF$')]);
  };

  it('entries with a checksum but an incomplete or wrong header are misses and are removed', async () => {
    const store = new FeatureStore(dir);
    const s = seq('a2'.repeat(32), 1);
    const good = { key: s.key, count: 3, dim: 4, times: s.times, video: s.video };
    const bad: Array<[string, Buffer]> = [
      ['video: null', entryWith({ ...good, video: null }, 12)],
      ['video without durationSec', entryWith({ ...good, video: { width: 320, height: 240, fps: 25 } }, 12)],
      ['count: null (NaN written as JSON)', entryWith({ ...good, count: null }, 12)],
      ['count not an integer', entryWith({ ...good, count: 1.5 }, 6)],
      ['times shorter than count', entryWith({ ...good, times: [0.1] }, 12)],
      ['no key', entryWith({ ...good, key: undefined }, 12)],
      ['another content hash', entryWith({ ...good, key: { ...s.key, contentHash: 'ff'.repeat(32) } }, 12)],
      ['another sampling', entryWith({ ...good, key: { ...s.key, sampling: 'uniform8-224-center' } }, 12)],
      ['data shorter than count × dim', entryWith(good, 11)],
      ['header not JSON', Buffer.concat([Buffer.from('FWF2'), Buffer.from([3, 0, 0, 0]), Buffer.from('{x:'), createHash('sha256').update(Buffer.concat([Buffer.from('FWF2'), Buffer.from([3, 0, 0, 0]), Buffer.from('{x:')])).digest(), Buffer.from('FWF$')])],
    ];
    expect(decodeEntry(entryWith(good, 12), s.key)?.count).toBe(3); // the control: the same entry with a good header reads
    for (const [what, buf] of bad) {
      await store.put(s);
      await writeFile(store.pathFor(s.key), buf);
      expect(decodeEntry(buf, s.key), what).toBeUndefined();
      expect(await store.get(s.key), what).toBeUndefined();
      await expect(access(store.pathFor(s.key)), what).rejects.toThrow();
    }
  });

  it('a version-1 entry (FWF1, no checksum) and bad magic are misses and are removed', async () => {
    const store = new FeatureStore(dir);
    const s = seq('a3'.repeat(32), 2);
    const h = Buffer.from(JSON.stringify({ key: s.key, count: s.count, dim: s.dim, times: s.times, video: s.video }));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(h.length);
    const v1 = Buffer.concat([Buffer.from('FWF1'), len, h, Buffer.from(s.data.buffer), Buffer.from('FWF$')]);
    const v2 = encodeEntry(s);
    const badMagic = Buffer.concat([Buffer.from('XWF2'), v2.subarray(4)]);
    for (const buf of [v1, badMagic]) {
      await writeFile(store.pathFor(s.key), buf).catch(async () => {
        await store.put(s);
        await writeFile(store.pathFor(s.key), buf);
      });
      expect(await store.has(s.key)).toBe(false);
      await expect(access(store.pathFor(s.key))).rejects.toThrow();
    }
    expect(decodeEntry(v2, s.key)?.data).toEqual(s.data);
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
