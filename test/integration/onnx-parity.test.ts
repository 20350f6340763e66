/**
 * The converted ONNX backbones against TensorFlow.js (wasm) running the original nsfwjs weights,
 * on real decoded frames (ffmpeg test patterns), plus the cache and the batch splitting.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Backbone } from '../../src/ml/backbone.js';
import { gridFeature } from '../../src/ml/grid-feature.js';
import { decodeWeights } from '../../src/ml/onnx/convert.js';
import { createOnnxBackbone } from '../../src/ml/onnx/onnx-backbone.js';
import { ensureOnnxModel, exportOnnx, sha256 } from '../../src/ml/onnx/onnx-cache.js';
import { loadNsfwjsArtifacts, type NsfwjsModelName } from '../../src/ml/pretrained-weights.js';

const S = 224;
const FRAME = S * S * 3;
const quiet = (): void => undefined;

/** rgb24 frames from an ffmpeg lavfi source, exactly as the pipeline would decode them. */
function lavfiFrames(source: string, count: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const args = ['-v', 'error', '-f', 'lavfi', '-i', `${source}=size=${S}x${S}:rate=5`, '-frames:v', String(count), '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'];
    const p = spawn('/usr/bin/ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      const all = Buffer.concat(chunks);
      if (code !== 0 || all.length !== count * FRAME) reject(new Error(`ffmpeg ${source}: exit ${code}, ${all.length} bytes: ${err}`));
      else resolve(new Uint8Array(all));
    });
  });
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

const row = (data: Float32Array, i: number, dim: number): Float32Array => data.subarray(i * dim, (i + 1) * dim);

interface Reference {
  pooled: Float32Array;
  map: Float32Array;
  channels: number;
}

/** TF.js on the original weights: the pooled feature and the last feature map, input float /255. */
async function tfjsReference(id: NsfwjsModelName, frames: Uint8Array, n: number): Promise<Reference> {
  const { kind, artifacts } = await loadNsfwjsArtifacts(id);
  const x = tf.tidy(() => tf.tensor4d(Float32Array.from(frames), [n, S, S, 3]).div(255));
  try {
    let outs: tf.Tensor[];
    if (kind === 'graph') {
      const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const nodes = (artifacts.modelTopology as { node: Array<{ name: string; op: string; input?: string[] }> }).node;
      const squeeze = nodes.find((q) => q.name.endsWith('feature_vector/SpatialSqueeze'))!;
      const pool = nodes.find((q) => q.op === 'AvgPool')!;
      outs = model.execute({ input: x }, [squeeze.name, pool.input![0]!]) as tf.Tensor[];
      model.dispose();
    } else {
      const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const trunk = tf.model({ inputs: model.inputs, outputs: [model.getLayer('flatten_1').output as tf.SymbolicTensor, model.getLayer('out_relu').output as tf.SymbolicTensor] });
      outs = trunk.predict(x) as tf.Tensor[];
      model.dispose();
    }
    const [pooled, map] = outs as [tf.Tensor, tf.Tensor];
    const result = { pooled: (await pooled.data()) as Float32Array, map: (await map.data()) as Float32Array, channels: pooled.shape[1]! };
    tf.dispose(outs);
    return result;
  } finally {
    x.dispose();
  }
}

let cacheDir: string;
let frames: Uint8Array;
let count: number;

beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true); // setBackend reports failure instead of throwing
  await tf.ready();
  cacheDir = await mkdtemp(join(tmpdir(), 'framewise-onnx-'));
  const parts = [await lavfiFrames('testsrc2', 4), await lavfiFrames('mandelbrot', 2), await lavfiFrames('smptebars', 1)];
  frames = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    frames.set(p, at);
    at += p.length;
  }
  count = frames.length / FRAME;
}, 60_000);

