/**
 * Windowed labelling through the HTTP API and real workers (in this process), a real
 * redis-server, real ffmpeg, the real backbone and the bundled motion4 head, on a generated
 * video whose content changes at known times (zoom_in | pan_left | zoom_out, 4 s each):
 *  - POST /v1/clips with `windows` → decode → embed → classify: the result inline
 *    `labelWindowed` gives (segments near the true boundaries), schema-valid, one ffmpeg decode
 *    pass, no frames in the artifact store, the pass in the feature store, progress figures;
 *  - idempotency: same bytes + same windows → the same job; without windows, or with another
 *    threshold → another job;
 *  - a clip cancelled while its pass runs stops at the pass's next batch;
 *  - bad `windows` / `threshold` → 400 FW_ERR_REQUEST_INVALID;
 *  - a video too long for the feature store: its windows are scored in the embed worker, and the
 *    result is the same.
 */
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/index.js';
import { labelWindowed, type LabelSuccess } from '../../src/jobs/label.js';
import { clipStatus, waitForClip, type ClipStatus } from '../../src/jobs/queue/clips.js';
import { stageJobIds, windowsKeyOf } from '../../src/jobs/queue/idempotency.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { currentModelInfo } from '../../src/jobs/queue/model-info.js';
import type { StartWorkersOptions } from '../../src/jobs/queue/workers.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';
import { runtimeFromConfig } from '../../src/jobs/runtime.js';
import { createWindowsDeps } from '../../src/jobs/windows.js';
import { contentHash } from '../../src/features/feature-store.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';
import { TemporalHead } from '../../src/ml/head.js';
import { deploy, type Deployment } from '../helpers/api-harness.js';
import { ensureTestModel, freshCacheDir, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import { batchListed, waitBatch } from '../helpers/batches.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { makeTestsrc } from '../helpers/clips.js';
import { makeChangingVideo } from '../helpers/windows-clips.js';

const policy = buildWindowsPolicy(16, 2, 1);

let redis: TestRedis;
let work: string;
let roots: string;
let video: string;
let modelDir: string;
let truth: { boundaries: number[]; labels: string[]; durationSec: number };
let inline: LabelSuccess;
let ffmpegLog: string;
let countingFfmpeg: string;

/** One deployment (its own queue prefix and feature store) on the shared Redis, ffmpeg counted. */
function deployHere(name: string, workerOptions: StartWorkersOptions = {}): Promise<Deployment> {
  return deploy({ redisUrl: redis.url, name: `win-${name}`, dir: join(work, name), roots, env: { FRAMEWISE_FFMPEG_PATH: countingFfmpeg }, workers: ['decode', 'embed', 'classify', 'ingest'], workerOptions });
}

async function ffmpegRuns(): Promise<number> {
  const text = await readFile(ffmpegLog, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

async function post(d: Deployment, body: Record<string, unknown>): Promise<{ status: number; json: { jobId?: string; created?: boolean; state?: string; result?: LabelSuccess; error?: { code: string; message: string } } }> {
  const res = await d.app.inject({ method: 'POST', url: '/v1/clips', payload: body });
  return { status: res.statusCode, json: res.json() };
}

async function finished(d: Deployment, jobId: string): Promise<ClipStatus> {
  const status = await waitForClip(d.rt, jobId, { timeoutMs: 120_000, pollMs: 100 });
  expect(status.state, JSON.stringify(status.error)).toBe('completed');
  return status;
}

/** A windowed result as inline `labelWindowed` gives it: scores to 3 decimals, provenance aside. */
function comparable(r: LabelSuccess): Record<string, unknown> {
  const { windows, topK, confidence, cached: _cached, backbone, ...rest } = r;
  return {
    ...rest,
    backbone: { ...backbone, engine: undefined, backend: undefined },
    confidence: confidence.toFixed(3),
    topK: topK.map((t) => [t.label, t.p.toFixed(3)]),
    windows: windows?.map((w) => ({ ...w, scores: w.scores.map((p) => p.toFixed(3)) })),
  };
}

function expectTrueSegments(r: LabelSuccess): void {
  const segs = r.segments ?? [];
  expect(segs.map((s) => s.label)).toEqual(truth.labels);
  for (const [i, b] of truth.boundaries.entries()) {
    expect(Math.abs((segs[i + 1]?.start ?? -99) - b), `boundary ${b} s found at ${segs[i + 1]?.start} s`).toBeLessThanOrEqual(policy.strideSec);
  }
}

beforeAll(async () => {
  modelDir = await ensureTestModel();
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-queue-windows-'));
  roots = join(work, 'roots');
  await mkdir(roots, { recursive: true });
  video = join(roots, 'changing.mp4');
  truth = await makeChangingVideo(video);
  // an ffmpeg that notes each run, to count decode passes (ffprobe is not counted)
  ffmpegLog = join(work, 'ffmpeg-runs.log');
  countingFfmpeg = join(work, 'ffmpeg-counting.sh');
  await writeFile(countingFfmpeg, `#!/bin/sh\necho run >> '${ffmpegLog}'\nexec ffmpeg "$@"\n`);
  await chmod(countingFfmpeg, 0o755);
  // the inline result to compare with (its own feature store)
  const head = await TemporalHead.load(modelDir);
  const config = testConfig(testEnv({ redisUrl: redis.url, prefix: 'win-inline', cacheDir: await freshCacheDir(join(work, 'inline')), dataDir: join(work, 'inline', 'data'), modelDir }));
  const deps = await createWindowsDeps(runtimeFromConfig(config, { featureKind: head.metadata.backbone.featureKind }));
  try {
    inline = await labelWindowed(video, video, head, deps, { policy, geometry: { size: 224, crop: 'center' } }, config.queue.topK);
  } finally {
    await deps.dispose();
    head.dispose();
  }
  expectTrueSegments(inline);
}, 180_000);

afterAll(async () => {
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('POST /v1/clips with windows (the pass fits the feature store)', () => {
  let d: Deployment;
  let jobId: string;

  beforeAll(async () => {
    d = await deployHere('stored');
  }, 120_000);

  afterAll(async () => {
    await d?.close();
  });

  it('labels window by window through the workers: the inline result, segments near the true boundaries, one decode pass', async () => {
    const runs = await ffmpegRuns();
    const res = await post(d, { path: video, windows: '2,1' });
    expect(res.status, JSON.stringify(res.json)).toBe(202);
    jobId = res.json.jobId as string;
    expect(jobId).toMatch(/^clip-[0-9a-f]{32}$/);
    const status = await finished(d, jobId);
    const result = status.result as LabelSuccess;
    assertValidResult(result);
    expectTrueSegments(result);
    expect(result).toMatchObject({ path: video, cached: false, aggregate: 'mean-of-windows', frames: 96, sampling: { policy: 'windows:2,1:uniform:16', windowSec: 2, strideSec: 1 } });
    expect(result.windows).toHaveLength(11);
    expect(result.backbone.engine).toBe(inline.backbone.engine);
    expect(comparable(result)).toEqual(comparable(inline));

    expect(await ffmpegRuns()).toBe(runs + 1); // one sequential decode, in the embed stage
    expect(await readdir(join(d.config.queue.dataDir, 'artifacts')).catch(() => [])).toEqual([]); // no frames parked
    // the pass is in the feature store, under the key `label --windows` uses
    const info = await currentModelInfo(d.config);
    expect(await d.rt.store.has(windowsKeyOf({ contentHash: await contentHash(video), backbone: info.backbone, sampling: info.sampling, windows: { policy } }))).toBe(true);
    // the embed stage's progress figures (GET /v1/jobs/:id shows them as the stage's detail)
    expect(status.stages.embed.detail).toMatchObject({ doneSec: truth.durationSec, durationSec: truth.durationSec, frames: 96 });
    // … and SSE carries them in the embed stage's event, then the windowed result
    const sse = await d.app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` });
    const events = sse.body
      .split('\n\n')
      .filter((b) => b.includes('event:'))
      .map((b) => ({ event: /^event: (.*)$/m.exec(b)?.[1], data: JSON.parse(/^data: (.*)$/m.exec(b)?.[1] ?? '{}') as Record<string, unknown> }));
    expect(events.find((e) => e.event === 'stage' && e.data.stage === 'embed')?.data).toMatchObject({ state: 'completed', progress: 100, detail: { durationSec: truth.durationSec } });
    expect((events.at(-1)?.data.result as LabelSuccess | undefined)?.segments).toEqual(result.segments);
  });

  it('the same bytes with the same windows are the same job; without windows or with another threshold, another', async () => {
    const again = await post(d, { path: video, windows: 'auto' }); // auto = 2,1 for a uniform:16 head
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ jobId, created: false, state: 'completed' });
    expect(again.json.result?.segments).toEqual((await finished(d, jobId)).result?.segments);
    // an upload of the same bytes, windows as a query parameter
    const boundary = 'fwwindowsboundary';
    const bytes = await readFile(video);
    const payload = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload.mp4"\r\nContent-Type: video/mp4\r\n\r\n`),
      bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const up = await d.app.inject({ method: 'POST', url: '/v1/clips?windows=2,1', payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    expect(up.statusCode, up.body).toBe(200);
    expect(up.json()).toMatchObject({ jobId, created: false });

    const plain = await post(d, { path: video });
    expect(plain.json.jobId).not.toBe(jobId);
    const strict = await post(d, { path: video, windows: '2,1', threshold: 0.999 });
    expect(strict.status).toBe(202);
    expect(strict.json.jobId).not.toBe(jobId);
    expect(strict.json.jobId).not.toBe(plain.json.jobId);
    const clipLevel = (await finished(d, plain.json.jobId as string)).result as LabelSuccess;
    assertValidResult(clipLevel);
    expect(clipLevel.windows).toBeUndefined();
    // a threshold above every score: unknown segments, the pass read from the feature store
    const runs = await ffmpegRuns();
    const strictResult = (await finished(d, strict.json.jobId as string)).result as LabelSuccess;
    assertValidResult(strictResult);
    expect(strictResult.segmentation).toMatchObject({ threshold: 0.999, thresholdSource: 'option' });
    expect(strictResult.segments?.map((s) => s.label)).toContain('unknown');
    expect(strictResult.cached).toBe(true);
    expect(await ffmpegRuns()).toBe(runs);
  });

  it('a batch with windows labels each file window by window; its CSV is one row per segment; `missing` skips them', async () => {
    const folder = join(roots, 'batch-windows');
    await mkdir(folder, { recursive: true });
    await copyFile(video, join(folder, 'a.mp4'));
    const create = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, windows: '2,1' } });
    expect(create.statusCode, create.body).toBe(202);
    const batchId = create.json<{ batchId: string }>().batchId;
    // the same bytes as the windowed clip above: its job and stored result are reused
    const runs = await ffmpegRuns();
    expect((await waitBatch(d.app, batchId)).counts).toMatchObject({ total: 1, completed: 1 });
    expect(await ffmpegRuns()).toBe(runs);
    const [line] = (await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results` })).body.trim().split('\n');
    const result = JSON.parse(line as string) as LabelSuccess;
    assertValidResult(result);
    expect(result.segments).toEqual(inline.segments);
    const csv = (await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results?format=csv` })).body.trim().split('\n');
    expect(csv[0]).toBe('path,label,start,end,confidence,error_code,error_message');
    expect(csv).toHaveLength(1 + (inline.segments?.length ?? 0));
    const missing = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, windows: '2,1', mode: 'missing' } });
    expect(await waitBatch(d.app, missing.json<{ batchId: string }>().batchId)).toMatchObject({ counts: { total: 0 }, skipped: 1 });
    // clip-level labels of the same file are other jobs: `missing` without windows still has it to do
    const plainMissing = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, mode: 'missing', topK: 2 } });
    expect(await waitBatch(d.app, plainMissing.json<{ batchId: string }>().batchId, batchListed)).toMatchObject({ counts: { total: 1 }, skipped: 0 });
    const bad = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, windows: '2,5' } });
    expect(bad.statusCode).toBe(400);
  });

  it('hysteresis and minSegment shape the segments as `label --hysteresis/--min-segment` do, from the stored pass', async () => {
    const runs = await ffmpegRuns();
    const res = await post(d, { path: video, windows: '2,1', minSegment: 100 });
    expect(res.status, JSON.stringify(res.json)).toBe(202);
    const merged = (await finished(d, res.json.jobId as string)).result as LabelSuccess;
    assertValidResult(merged);
    // every segment shorter than 100 s is absorbed: one segment over the whole video
    expect(merged.segmentation).toMatchObject({ minSegmentSec: 100 });
    expect(merged.segments).toHaveLength(1);
    expect(merged.windows).toEqual(inline.windows);
    expect(await ffmpegRuns()).toBe(runs);
    const bad = await post(d, { path: video, windows: '2,1', threshold: 0.3, hysteresis: 0.5 });
    expect(bad.status).toBe(400);
    expect(bad.json.error?.message).toContain('hysteresis');
  });

  it('a clip cancelled while its pass runs stops at the pass\'s next batch', async () => {
    const long = await makeTestsrc(join(roots, 'long.mp4'), { seconds: 90, size: '160x120', fps: '10' }); // 720 grid frames: ~10 s of embedding
    const res = await post(d, { path: long, windows: 'auto' });
    expect(res.status).toBe(202);
    const id = res.json.jobId as string;
    const deadline = Date.now() + 60_000;
    while ((await clipStatus(d.rt, id)).stages.embed.detail === null) {
      if (Date.now() > deadline) throw new Error('the pass never reported progress');
      await sleep(50);
    }
    const t0 = Date.now();
    const del = await d.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` });
    expect(del.statusCode, del.body).toBe(200);
    const embed = await Job.fromId(d.rt.queues[QueueName.Embed], stageJobIds(id).embed);
    while ((await embed?.getState()) === 'active') await sleep(50);
    expect(Date.now() - t0).toBeLessThan(5000); // not the rest of the pass
    const status = await clipStatus(d.rt, id);
    expect(status.state).toBe('cancelled');
    expect(status.stages.embed.error?.code).toBe('FW_ERR_JOB_CANCELLED');
    expect(status.stages.embed.detail?.doneSec ?? 90).toBeLessThan(80);
  });

  it('bad windows or threshold values are 400 FW_ERR_REQUEST_INVALID, saying what is allowed', async () => {
    for (const [body, text] of [
      [{ path: video, windows: '2,5' }, 'S ≤ W'],
      [{ path: video, windows: 'two' }, 'expected W,S in seconds'],
      [{ path: video, windows: '0' }, 'window 0 s'],
      [{ path: video, threshold: 0.6 }, 'use them with `windows`'],
      [{ path: video, windows: '2,1', threshold: 1.5 }, 'threshold'],
    ] as const) {
      const res = await post(d, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.error?.code).toBe('FW_ERR_REQUEST_INVALID');
      expect(res.json.error?.message).toContain(text);
    }
    const up = await d.app.inject({ method: 'POST', url: '/v1/clips?windows=9,9,9', payload: '--x\r\n\r\n--x--\r\n', headers: { 'content-type': 'multipart/form-data; boundary=x' } });
    expect(up.statusCode).toBe(400);
  });
});

describe('a video too long for the feature store', () => {
  let d: Deployment;

  beforeAll(async () => {
    // every pass is "too long": the embed worker scores the windows and passes their scores on
    d = await deployHere('scored', { windowsMaxStoredFrames: 0 });
  }, 120_000);

  afterAll(async () => {
    await d?.close();
  });

  it('is scored in the embed worker in its one decode pass: the same result, nothing stored', async () => {
    const runs = await ffmpegRuns();
    const res = await post(d, { path: video, windows: '2,1' });
    expect(res.status, JSON.stringify(res.json)).toBe(202);
    const result = (await finished(d, res.json.jobId as string)).result as LabelSuccess;
    assertValidResult(result);
    expectTrueSegments(result);
    expect(comparable(result)).toEqual(comparable(inline));
    expect(result.cached).toBe(false);
    expect(await ffmpegRuns()).toBe(runs + 1);
    const features = join(d.config.cacheDir, 'features');
    expect(await readdir(features).catch(() => [])).toEqual([]);
  });
});
