/**
 * Per-frame streams end to end on generated clips with the real backbone and ffmpeg: train a
 * fused rgb+motion head (features of each stream stored once), label and evaluate with exactly
 * the model's streams, `--streams auto` records every candidate; a keypoint stream (a test double
 * of the FrameStream contract until the real models are merged) with frames where nothing is
 * seen trains and labels (masked); `label --windows` computes a fused model's streams too.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { readManifest } from '../../src/features/inputs.js';
import { FeatureStore } from '../../src/features/feature-store.js';
import type { FrameStream, LetterboxedFrames } from '../../src/features/streams.js';
import { runtimeFromConfig } from '../../src/jobs/runtime.js';
import { collectStreamFeatures, createStreamExtractor } from '../../src/jobs/stream-features.js';
import { predictLabelled, runTraining, trainHead } from '../../src/jobs/train.js';
import { runEvaluation } from '../../src/jobs/evaluate.js';
import { main } from '../../src/cli/main.js';
import { TemporalHead } from '../../src/ml/head.js';
import { makeMotionPairs } from '../helpers/direction-clips.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { runFfmpeg } from '../../src/media/synthetic.js';

const CACHE = join(PROJECT_ROOT, '.cache', 'test-features');
let dir: string;
let train = '';
let test = '';

beforeAll(async () => {
  dir = await makeTempDir('fw-streams-');
  await mkdir(join(dir, 'train'));
  await mkdir(join(dir, 'test'));
  [train, test] = await Promise.all([makeMotionPairs(join(dir, 'train'), 'zoom', 8, 300), makeMotionPairs(join(dir, 'test'), 'zoom', 3, 9300)]);
});
afterAll(() => removeDir(dir));

const quick = { epochs: 8, seed: 1 };

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  process.env.FRAMEWISE_CACHE_DIR = CACHE;
  process.env.FRAMEWISE_LOG_LEVEL = 'warn';
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (c: Buffer) => (o += c.toString()));
  err.on('data', (c: Buffer) => (e += c.toString()));
  const code = await main(['node', 'framewise', ...args, '--json'], { stdout: out, stderr: err });
  return { code, out: o, err: e };
}

describe('streams in training and labelling', () => {
  it('trains rgb+motion (early fusion), records the streams, labels and evaluates with exactly them', async () => {
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: CACHE });
    const out = join(dir, 'fused');
    const r = await runTraining({ config, manifest: train, out, streams: ['rgb', 'motion'], training: quick, baseline: false, report: false });
    expect(r.streams).toEqual(['rgb', 'motion']);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as { streams: Array<{ id: string; version: string; dim: number; masked: boolean }>; head: { fusion: string } };
    expect(meta.streams.map((s) => s.id)).toEqual(['rgb', 'motion']);
    expect(meta.streams[1]?.version).toMatch(/^mobilenet_v2_mid@/);
    expect(meta.head.fusion).toBe('early');

    // motion features are in the store under their own key, next to rgb
    const rt = runtimeFromConfig(config, { cacheDir: CACHE, featureKind: 'grid' });
    const sx = await createStreamExtractor(rt, { kind: 'uniform', frames: 16 }, { size: 224, crop: 'center' }, ['rgb', 'motion']);
    const items = (await readManifest(test, { requireLabel: true })).items;
    const data = await collectStreamFeatures(items, sx);
    await sx.dispose();
    const keys = await sx.keysFor('00'.repeat(32));
    expect(new FeatureStore(CACHE).pathFor(keys[1] as (typeof keys)[number])).toContain('stream-motion');

    // label: the CLI computes both streams and gives the model's probabilities
    const head = await TemporalHead.load(out);
    const { probs } = await predictLabelled(head, data);
    head.dispose();
    const first = items[0]?.path as string;
    const res = await cli(['label', first, '--model', out]);
    expect(res.code).toBe(0);
    const line = JSON.parse(res.out.trim()) as { ok: boolean; topK: Array<{ label: string; p: number }> };
    expect(line.ok).toBe(true);
    const row = probs[0] as Float32Array;
    for (const t of line.topK) expect(t.p).toBeCloseTo(row[['zoom_in', 'zoom_out'].indexOf(t.label)] as number, 4);

    const ev = await runEvaluation({ config, model: out, manifest: test });
    expect(ev.report.n).toBe(items.length);
    expect(ev.report.streams).toEqual(['rgb', 'motion']);

    // windowed labelling computes both streams too, in one decode pass
    const win = await cli(['label', first, '--model', out, '--windows', '1']);
    expect(win.code, win.err).toBe(0);
    const windowed = JSON.parse(win.out.trim()) as { ok: boolean; windows: Array<{ scores: number[] }> };
    expect(windowed.ok).toBe(true);
    expect(windowed.windows.length).toBeGreaterThan(0);
  }, 600_000);

  it('--streams auto tries the candidate sets on validation splits and records each score and cost', async () => {
    const config = loadConfig({ FRAMEWISE_CACHE_DIR: CACHE });
    const out = join(dir, 'auto');
    const r = await runTraining({ config, manifest: train, out, streams: 'auto', autoStreams: ['rgb', 'motion'], training: { epochs: 4, seed: 1, members: 2 }, baseline: false });
    const choice = r.streamChoice;
    expect(choice?.candidates.map((c) => c.streams.join(','))).toEqual(expect.arrayContaining(['rgb', 'motion', 'rgb,motion']));
    for (const c of choice?.candidates ?? []) {
      expect(c.valTop1).toHaveLength(2);
      expect(c.framesPerSec).toBeGreaterThan(0);
    }
    const best = Math.max(...(choice?.candidates ?? []).map((c) => c.mean));
    expect(choice?.candidates.find((c) => c.streams.join(',') === choice.chosen.join(','))?.mean).toBe(best);
    expect(r.streams).toEqual(choice?.chosen);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as { training: { streamChoice: unknown } };
    expect(meta.training.streamChoice).toEqual(JSON.parse(JSON.stringify(choice)));
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toContain('Stream sets tried');
  }, 600_000);

  it('a keypoint stream where nobody is seen trains and labels (masked)', async () => {
    // a double of the FrameStream contract: "someone" is seen where the frame's centre is bright
    const seen: number[] = [];
    const double: FrameStream = {
      id: 'pose',
      version: 'double-pose@1',
      inputSize: 64,
      dim: 3,
      async embed(frames: LetterboxedFrames) {
        const data = new Float32Array(frames.count * 3);
        const present = new Uint8Array(frames.count);
        const s = frames.size;
        for (let i = 0; i < frames.count; i++) {
          const c = ((i * s + s / 2) * s + s / 2) * 3;
          const v = (frames.data[c] as number) / 255;
          present[i] = v > 0.05 ? 1 : 0;
          if (present[i]) data.set([v, frames.content.w, frames.content.h], i * 3);
          seen.push(present[i] as number);
        }
        return { data, present };
      },
      async dispose() {},
    };
    // a black clip: nothing is ever seen
    const black = join(dir, 'train', 'black.mp4');
    await runFfmpeg(['-f', 'lavfi', '-i', 'color=c=black:size=320x240:rate=25', '-t', '1.5', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', black]);
    const items = [...(await readManifest(train, { requireLabel: true })).items, { path: black, source: black, label: 'zoom_in', extra: {} }];
    const rt = runtimeFromConfig(loadConfig({ FRAMEWISE_CACHE_DIR: CACHE }), { cacheDir: join(dir, 'kp-cache'), featureKind: 'pooled' });
    const sx = await createStreamExtractor(rt, { kind: 'uniform', frames: 8 }, { size: 224, crop: 'center' }, ['rgb', 'pose'], async () => double);
    const data = await collectStreamFeatures(items, sx);
    expect(data.failed).toEqual([]);
    expect(seen).toContain(0);
    expect(data.layout?.map((l) => [l.id, l.masked])).toEqual([
      ['rgb', false],
      ['pose', true],
    ]);
    const r = await trainHead({ extractor: sx, train: data, val: { kind: 'none' }, id: 'kp', head: { units: 8, projection: 8 }, training: { epochs: 3, seed: 1 }, baseline: false });
    const blackRow = data.examples.length - 1;
    const { probs } = await predictLabelled(r.head, { examples: [data.examples[blackRow] as (typeof data.examples)[number]], labels: ['zoom_in'] });
    expect(Number.isFinite(probs[0]?.[0])).toBe(true);
    r.head.dispose();
    // the second pass reads every stream from the store, presence masks included
    const before = { cached: sx.stats.cached, decoded: sx.stats.decoded };
    const again = await collectStreamFeatures(items, sx);
    expect(sx.stats.cached - before.cached).toBe(items.length);
    expect(sx.stats.decoded).toBe(before.decoded);
    expect(Array.from(again.examples[blackRow]?.data ?? [])).toEqual(Array.from(data.examples[blackRow]?.data ?? []));
    await sx.dispose();
  }, 600_000);
});
