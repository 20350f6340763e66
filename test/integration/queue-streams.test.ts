/**
 * Models over streams other than rgb served through the queue and by windows, with a real
 * redis-server, real ffmpeg, the real backbone and the real pose model (in this process):
 * two heads trained here on generated clips — `rgb,motion` and `motion,pose` (pose finds nobody in
 * generated clips: masked, never an error) —
 *  (a) an upload labelled through the workers gives the result inline `label` gives (topK within
 *      1e-4); a model sharing a stream with one labelled before decodes only what it misses;
 *  (b) `label --windows` inline and the queue's windowed jobs give the same windows, and the first
 *      window is inline clip labelling of a 2 s clip made of the same frames;
 *  (c) the embed worker embeds frames of several jobs of one stream in one backbone call (a
 *      counting wrapper around the real backbone);
 *  (d) its jobs leave no tensor behind.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/index.js';
import { contentHash, FeatureStore } from '../../src/features/feature-store.js';
import { labelStreamItems, labelWindowed, type LabelResult, type LabelSuccess } from '../../src/jobs/label.js';
import { waitForClip, type ClipStatus } from '../../src/jobs/queue/clips.js';
import { stageJobIds, streamKeysOf } from '../../src/jobs/queue/idempotency.js';
import { currentModelInfo } from '../../src/jobs/queue/model-info.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import type { StreamsDecodeJobResult } from '../../src/jobs/queue/payloads.js';
import { startWorkers, type StartWorkersOptions, type WorkerKind } from '../../src/jobs/queue/workers.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';
import { runtimeFromConfig } from '../../src/jobs/runtime.js';
import { collectStreamFeatures, createHeadStreamExtractor, createStreamExtractor } from '../../src/jobs/stream-features.js';
import { trainHead } from '../../src/jobs/train.js';
import { createWindowsDeps } from '../../src/jobs/windows.js';
import type { StreamId } from '../../src/features/streams.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';
import { runFfmpeg } from '../../src/media/synthetic.js';
import type { Backbone } from '../../src/ml/backbone.js';
import { TemporalHead } from '../../src/ml/head.js';
import { tf } from '../../src/ml/tfjs-runtime.js';
import { deploy, type Deployment } from '../helpers/api-harness.js';
import { freshCacheDir, makeClips, TEST_ENGINE, TEST_MOTIONS, type ClipFixture } from '../helpers/queue-fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const uniform8 = { kind: 'uniform' as const, frames: 8 };
const geometry = { size: 224, crop: 'center' as const };
const policy = buildWindowsPolicy(8, 2, 1);

let redis: TestRedis;
let work: string;
let roots: string;
let config: Config;
const models: Partial<Record<'fused' | 'pose', string>> = {};
let clips: ClipFixture[];
let long: string;
let first2s: string;
let sharedCache: string;
const deployments: Deployment[] = [];

/** A tiny head over `streams`, trained on the generated clips (real features, stored once). */
async function trainModel(name: string, streams: StreamId[], items: Array<{ path: string; source: string; label: string; extra: Record<string, string> }>): Promise<string> {
  const rt = runtimeFromConfig(config, { featureKind: 'grid' });
  const sx = await createStreamExtractor(rt, uniform8, geometry, streams);
  try {
    const data = await collectStreamFeatures(items, sx);
    expect(data.failed).toEqual([]);
    const r = await trainHead({ extractor: sx, train: data, val: { kind: 'none' }, id: name, head: { units: 8, projection: 8, dropout: 0 }, training: { epochs: 4, seed: 3 }, baseline: false });
    const dir = join(work, 'models', name);
    await r.head.save(dir);
    r.head.dispose();
    return dir;
  } finally {
    await sx.dispose();
  }
}

