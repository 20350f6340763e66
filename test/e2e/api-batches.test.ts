/**
 * Batches through the HTTP API against real workers (the ingest worker lists each source): a
 * folder of good and bad files (empty, text named .mp4, truncated mp4) — every good file labelled,
 * every bad one failed with its code, counts right, results as JSON Lines and CSV; `mode: missing`
 * re-run adds no jobs and decodes nothing; pause/resume and cancel.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabelResult } from '../../src/jobs/label.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import { stageJobIds } from '../../src/jobs/queue/idempotency.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import type { QueueRuntime } from '../../src/jobs/queue/runtime.js';
import type { WorkerGroup } from '../../src/jobs/queue/workers.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { batchFinished, batchListed, waitBatch as waitFor } from '../helpers/batches.js';
import { makeBadFiles, makeClips } from '../helpers/queue-fixtures.js';

let harness: ApiHarness;
let roots: string;
let rt: QueueRuntime;
let app: FastifyInstance;
let workers: WorkerGroup;
let http: Server;
let hookUrl: string;
const hooks: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  // the webhook endpoint is a local server: loopback must be allowed on purpose
  harness = await startApiHarness({ name: 'apibatch', env: { FRAMEWISE_NETWORK_ALLOW: '127.0.0.1/32' } });
  ({ roots, rt, app, workers } = harness);
  http = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hooks.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  hookUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/batch-done`;
});

afterAll(async () => {
  await new Promise((r) => http?.close(r));
  await harness?.close();
});

const waitBatch = (batchId: string, until: (s: BatchStatus) => boolean = batchFinished, timeoutMs = 60_000): Promise<BatchStatus> => waitFor(app, batchId, until, timeoutMs);

const stats = (kind: string) => workers.handles.find((h) => h.kind === kind)!.stats;

describe('batches', () => {
  it('labels every good file, fails every bad one with its code, and a missing-only re-run does nothing', async () => {
    const folder = join(roots, 'day1');
    const good = await makeClips(folder, ['zoom_in', 'pan_left'], 2, 1300);
    const bad = await makeBadFiles(folder, good[0]!.path);
    const res = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, mode: 'missing', webhook: hookUrl } });
    expect(res.statusCode, res.body).toBe(202);
    // the answer comes before the listing: the ingest worker lists, hashes and queues
    const created = res.json<BatchStatus>();
    expect(created).toMatchObject({ state: 'running', ingest: { state: 'queued', found: 0 } });
    expect(res.headers.location).toBe(`/v1/batches/${created.batchId}`);
    const done = await waitBatch(created.batchId);
    expect(done.state).toBe('completed');
    expect(done.ingest).toEqual({ state: 'done', found: 7, hashed: 7, queued: 7, skipped: 0, rejected: 0, error: null });
    expect(done.counts).toEqual({ total: 7, queued: 0, active: 0, paused: 0, completed: 4, failed: 3, cancelled: 0 });
    expect(done.progress).toBe(1);
    for (let i = 0; i < 50 && hooks.length === 0; i++) await sleep(100);
    expect(hooks).toEqual([{ event: 'batch.completed', batchId: created.batchId, state: 'completed', counts: done.counts, skipped: 0 }]);

    const lines = (await app.inject({ method: 'GET', url: `/v1/batches/${created.batchId}/results` })).body.trim().split('\n').map((l) => JSON.parse(l) as LabelResult);
    expect(lines).toHaveLength(7);
    const byPath = new Map(lines.map((l) => [l.path, l]));
    for (const g of good) {
      const r = byPath.get(g.path);
      expect(r?.ok, JSON.stringify(r)).toBe(true);
      if (r?.ok) expect(r.topK.length).toBeGreaterThan(0);
    }
    const code = (p: string): string | undefined => {
      const r = byPath.get(p);
      return r && !r.ok ? r.error.code : undefined;
    };
    expect(code(bad.empty)).toBe('FW_ERR_INPUT_EMPTY_FILE');
    expect(code(bad.text)).toBe('FW_ERR_MEDIA_NOT_VIDEO');
    expect(['FW_ERR_MEDIA_CORRUPT', 'FW_ERR_MEDIA_TRUNCATED']).toContain(code(bad.truncated));

    const csv = await app.inject({ method: 'GET', url: `/v1/batches/${created.batchId}/results?format=csv` });
    expect(csv.headers['content-type']).toContain('text/csv');
    const rows = parse(csv.body, { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(7);
    expect(rows.filter((r) => r.ok === 'true')).toHaveLength(4);
    expect(rows.find((r) => r.path === bad.empty)?.error_code).toBe('FW_ERR_INPUT_EMPTY_FILE');

    // missing-only re-run: the labelled files are skipped, the bad ones keep their failed jobs
    const counts = async () => Promise.all([QueueName.Decode, QueueName.Embed, QueueName.Classify].map((q) => rt.queues[q].getJobCounts('completed', 'failed', 'waiting', 'active', 'prioritized', 'waiting-children')));
    const before = { jobs: await counts(), decoded: stats('decode').computed, hits: stats('decode').storeHits };
    const again = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder, mode: 'missing' } });
    expect(again.statusCode).toBe(202);
    const done2 = await waitBatch(again.json<BatchStatus>().batchId);
    expect(done2.ingest).toMatchObject({ found: 7, skipped: 4, queued: 3 });
    expect(done2.counts).toMatchObject({ total: 3, failed: 3, completed: 0 });
    expect(await counts()).toEqual(before.jobs);
    expect(stats('decode').computed).toBe(before.decoded);
    expect(stats('decode').storeHits).toBe(before.hits);

    // `all` lists every file again, reusing the stored results (no new work either)
    const all = await app.inject({ method: 'POST', url: '/v1/batches', payload: { glob: `${folder}/*.mp4`, mode: 'all' } });
    const allDone = await waitBatch(all.json<{ batchId: string }>().batchId);
    expect(allDone.counts).toMatchObject({ total: 7, completed: 4, failed: 3 });
    expect(allDone.skipped).toBe(0);
    expect(await counts()).toEqual(before.jobs);
    expect(stats('decode').computed).toBe(before.decoded);
  });

  it('refuses sources outside the roots (403) and unknown batches (404)', async () => {
    const out = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: tmpdir() } });
    expect(out.statusCode).toBe(403);
    const glob = await app.inject({ method: 'POST', url: '/v1/batches', payload: { glob: `${roots}/../**/*.mp4` } });
    expect(glob.statusCode).toBe(403);
    const bad = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: roots, mode: 'some' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_REQUEST_INVALID');
    expect((await app.inject({ method: 'GET', url: '/v1/batches/batch-00000000000000000000000000000000' })).statusCode).toBe(404);
  });

  it('runs single clips ahead of batch jobs', async () => {
    const decode = workers.handles.find((h) => h.kind === 'decode')!.worker;
    const folder = join(roots, 'day4');
    const batchClips = await makeClips(folder, ['zoom_in', 'pan_left', 'zoom_out'], 1, 2500);
    const single = await makeClips(join(roots, 'single'), ['pan_right'], 1, 2600);
    await decode.pause();
    const b = (await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder } })).json<{ batchId: string }>();
    // every batch job queued before the single clip comes
    await waitBatch(b.batchId, batchListed);
    const s = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: single[0]!.path } });
    expect(s.statusCode, s.body).toBe(202);
    decode.resume();
    await waitBatch(b.batchId);
    const started = async (clipId: string): Promise<number> => (await rt.queues[QueueName.Decode].getJob(stageJobIds(clipId).decode))!.processedOn!;
    const singleStart = await started(s.json<{ jobId: string }>().jobId);
    const entries = (await rt.db.query<{ jobId: string }>('SELECT job_id AS "jobId" FROM batch_entries WHERE batch_id = $1', [b.batchId])).rows;
    expect(entries).toHaveLength(batchClips.length);
    const batchStarts = await Promise.all(entries.map((e) => started(e.jobId)));
    expect(singleStart).toBeLessThanOrEqual(Math.min(...batchStarts));
  });

  it('pauses, resumes and cancels a batch', async () => {
    const decode = workers.handles.find((h) => h.kind === 'decode')!.worker;
    const folder = join(roots, 'day2');
    await makeClips(folder, ['zoom_out', 'pan_right'], 2, 1700);
    await decode.pause();
    const res = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder } });
    const { batchId } = res.json<{ batchId: string }>();
    await waitBatch(batchId, batchListed);
    expect((await app.inject({ method: 'POST', url: `/v1/batches/${batchId}/pause` })).json()).toMatchObject({ state: 'paused' });
    decode.resume();
    const paused = await waitBatch(batchId, (s) => s.counts.paused === 4, 20_000);
    expect(paused.state).toBe('paused');
    expect(stats('decode').computed).toBeGreaterThanOrEqual(0);
    const resumed = await app.inject({ method: 'POST', url: `/v1/batches/${batchId}/resume` });
    expect(resumed.json()).toMatchObject({ state: 'running' });
    const done = await waitBatch(batchId);
    expect(done.counts).toMatchObject({ total: 4, completed: 4 });

    const folder3 = join(roots, 'day3');
    await makeClips(folder3, ['zoom_in'], 2, 2100);
    await decode.pause();
    const res3 = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: folder3 } });
    const b3 = res3.json<{ batchId: string }>().batchId;
    await waitBatch(b3, batchListed);
    const cancelled = await app.inject({ method: 'POST', url: `/v1/batches/${b3}/cancel` });
    expect(cancelled.json()).toMatchObject({ state: 'cancelled', counts: { total: 2, cancelled: 2 } });
    decode.resume();
    const lines = (await app.inject({ method: 'GET', url: `/v1/batches/${b3}/results` })).body.trim().split('\n').map((l) => JSON.parse(l) as LabelResult);
    expect(lines.map((l) => (l.ok ? 'ok' : l.error.code))).toEqual(['FW_ERR_JOB_CANCELLED', 'FW_ERR_JOB_CANCELLED']);
    const job = lines[0]!.path;
    expect(job).toContain('day3');
    const conflict = await app.inject({ method: 'POST', url: `/v1/batches/${b3}/pause` });
    expect(conflict.statusCode).toBe(409);
  });
});
