/** The real backbones on real decoded frames, and the extract stage through the feature store. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFrames, probe } from '../../src/media/ffmpeg.js';
import { createBackbone } from '../../src/ml/backbone-specs.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import type { ExtractOutcome } from '../../src/features/extract.js';
import { loadConfig } from '../../src/config/index.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';

let dir: string;
let frames: Uint8Array;
const N = 6;

const cosine = (a: Float32Array, b: Float32Array): number => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
};

beforeAll(async () => {
  dir = await makeTempDir();
  await makeTestsrc(join(dir, 'a.mp4'), { seconds: 2 });
  await makeClip(randomClipSpec('pan_left', 3), join(dir, 'b.mp4'));
  await writeFile(join(dir, 'empty.mp4'), '');
  const info = await probe(join(dir, 'a.mp4'));
  frames = (await decodeFrames(info, { kind: 'uniform', frames: N }, { size: 224, crop: 'center' })).data;
});
afterAll(() => removeDir(dir));

describe('backbone on real frames', () => {
  it('tfjs: 1792-d per frame, deterministic, no tensor leak across calls', async () => {
    const b = await createBackbone({ id: 'mobilenet_v2_mid', engine: 'tfjs', featureKind: 'pooled', cacheDir: dir, backend: 'wasm' });
    expect(b.info).toMatchObject({ dim: 1792, engine: 'tfjs', backend: 'wasm', version: 'nsfwjs@4.4.0' });
    const before = tf.memory().numTensors;
    const e1 = await b.embed(frames, N);
    const e2 = await b.embed(frames, N);
    expect(tf.memory().numTensors).toBe(before);
    expect(e1.length).toBe(N * 1792);
    expect(e2).toEqual(e1);
    // different frames give different features; the same frame gives the same one
    const f0 = e1.subarray(0, 1792);
    const f5 = e1.subarray(5 * 1792, 6 * 1792);
    expect(cosine(f0, f5)).toBeLessThan(0.999);
    expect(Math.min(...f0)).toBeGreaterThanOrEqual(0); // post-ReLU6 averages
    await b.dispose();
  });

  it('onnx (the default engine) gives the same features as tfjs', async () => {
    const onnx = await createBackbone({ id: 'mobilenet_v2_mid', engine: 'onnx', featureKind: 'pooled', cacheDir: dir });
    const tfjs = await createBackbone({ id: 'mobilenet_v2_mid', engine: 'tfjs', featureKind: 'pooled', cacheDir: dir, backend: 'wasm' });
    const a = await onnx.embed(frames, N);
    const b = await tfjs.embed(frames, N);
    for (let i = 0; i < N; i++) expect(cosine(a.subarray(i * 1792, (i + 1) * 1792), b.subarray(i * 1792, (i + 1) * 1792))).toBeGreaterThan(0.9999);
    expect(onnx.info.version).toBe(tfjs.info.version);
    await onnx.dispose();
    await tfjs.dispose();
  });
});

describe('extract stage', () => {
  it('keeps input order, reports a bad file and goes on; a second run never decodes or embeds', async () => {
    const rt = runtimeFromConfig(loadConfig({}), { cacheDir: join(dir, 'cache') });
    const items = ['a.mp4', 'empty.mp4', 'b.mp4', 'missing.mp4'].map((f) => ({ path: join(dir, f) }));
    const first = await createExtractor(rt, { kind: 'uniform', frames: 8 }, { size: 224, crop: 'center' });
    const out1: ExtractOutcome<{ path: string }>[] = [];
    for await (const o of first.extractMany(items)) out1.push(o);
    expect(out1.map((o) => (o.ok ? 'ok' : o.error.code))).toEqual(['ok', 'FW_ERR_INPUT_EMPTY_FILE', 'ok', 'FW_ERR_INPUT_NOT_FOUND']);
    expect(first.stats).toMatchObject({ decoded: 2, embedded: 2, cached: 0, failed: 2, framesEmbedded: 16 });
    await first.dispose();

    const second = await createExtractor(rt, { kind: 'uniform', frames: 8 }, { size: 224, crop: 'center' });
    const out2: ExtractOutcome<{ path: string }>[] = [];
    for await (const o of second.extractMany(items)) out2.push(o);
    expect(second.stats).toMatchObject({ decoded: 0, embedded: 0, cached: 2, failed: 2 });
    expect(second.loadedInfo).toBeUndefined(); // the backbone was never opened
    const seq = (o: (typeof out1)[number]) => (o.ok ? o.seq.data : undefined);
    expect(seq(out2[0]!)).toEqual(seq(out1[0]!));
    expect(out2[2]!.ok && out2[2]!.cached).toBe(true);

    // another sampling policy is another key: computed again
    const third = await createExtractor(rt, { kind: 'uniform', frames: 4 }, { size: 224, crop: 'center' });
    for await (const _ of third.extractMany(items.slice(0, 1))) void _;
    expect(third.stats.decoded).toBe(1);
    await third.dispose();
  });
});
