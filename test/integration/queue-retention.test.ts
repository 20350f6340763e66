/**
 * Retention (FRAMEWISE_RETENTION_*), with real workers, Redis and PostgreSQL: finished jobs leave
 * Redis as they finish (count 0), a finished batch's record expires (1 s), an upload is deleted
 * when its job ends (window 0). A finished batch leaves Redis's keys — and the memory they hold —
 * back where they were before it, while its results stay queryable in PostgreSQL, also after
 * Redis is flushed.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabelResult } from '../../src/jobs/label.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import type { ClipStatus } from '../../src/jobs/queue/clips.js';
import { currentModelInfo } from '../../src/jobs/queue/model-info.js';
import { contentHash } from '../../src/features/feature-store.js';
import { makeClip } from '../../src/media/synthetic.js';
import { deploy, type Deployment } from '../helpers/api-harness.js';
import { makeArchive, seedFeatures } from '../helpers/archive.js';
import { waitBatch } from '../helpers/batches.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const N = 40;
const BOUNDARY = 'fwretention';

let redis: TestRedis;
let work: string;
let roots: string;
let d: Deployment;
let base: string;

const multipart = (name: string, bytes: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: video/mp4\r\n\r\n`), bytes, Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]);

async function job(id: string, until: (s: ClipStatus) => boolean = (s) => s.state === 'completed' || s.state === 'failed'): Promise<ClipStatus> {
  for (let i = 0; i < 1200; i++) {
    const res = await d.app.inject({ method: 'GET', url: `/v1/jobs/${id}` });
    if (res.statusCode === 200 && until(res.json<ClipStatus>())) return res.json<ClipStatus>();
    await sleep(100);
  }
  throw new Error(`job ${id} did not finish`);
}

/**
 * The keys of this deployment, and the memory they hold — BullMQ's event logs (streams capped at
 * 10,000 events per queue) and its stalled-check marker (a lock that comes and goes) aside.
 */
async function footprint(): Promise<{ keys: string[]; bytes: number }> {
  const keys = (await d.rt.redis.keys(`${d.rt.prefix}:*`)).filter((k) => !k.endsWith(':events') && !k.endsWith(':stalled-check')).sort();
  let bytes = 0;
  for (const k of keys) bytes += Number((await d.rt.redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) ?? 0);
  return { keys, bytes };
}

beforeAll(async () => {
  redis = await startRedis();
  work = await mkdtemp(join(tmpdir(), 'fw-retention-'));
  roots = join(work, 'roots');
  await mkdir(roots, { recursive: true });
  d = await deploy({
    redisUrl: redis.url,
    name: 'retain',
    dir: work,
    roots,
    env: { FRAMEWISE_RETENTION_JOBS_COUNT: '0', FRAMEWISE_RETENTION_BATCHES_S: '1', FRAMEWISE_RETENTION_UPLOADS_S: '0' },
  });
  base = join(work, 'base.mp4');
  await makeClip({ motion: 'zoom_out', scene: 3, seconds: 1.5, fps: 12, width: 96, height: 64, hue: 90, strength: 0.8 }, base);
}, 300_000);

afterAll(async () => {
  await d?.close();
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('retention', () => {
  it('an upload is deleted when its job ends; its job leaves Redis and its result is served from PostgreSQL', async () => {
    const res = await d.app.inject({ method: 'POST', url: '/v1/clips', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, payload: multipart('mine.mp4', await readFile(base)) });
    expect(res.statusCode, res.body).toBe(202);
    const { jobId } = res.json<{ jobId: string }>();
    const done = await job(jobId);
    expect(done.state).toBe('completed');
    // the job left Redis as it finished: what answers is PostgreSQL
    expect(await d.rt.redis.exists(`${d.rt.prefix}:classify:${jobId}`)).toBe(0);
    expect(done.result).toMatchObject({ ok: true, path: expect.stringMatching(/^upload-[0-9a-f]{12}\.mp4$/) });
    const uploads = join(d.config.queue.dataDir, 'uploads');
    for (let i = 0; i < 50 && (await readdir(uploads)).some((f) => !f.startsWith('.')); i++) await sleep(100);
    expect((await readdir(uploads)).filter((f) => !f.startsWith('.'))).toEqual([]);
    // the same bytes again: the stored result, at once, and no file kept
    const again = await d.app.inject({ method: 'POST', url: '/v1/clips', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, payload: multipart('again.mp4', await readFile(base)) });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ jobId, created: false, result: { ok: true, path: 'again.mp4' } });
    expect((await readdir(uploads)).filter((f) => !f.startsWith('.'))).toEqual([]);
  });

  it('a finished batch leaves Redis as it found it; its results stay in PostgreSQL, also after Redis is flushed', async () => {
    const model = await currentModelInfo(d.config);
    const files = await makeArchive(join(roots, 'arch'), base, N, { perFolder: 20 });
    await seedFeatures(d.rt.store, model, await contentHash(base), files.map((f) => f.contentHash));
    // a first batch warms what stays (queue meta keys, id counters); the second is measured
    const warm = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: join(roots, 'arch', 'd0'), topK: 2 } });
    const warmed = await waitBatch(d.app, warm.json<BatchStatus>().batchId);
    for (let i = 0; i < 100 && (await d.rt.redis.exists(d.rt.keys.batch(warmed.batchId))); i++) await sleep(100);
    const before = await footprint();

    const res = await d.app.inject({ method: 'POST', url: '/v1/batches', payload: { path: join(roots, 'arch') } });
    const { batchId } = res.json<BatchStatus>();
    let peak = before.bytes;
    let s: BatchStatus;
    for (;;) {
      s = (await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}` })).json<BatchStatus>();
      peak = Math.max(peak, (await footprint()).bytes);
      if (s.finishedAt !== null) break;
      await sleep(50);
    }
    expect(s.counts).toMatchObject({ total: N, completed: N });
    // its record expires after FRAMEWISE_RETENTION_BATCHES_S; its status then comes from PostgreSQL
    for (let i = 0; i < 100 && (await d.rt.redis.exists(d.rt.keys.batch(batchId))); i++) await sleep(100);
    const after = await footprint();
    expect(after.keys).toEqual(before.keys);
    expect(after.keys.some((k) => k.includes(batchId))).toBe(false);
    expect(peak - before.bytes).toBeGreaterThan(0);
    // the same keys, about the same size: well under what the batch held at its peak
    expect(Math.abs(after.bytes - before.bytes)).toBeLessThan((peak - before.bytes) / 2);
    const fromDb = (await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}` })).json<BatchStatus>();
    expect(fromDb).toMatchObject({ state: 'completed', counts: s.counts, ingest: { found: N } });

    const query = async (): Promise<LabelResult[]> => (await d.app.inject({ method: 'GET', url: `/v1/results?batch=${batchId}` })).body.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LabelResult);
    const lines = await query();
    expect(lines.map((l) => l.path)).toEqual(files.map((f) => f.path));
    // Redis flushed: nothing of the results was only there
    await d.rt.redis.flushdb();
    expect(await query()).toEqual(lines);
    expect((await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}` })).json<BatchStatus>().counts).toEqual(s.counts);
    const export_ = await d.app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results?format=csv` });
    expect(export_.body.trim().split('\n')).toHaveLength(N + 1);
  });
});