afterAll(async () => {
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

describe.each(['mobilenet_v2_mid', 'mobilenet_v2'] as const)('onnx backbone %s', (id) => {
  const channels = id === 'mobilenet_v2_mid' ? 1792 : 1280;
  let ref: Reference;
  let pooledBackbone: Backbone;

  beforeAll(async () => {
    ref = await tfjsReference(id, frames, count);
    pooledBackbone = await createOnnxBackbone({ id, featureKind: 'pooled', cacheDir, threads: 2, log: quiet });
  }, 180_000);

  afterAll(async () => {
    await pooledBackbone?.dispose();
  });

  it('describes itself with the weights version (shared with the tfjs engine)', async () => {
    const { packageVersion } = await loadNsfwjsArtifacts(id);
    expect(pooledBackbone.info).toEqual({ id, version: `nsfwjs@${packageVersion}`, featureKind: 'pooled', dim: channels, inputSize: 224, engine: 'onnx', backend: 'onnx-cpu' });
    expect(ref.channels).toBe(channels);
  });

  it('dequantises the weights bit-for-bit like tf.io.decodeWeights', async () => {
    const { artifacts } = await loadNsfwjsArtifacts(id);
    const mine = decodeWeights(artifacts);
    const theirs = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    try {
      expect(mine.size).toBe(Object.keys(theirs).length);
      for (const [name, t] of Object.entries(theirs)) {
        const a = mine.get(name)?.values;
        expect(a && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from((t.dataSync() as Float32Array).buffer)), name).toBe(true);
      }
    } finally {
      tf.dispose(Object.values(theirs));
    }
  }, 60_000);

  it('matches TF.js pooled features to cosine >= 0.9999 on every frame', async () => {
    const out = await pooledBackbone.embed(frames, count);
    expect(out).toHaveLength(count * channels);
    for (let i = 0; i < count; i++) expect(cosine(row(out, i, channels), row(ref.pooled, i, channels))).toBeGreaterThanOrEqual(0.9999);
  }, 60_000);

  it('matches TF.js grid features (gridFeature of the TF.js map) to cosine >= 0.9999', async () => {
    const grid = await createOnnxBackbone({ id, featureKind: 'grid', cacheDir, threads: 2, log: quiet });
    expect(grid.info.dim).toBe(channels);
    const pending = grid.embed(frames, count);
    await grid.dispose(); // work queued before dispose() still completes...
    const out = await pending;
    const expected = gridFeature(ref.map, count, 7, channels);
    for (let i = 0; i < count; i++) expect(cosine(row(out, i, channels), row(expected, i, channels))).toBeGreaterThanOrEqual(0.9999);
    await expect(grid.embed(frames, 1)).rejects.toMatchObject({ code: 'FW_ERR_INTERNAL' }); // ...later calls fail
  }, 60_000);

  it('outputs pooled = spatial mean of map', async () => {
    const ort = await import('onnxruntime-node');
    const model = await ensureOnnxModel(id, cacheDir);
    const session = await ort.InferenceSession.create(model.path, { intraOpNumThreads: 2 });
    try {
      const n = 2;
      const out = await session.run({ frames: new ort.Tensor('uint8', frames.subarray(0, n * FRAME), [n, S, S, 3]) });
      const pooled = out.pooled!.data as Float32Array;
      const map = out.map!.data as Float32Array;
      expect(out.map!.dims).toEqual([n, 7, 7, channels]);
      for (let f = 0; f < n; f++) {
        for (let c = 0; c < channels; c++) {
          let s = 0;
          for (let p = 0; p < 49; p++) s += map[(f * 49 + p) * channels + c] ?? 0;
          expect(Math.abs(s / 49 - (pooled[f * channels + c] ?? 0))).toBeLessThan(1e-4);
        }
      }
    } finally {
      await session.release();
    }
  }, 60_000);

  it('returns count × dim for count 1, 3 and 11 (batches of 8 split inside)', async () => {
    const all = await pooledBackbone.embed(frames, count);
    for (const n of [1, 3, 11]) {
      const input = new Uint8Array(n * FRAME);
      for (let i = 0; i < n; i++) input.set(frames.subarray((i % count) * FRAME, (i % count + 1) * FRAME), i * FRAME);
      const out = await pooledBackbone.embed(input, n);
      expect(out).toHaveLength(n * channels);
      for (let i = 0; i < n; i++) expect(cosine(row(out, i, channels), row(all, i % count, channels))).toBeGreaterThan(0.99999);
    }
    expect(await pooledBackbone.embed(new Uint8Array(0), 0)).toHaveLength(0);
  }, 60_000);
});

describe('onnx model cache', () => {
  const id = 'mobilenet_v2' as const;

  it('reuses a verified file, and reconverts one whose checksum does not match', async () => {
    const first = await ensureOnnxModel(id, cacheDir);
    expect(first.path).toMatch(/onnx\/mobilenet_v2-.+-v\d+\.onnx$/);
    const sidecar = JSON.parse(await readFile(`${first.path}.json`, 'utf8')) as { sha256: string; converterVersion: number; source: { package: string } };
    expect(sidecar.sha256).toBe(first.sha256);
    expect(sidecar.source.package).toBe('nsfwjs');
    expect(sha256(await readFile(first.path))).toBe(first.sha256);

    await writeFile(first.path, 'not a model'); // corrupt it
    const again = await ensureOnnxModel(id, cacheDir);
    expect(again.sha256).toBe(first.sha256);
    expect(sha256(await readFile(first.path))).toBe(first.sha256);
  }, 60_000);

  it('ends with one valid file when two converters race (separate module instances, like two processes)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'framewise-onnx-race-'));
    try {
      vi.resetModules();
      const a = await import('../../src/ml/onnx/onnx-cache.js');
      vi.resetModules();
      const b = await import('../../src/ml/onnx/onnx-cache.js');
      expect(a.ensureOnnxModel).not.toBe(b.ensureOnnxModel);
      const [ra, rb] = await Promise.all([a.ensureOnnxModel(id, dir), b.ensureOnnxModel(id, dir)]);
      expect(ra.sha256).toBe(rb.sha256);
      expect(sha256(await readFile(ra.path))).toBe(ra.sha256);
      const { readdir } = await import('node:fs/promises');
      expect((await readdir(join(dir, 'onnx'))).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('exports a copy with the same checksum', async () => {
    const out = join(cacheDir, 'export', 'backbone.onnx');
    const exported = await exportOnnx(id, out, cacheDir);
    expect(exported.path).toBe(out);
    expect(sha256(await readFile(out))).toBe(exported.sha256);
  }, 60_000);

  it('refuses backbones it cannot convert', async () => {
    await expect(ensureOnnxModel('tfhub_mobilenet_v2', cacheDir)).rejects.toMatchObject({ code: 'FW_ERR_BACKBONE_UNAVAILABLE' });
  });
});
