/**
 * Queue mode end to end in one process: real redis-server, real ffmpeg, real backbone and head.
 * A clip goes decode → embed → classify and its result equals inline `labelItems`; the same
 * bytes twice are one job, one decode; with no embed worker, embed jobs wait (not fail).
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackboneId } from '../../src/ml/backbone.js';
import type { Config } from '../../src/config/index.js';
import { labelItems, type LabelResult } from '../../src/jobs/label.js';
import { clipStatus, submitClip, waitForClip } from '../../src/jobs/queue/clips.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { submitTraining, trainingStatus } from '../../src/jobs/queue/trainings.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { TemporalHead } from '../../src/ml/head.js';
import { ensureTestModel, freshCacheDir, makeClips, testConfig, testEnv, TEST_MOTIONS } from '../helpers/queue-fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

let redis: TestRedis;
let work: string;
let config: Config;
let rt: QueueRuntime;
let clips: Awaited<ReturnType<typeof makeClips>>;
const groups: WorkerGroup[] = [];

beforeAll(async () => {
  const modelDir = await ensureTestModel();
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-queue-flow-'));
  clips = await makeClips(join(work, 'clips'), TEST_MOTIONS, 2, 500);
  config = testConfig(testEnv({ redisUrl: redis.url, prefix: 'flow', cacheDir: await freshCacheDir(work), dataDir: join(work, 'data'), modelDir }));
  rt = openQueueRuntime(config);
});

afterAll(async () => {
  for (const g of groups) await g.close();
  await rt?.close();
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function inlineLabel(path: string): Promise<LabelResult> {
  const head = await TemporalHead.load(config.modelDir, undefined, config.backend);
  const meta = head.metadata;
  const extractor = await createExtractor(runtimeFromConfig(config, { cacheDir: await freshCacheDir(join(work, 'inline')), backbone: meta.backbone.id as BackboneId, featureKind: meta.backbone.featureKind }), meta.sampling.policy, { size: meta.sampling.size, crop: meta.sampling.crop });
  try {
    for await (const r of labelItems([{ path, source: path, extra: {} }], extractor, head, config.queue.topK)) return r;
    throw new Error('no result');
  } finally {
    await extractor.dispose();
    head.dispose();
  }
}

describe('queue flow', () => {
  it('without an embed worker, embed jobs wait; a started embed worker completes them', async () => {
    groups.push(await startWorkers(['decode', 'classify'], config));
    const clip = clips[0]!;
    const { jobId } = await submitClip(rt, { path: clip.path, source: clip.path });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const s = await clipStatus(rt, jobId);
      if (s.stages.decode.state === 'completed') break;
      if (Date.now() > deadline) throw new Error(`decode did not finish: ${JSON.stringify(s)}`);
      await sleep(100);
    }
    await sleep(1500);
    let s = await clipStatus(rt, jobId);
    expect(s.state).toBe('queued');
    expect(s.stage).toBe('embed');
    expect(s.stages.embed.state).toBe('waiting');
    expect(await rt.queues[QueueName.Embed].getFailedCount()).toBe(0);
    const embed = await startWorkers(['embed'], config);
    groups.push(embed);
    s = await waitForClip(rt, jobId, { timeoutMs: 60_000 });
    expect(s.state).toBe('completed');
    expect(s.result?.ok).toBe(true);
  });

  it('gives the result inline labelItems gives, for the same clip', async () => {
    const clip = clips[2]!;
    const { jobId } = await submitClip(rt, { path: clip.path, source: clip.path });
    const s = await waitForClip(rt, jobId, { timeoutMs: 60_000 });
    const inline = await inlineLabel(clip.path);
    expect(s.result).toBeTruthy();
    if (!inline.ok || !s.result) throw new Error('expected two successes');
    expect(s.result.label).toBe(inline.label);
    expect(s.result.topK.map((t) => t.label)).toEqual(inline.topK.map((t) => t.label));
    s.result.topK.forEach((t, i) => expect(Math.abs(t.p - (inline.topK[i]?.p ?? -1))).toBeLessThanOrEqual(1e-4));
    expect(s.result.path).toBe(inline.path);
    expect(s.result.model).toEqual(inline.model);
    expect(s.result.sampling).toEqual(inline.sampling);
    expect(s.result.frames).toBe(inline.frames);
    expect(s.result.cached).toBe(false);
    expect(s.result.backbone.engine).toBe(inline.ok ? inline.backbone.engine : '');
  });

  it('same bytes submitted twice: one job, one decode, one result', async () => {
    const clip = clips[3]!;
    const copy = join(work, 'copy-of-clip.mp4');
    await copyFile(clip.path, copy);
    const decodeStats = groups[0]!.handles.find((h) => h.kind === 'decode')!.stats;
    const before = { ...decodeStats };
    const [a, b] = await Promise.all([submitClip(rt, { path: clip.path, source: clip.path }), submitClip(rt, { path: copy, source: copy })]);
    expect(a.jobId).toBe(b.jobId);
    await waitForClip(rt, a.jobId, { timeoutMs: 60_000 });
    const again = await submitClip(rt, { path: copy, source: copy });
    expect(again).toEqual({ jobId: a.jobId, created: false });
    expect(decodeStats.computed - before.computed).toBe(1);
    expect(decodeStats.storeHits - before.storeHits).toBe(0);
    const completed = await rt.queues[QueueName.Classify].getCompleted();
    expect(completed.filter((j) => j.id === a.jobId)).toHaveLength(1);
  });

  it('a training whose manifest is missing fails at once with its code, not retried', async () => {
    const train = await startWorkers(['train'], config);
    groups.push(train);
    const { trainingId } = await submitTraining(rt, { manifest: '/nonexistent/train.csv', name: 'never' });
    let status = await trainingStatus(rt, trainingId);
    for (let i = 0; i < 200 && status.state !== 'failed'; i++) {
      await sleep(50);
      status = await trainingStatus(rt, trainingId);
    }
    expect(status).toMatchObject({ state: 'failed', name: 'never', result: null, error: { code: 'FW_ERR_INPUT_NOT_FOUND' } });
    expect((await rt.queues[QueueName.Train].getJob(trainingId))?.attemptsMade).toBe(1);
  });
});