beforeAll(async () => {
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-queue-streams-'));
  roots = join(work, 'roots');
  await mkdir(roots, { recursive: true });
  config = loadConfig({ FRAMEWISE_CACHE_DIR: await freshCacheDir(join(work, 'train')), FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' });
  const train = await makeClips(join(work, 'train-clips'), TEST_MOTIONS, 3, 4100);
  const items = train.map((c) => ({ path: c.path, source: c.path, label: c.motion, extra: {} }));
  models.fused = await trainModel('fused', ['rgb', 'motion'], items);
  models.pose = await trainModel('motion-pose', ['motion', 'pose'], items);
  clips = await makeClips(join(roots, 'clips'), TEST_MOTIONS, 3, 8100);
  sharedCache = await freshCacheDir(join(work, 'shared'));
  // a 5 s video and its first 2 s, both lossless (the same pixels frame for frame)
  const src = join(work, 'long-src.mp4');
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '5', '-vf', 'rotate=0.3*t', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', src]);
  long = join(roots, 'long.mkv');
  first2s = join(roots, 'first-2s.mkv');
  await runFfmpeg(['-i', src, '-c:v', 'ffv1', long]);
  await runFfmpeg(['-i', src, '-frames:v', '50', '-c:v', 'ffv1', first2s]);
}, 600_000);

afterAll(async () => {
  for (const d of deployments) await d.close().catch(() => undefined);
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** API + workers labelling with `model`, on the shared Redis; `cache` shares a feature store between deployments. */
async function deployModel(name: string, model: string, opts: { cache?: string; env?: Record<string, string>; workers?: readonly WorkerKind[]; workerOptions?: StartWorkersOptions } = {}): Promise<Deployment> {
  const d = await deploy({
    redisUrl: redis.url,
    name: `streams-${name}`,
    dir: join(work, name),
    roots,
    env: { FRAMEWISE_MODEL_DIR: model, ...(opts.cache ? { FRAMEWISE_CACHE_DIR: opts.cache } : {}), ...opts.env },
    workers: opts.workers ?? ['decode', 'embed', 'classify'],
    ...(opts.workerOptions ? { workerOptions: opts.workerOptions } : {}),
  });
  deployments.push(d);
  return d;
}

async function upload(d: Deployment, path: string, query = ''): Promise<{ status: number; jobId: string }> {
  const boundary = 'fwstreamsboundary';
  const payload = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${basename(path)}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    await readFile(path),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const res = await d.app.inject({ method: 'POST', url: `/v1/clips${query}`, payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
  return { status: res.statusCode, jobId: res.json<{ jobId: string }>().jobId };
}

async function finished(d: Deployment, jobId: string): Promise<ClipStatus> {
  const status = await waitForClip(d.rt, jobId, { timeoutMs: 300_000, pollMs: 100 });
  expect(status.state, JSON.stringify(status.error)).toBe('completed');
  return status;
}

/** Inline `label` of one file with a model (its own fresh feature store): exactly the model's streams. */
async function inlineLabel(modelDir: string, path: string, source = basename(path)): Promise<LabelSuccess> {
  const head = await TemporalHead.load(modelDir);
  const rt = runtimeFromConfig(loadConfig({ FRAMEWISE_CACHE_DIR: await freshCacheDir(await mkdtemp(join(work, 'inline-'))), FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' }), { featureKind: head.metadata.backbone.featureKind });
  const sx = await createHeadStreamExtractor(rt, head);
  if (!sx) throw new Error('expected a model over streams');
  try {
    let out: LabelResult | undefined;
    for await (const r of labelStreamItems([{ path, source, extra: {} }], sx, head, 3)) out = r;
    if (!out?.ok) throw new Error(`inline label failed: ${JSON.stringify(out)}`);
    return out;
  } finally {
    await sx.dispose();
    head.dispose();
  }
}

const windowsByModel = new Map<string, Promise<LabelSuccess>>();

/** Inline `label --windows 2,1` of the long video with a model (its own fresh feature store; once per model). */
function inlineWindowsOf(modelDir: string): Promise<LabelSuccess> {
  let out = windowsByModel.get(modelDir);
  if (!out) {
    out = (async () => {
      const head = await TemporalHead.load(modelDir);
      const cache = await freshCacheDir(await mkdtemp(join(work, 'windows-')));
      const deps = await createWindowsDeps(runtimeFromConfig(loadConfig({ FRAMEWISE_CACHE_DIR: cache, FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' }), { featureKind: head.metadata.backbone.featureKind }));
      try {
        return await labelWindowed(long, long, head, deps, { policy, geometry }, 3);
      } finally {
        await deps.dispose();
        head.dispose();
      }
    })();
    windowsByModel.set(modelDir, out);
  }
  return out;
}

function expectSameLabel(queued: LabelSuccess, inline: LabelSuccess): void {
  expect(queued.label).toBe(inline.label);
  expect(queued.topK.map((t) => t.label)).toEqual(inline.topK.map((t) => t.label));
  queued.topK.forEach((t, i) => expect(Math.abs(t.p - (inline.topK[i]?.p ?? -1))).toBeLessThanOrEqual(1e-4));
  expect(queued.model).toEqual(inline.model);
  expect(queued.sampling).toEqual(inline.sampling);
  expect(queued.frames).toBe(inline.frames);
  expect(queued.durationSec).toBe(inline.durationSec);
}

describe('models over streams in the queue and in windows', () => {
  let fused: Deployment;
  let posed: Deployment;

  it('(a) an upload labelled with an rgb,motion model gives the result inline `label` gives; each stream is stored, no frames are left', async () => {
    fused = await deployModel('fused', models.fused as string, { cache: sharedCache });
    const clip = clips[0] as ClipFixture;
    const up = await upload(fused, clip.path);
    expect(up.status).toBe(202);
    const result = (await finished(fused, up.jobId)).result as LabelSuccess;
    assertValidResult(result);
    expect(result).toMatchObject({ ok: true, cached: false, backbone: { engine: TEST_ENGINE } });
    expectSameLabel(result, await inlineLabel(models.fused as string, clip.path));
    const info = await currentModelInfo(fused.config);
    const keys = streamKeysOf({ contentHash: await contentHash(clip.path), backbone: info.backbone, sampling: info.sampling, streams: info.streams });
    expect(keys.map((k) => k.stream ?? 'rgb')).toEqual(['rgb', 'motion']);
    for (const k of keys) expect(await fused.rt.store.has(k)).toBe(true);
    expect(await readdir(join(fused.config.queue.dataDir, 'artifacts', 'frames')).catch(() => [])).toEqual([]);
    // the same bytes again: the same job and its stored result
    const again = await upload(fused, clip.path);
    expect(again).toEqual({ status: 200, jobId: up.jobId });
  });

  it('(a) a motion,pose model on the same bytes: motion comes from the store, only the letterboxed squares are decoded; nobody seen is masked', async () => {
    posed = await deployModel('pose', models.pose as string, { cache: sharedCache });
    const clip = clips[0] as ClipFixture;
    const up = await upload(posed, clip.path);
    expect(up.status).toBe(202);
    const result = (await finished(posed, up.jobId)).result as LabelSuccess;
    assertValidResult(result);
    expect(result.cached).toBe(false);
    expectSameLabel(result, await inlineLabel(models.pose as string, clip.path));
    // another model (other streams) is another job
    const fusedJob = await fused.app.inject({ method: 'GET', url: `/v1/jobs/${up.jobId}` });
    expect(fusedJob.statusCode).toBe(404);
    const decoded = (await Job.fromId(posed.rt.queues[QueueName.Decode], stageJobIds(up.jobId).decode))?.returnvalue as StreamsDecodeJobResult;
    expect(decoded).toMatchObject({ streams: true, hit: false, hits: [true, false], count: 8 });
    if (decoded.hit) throw new Error('expected a decode');
    expect(decoded.outputs.map((o) => [o.name, o.size])).toEqual([['letterbox', 256]]);
    // the pose stream saw nobody in these generated frames: stored with a presence mask of zeros
    const info = await currentModelInfo(posed.config);
    const [, poseKey] = streamKeysOf({ contentHash: await contentHash(clip.path), backbone: info.backbone, sampling: info.sampling, streams: info.streams });
    const pose = await new FeatureStore(sharedCache).get(poseKey as NonNullable<typeof poseKey>);
    expect(pose?.present ? Array.from(pose.present) : undefined).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(await readdir(join(posed.config.queue.dataDir, 'artifacts', 'frames')).catch(() => [])).toEqual([]);
  });

  it('(b) label --windows and the queue\'s windowed jobs give the same windows; the first is clip labelling of the same 2 s', async () => {
    for (const [name, dir, d] of [
      ['motion,pose', models.pose as string, posed],
      ['rgb,motion', models.fused as string, fused],
    ] as const) {
      const inline = await inlineWindowsOf(dir);
      assertValidResult(inline);
      expect(inline.windows?.map((w) => [w.start, w.end, w.frames]), name).toEqual([0, 1, 2, 3].map((s) => [s, s + 2, 8]));
      const res = await d.app.inject({ method: 'POST', url: '/v1/clips', payload: { path: long, windows: '2,1' } });
      expect(res.statusCode, res.body).toBe(202);
      const queued = (await finished(d, res.json<{ jobId: string }>().jobId)).result as LabelSuccess;
      assertValidResult(queued);
      expect(queued.windows?.map((w) => [w.start, w.end, w.frames])).toEqual(inline.windows?.map((w) => [w.start, w.end, w.frames]));
      queued.windows?.forEach((w, i) => w.scores.forEach((p, k) => expect(Math.abs(p - (inline.windows?.[i]?.scores[k] ?? -1)), `${name} window ${i}`).toBeLessThanOrEqual(1e-4)));
      expect(queued.segments).toEqual(inline.segments);
      // the first window [0, 2) holds the frames uniform:8 samples from a clip of those 2 s
      const clip = await inlineLabel(dir, first2s);
      const labels = inline.labels as string[];
      for (const t of clip.topK) expect(Math.abs(t.p - (inline.windows?.[0]?.scores[labels.indexOf(t.label)] ?? -1)), `${name}: ${t.label}`).toBeLessThanOrEqual(2e-4);
    }
  });
});

describe('the embed worker', () => {
  it('(c) embeds the motion frames of several jobs in one backbone call', async () => {
    const calls: number[] = [];
    const counting = (b: Backbone): Backbone => ({
      info: b.info,
      embed: (frames, count) => {
        calls.push(count);
        return b.embed(frames, count);
      },
      dispose: () => b.dispose(),
    });
    // the batcher sends a call when 24 frames wait (3 jobs × 8 motion frames), whatever the timing
    const d = await deployModel('batching', models.pose as string, { workers: ['decode', 'classify'], env: { FRAMEWISE_EMBED_BATCH_FRAMES: '24', FRAMEWISE_EMBED_BATCH_WAIT_MS: '600000' } });
    const ids: string[] = [];
    for (const clip of clips.slice(3, 6)) {
      const res = await d.app.inject({ method: 'POST', url: '/v1/clips', payload: { path: clip.path } });
      expect(res.statusCode, res.body).toBe(202);
      ids.push(res.json<{ jobId: string }>().jobId);
    }
    for (const id of ids) {
      for (let i = 0; (await d.rt.queues[QueueName.Decode].getJobState(stageJobIds(id).decode)) !== 'completed'; i++) {
        if (i > 3000) throw new Error('the decodes did not finish');
        await sleep(100);
      }
    }
    const embed = await startWorkers(['embed'], d.config, { wrapBackbone: counting });
    try {
      for (const id of ids) await finished(d, id);
      expect(calls).toEqual([24]);
      expect(embed.embedder?.stats).toMatchObject({ calls: 1, requests: 3, maxRequestsPerCall: 3 });
    } finally {
      await embed.close();
    }
  });

  it('(d) a video too long for the store is scored in the embed worker (the same windows); its jobs leave no tensor behind', async () => {
    const d = await deployModel('scored', models.pose as string, { workerOptions: { windowsMaxStoredFrames: 0 } });
    const windowed = async (path: string): Promise<LabelSuccess> => {
      const res = await d.app.inject({ method: 'POST', url: '/v1/clips', payload: { path, windows: '2,1' } });
      expect(res.statusCode, res.body).toBe(202);
      return (await finished(d, res.json<{ jobId: string }>().jobId)).result as LabelSuccess;
    };
    const clipJob = async (path: string): Promise<void> => {
      const res = await d.app.inject({ method: 'POST', url: '/v1/clips', payload: { path } });
      expect(res.statusCode, res.body).toBe(202);
      await finished(d, res.json<{ jobId: string }>().jobId);
    };
    // first jobs: every model of the workers loaded and warmed
    const scored = await windowed(long);
    expect(scored.windows?.map((w) => w.scores)).toEqual((await inlineWindowsOf(models.pose as string)).windows?.map((w) => w.scores));
    expect(await readdir(join(d.config.cacheDir, 'features')).catch(() => [])).toEqual([]);
    await clipJob((clips[1] as ClipFixture).path);
    const before = tf.memory().numTensors;
    await windowed(first2s);
    await clipJob((clips[2] as ClipFixture).path);
    expect(tf.memory().numTensors).toBe(before);
  });
});
