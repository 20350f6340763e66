/**
 * Augmentation at extraction, with real ffmpeg and the real backbone: the mirrored decode is the
 * exact mirror of the plain one; `runTraining --augment` adds jittered and mirrored copies of the
 * training rows only (pan_left ↔ pan_right swap labels), stores them, and a second run reads them
 * all from the feature store.
 */
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { runTraining } from '../../src/jobs/train.js';
import { decodeFrames, probe } from '../../src/media/ffmpeg.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { freshCacheDir, makeClips, TEST_ENGINE, type ClipFixture } from '../helpers/queue-fixtures.js';

let dir: string;
let clips: ClipFixture[];
let manifest: string;

beforeAll(async () => {
  dir = await makeTempDir('fw-augment-');
  clips = await makeClips(join(dir, 'clips'), ['pan_left', 'pan_right'], 3, 500);
  manifest = join(dir, 'train.csv');
  await writeFile(manifest, `path,label\n${clips.map((c) => `clips/${basename(c.path)},${c.motion}`).join('\n')}\n`);
});
afterAll(() => removeDir(dir));

describe('augmentation', () => {
  it('decodes the mirror of the plain frames, pixel for pixel', async () => {
    const info = await probe(clips[0]!.path);
    const size = 64;
    const plain = await decodeFrames(info, { kind: 'uniform', frames: 4 }, { size, crop: 'center' });
    const flipped = await decodeFrames(info, { kind: 'uniform', frames: 4 }, { size, crop: 'center', flip: true });
    expect(flipped.count).toBe(plain.count);
    let differ = 0;
    for (let f = 0; f < plain.count; f++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++)
          for (let c = 0; c < 3; c++) {
            const a = plain.data[((f * size + y) * size + x) * 3 + c];
            const b = flipped.data[((f * size + y) * size + (size - 1 - x)) * 3 + c];
            if (a !== b) differ++;
          }
    expect(differ).toBe(0);
    // and it is not the same picture (the scene is not symmetric)
    expect(Buffer.compare(Buffer.from(plain.data), Buffer.from(flipped.data))).not.toBe(0);
  });

  it('adds jittered and mirrored copies of the training rows only, stored for the next run', async () => {
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: await freshCacheDir(dir), FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' });
    const train = (out: string) =>
      runTraining({ config, manifest, out: join(dir, out), runtime: { featureKind: 'pooled' }, split: { fraction: 0.34 }, augment: { jitter: 1, flip: true }, streams: ['rgb'], head: { units: 8, projection: 8 }, training: { epochs: 2, seed: 1 }, baseline: false, report: false });
    const first = await train('m1');
    // 6 clips: 2 for validation (one per class), 4 trained on, each with one jittered and one mirrored copy
    expect(first.valN).toBe(2);
    expect(first.trainN).toBe(4 + 8);
    expect(first.augmented).toMatchObject({ examples: 8, embedded: 8, cached: 0 });
    expect(first.features).toMatchObject({ embedded: 6 });
    const second = await train('m2');
    expect(second.augmented).toMatchObject({ examples: 8, embedded: 0, decoded: 0, cached: 8 });
    expect(second.features).toMatchObject({ embedded: 0, cached: 6 });
  }, 240_000);
});
