/**
 * Training as a product, over the HTTP API against real workers (decode, embed, classify, train)
 * and FRAMEWISE_MODEL naming a registry model:
 * a training streams one SSE `epoch` event per epoch and is cancelled (its best epoch is kept as
 * a version that is not promoted); the next one (an uploaded CSV) reads every feature from the
 * store (nothing decoded) and, being the first complete version, is promoted; a batch labels
 * the folder with it; a third version is promoted through the API, a few clips are labelled
 * with it, and a `missing` batch then labels only the files that version has not labelled.
 * Requests that reach outside the path roots or carry bad options are refused.
 */
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabelSuccess } from '../../src/jobs/label.js';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import type { TrainingStatus } from '../../src/jobs/queue/trainings.js';
import { MIN_PRESENCE } from '../../src/jobs/stream-features.js';
import type { WorkerGroup } from '../../src/jobs/queue/workers.js';
import type { ModelSummary } from '../../src/api/model-routes.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { makeClips, type ClipFixture } from '../helpers/queue-fixtures.js';
import { parseSse } from '../helpers/sse.js';

let harness: ApiHarness;
let app: FastifyInstance;
let workers: WorkerGroup;
let clips: ClipFixture[];

beforeAll(async () => {
  harness = await startApiHarness({
    name: 'apitrain',
    prepare: async (roots) => {
      clips = await makeClips(join(roots, 'data'), ['zoom_in', 'pan_left'], 5, 300);
      await writeFile(join(roots, 'train.csv'), `path,label\n${clips.map((c) => `data/${basename(c.path)},${c.motion}`).join('\n')}\n`);
    },
    env: { FRAMEWISE_MODEL: 'moves' },
    // no version of `moves` exists yet: the workers start anyway and load heads with their jobs
    workers: ['decode', 'embed', 'classify', 'train', 'ingest'],
  });
  ({ app, workers } = harness);
}, 120_000);

afterAll(() => harness?.close());

async function training(id: string): Promise<TrainingStatus> {
  const res = await app.inject({ method: 'GET', url: `/v1/trainings/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<TrainingStatus>();
}

async function waitTraining(id: string, until: (s: TrainingStatus) => boolean, timeoutMs = 180_000): Promise<TrainingStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await training(id);
    if (until(s)) return s;
    if (s.state === 'failed') throw new Error(`training failed: ${JSON.stringify(s.error)}`);
    if (Date.now() > deadline) throw new Error(`training did not get there: ${JSON.stringify(s).slice(0, 500)}`);
    await sleep(100);
  }
}

async function submit(body: Record<string, unknown>): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/trainings', payload: body });
  expect(res.statusCode, res.body).toBe(202);
  return res.json<{ trainingId: string }>().trainingId;
}

async function waitBatch(batchId: string): Promise<BatchStatus> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = (await app.inject({ method: 'GET', url: `/v1/batches/${batchId}` })).json<BatchStatus>();
    if (s.finishedAt !== null) return s;
    if (Date.now() > deadline) throw new Error(`batch did not finish: ${JSON.stringify(s)}`);
    await sleep(150);
  }
}

async function batchResults(batchId: string): Promise<LabelSuccess[]> {
  const text = (await app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results` })).body;
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LabelSuccess);
}

const models = async (): Promise<{ current: { version?: string }; models: ModelSummary[] }> => (await app.inject({ method: 'GET', url: '/v1/models' })).json();

describe('training over the API', () => {
  let cancelledVersion: string;
  let v2: string;
  let v3: string;

  it('streams one event per epoch; cancel keeps the best epoch as a version that is not promoted', async () => {
    // streams auto: the keypoint streams screened on a sample, the candidates embedded, then trained in turn, one head per candidate
    const id = await submit({ name: 'moves', manifest: 'train.csv', training: { epochs: 1000, patience: 1000, seed: 1, members: 1 }, baseline: false, streams: 'auto' });
    const events = app.inject({ method: 'GET', url: `/v1/trainings/${id}/events` });
    await waitTraining(id, (s) => s.progress.epochs.length >= 2);
    const del = await app.inject({ method: 'DELETE', url: `/v1/trainings/${id}` });
    expect(del.statusCode, del.body).toBe(200);
    expect(del.json<TrainingStatus>().cancelRequested).toBe(true);

    const stream = parseSse((await events).body);
    const epochs = stream.filter((e) => e.event === 'epoch').map((e) => e.data);
    expect(epochs.length).toBeGreaterThanOrEqual(2);
    expect(epochs.map((e) => e.epoch)).toEqual(epochs.map((_, i) => i + 1));
    for (const e of epochs) for (const k of ['loss', 'acc', 'valLoss', 'valAcc']) expect(typeof e[k]).toBe('number');
    expect(stream.some((e) => e.event === 'progress' && e.data.phase === 'features' && (e.data.items as { total: number }).total === clips.length)).toBe(true);
    const last = stream[stream.length - 1]!;
    expect(last.event).toBe('cancelled');
    const result = last.data.result as TrainingStatus['result'];
    expect(result).toMatchObject({ cancelled: true, registered: { name: 'moves', promoted: false }, epochs: epochs.length });
    cancelledVersion = result!.version;

    const status = await training(id);
    expect(status).toMatchObject({ state: 'cancelled', result: { version: cancelledVersion } });
    expect(status.progress.epochs.length).toBe(epochs.length);
    const list = await models();
    expect(list.models).toHaveLength(1);
    expect(list.models[0]).toMatchObject({ name: 'moves', promoted: null, versions: [{ version: cancelledVersion, promoted: false, training: { cancelled: { afterEpoch: epochs.length } } }] });
    expect(list.current).toMatchObject({ ref: 'moves', error: { code: 'FW_ERR_MODEL_NOT_FOUND' } });
  }, 240_000);

  it('trains again from an uploaded CSV on the stored features (nothing decoded); the first complete version is promoted', async () => {
    const csv = `path,label\n${clips.map((c) => `data/${basename(c.path)},${c.motion}`).join('\n')}\n`;
    const id = await submit({ name: 'moves', csv, training: { epochs: 6, seed: 1, members: 1 }, streams: 'auto' });
    const done = await waitTraining(id, (s) => s.state === 'completed');
    expect(done.result).toMatchObject({ cancelled: false, registered: { name: 'moves', promoted: true }, features: { decoded: 0, embedded: 0, cached: clips.length }, trainN: expect.any(Number) });
    // auto: the keypoint streams screened on a sample (kept when they saw their subject in a quarter of its frames); each kept stream alone, then the best two together; the model reads the one chosen (the batch below labels with it)
    const choice = done.result?.streamChoice;
    expect(choice?.screened?.map((x) => x.stream)).toEqual(['pose', 'hands']);
    for (const x of choice?.screened ?? []) expect(x.kept).toBe(x.presence >= MIN_PRESENCE);
    const kept = ['rgb', 'motion', ...(choice?.screened ?? []).filter((x) => x.kept).map((x) => x.stream)];
    const tried = choice?.candidates.map((c) => c.streams.join(',')) ?? [];
    expect(tried.slice(0, kept.length).sort()).toEqual([...kept].sort());
    expect(tried.slice(kept.length).map((t) => t.split(',').length)).toEqual([2]);
    expect(done.result?.streams).toEqual(choice?.chosen);
    // every candidate's epochs were streamed, each named by its stream set
    expect(done.progress.epochs.length).toBeGreaterThan(done.result!.epochs);
    expect(new Set(done.progress.epochs.map((e) => e.member?.label))).toEqual(new Set(choice?.candidates.map((c) => c.streams.join(','))));
    v2 = done.result!.version;
    expect(v2).not.toBe(cancelledVersion);
    expect((await models()).current).toMatchObject({ ref: 'moves', id: 'moves', version: v2 });

    const batch = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: 'data', mode: 'all' } });
    expect(batch.statusCode, batch.body).toBe(202);
    const batchId = batch.json<{ batchId: string }>().batchId;
    expect((await waitBatch(batchId)).counts.completed).toBe(clips.length);
    for (const r of await batchResults(batchId)) {
      expect(r).toMatchObject({ ok: true, model: { id: 'moves', version: v2 }, thresholds: { unknown: expect.any(Number) } });
    }
  }, 240_000);

  it('promote through the API switches new jobs; a `missing` batch labels only what the new version has not', async () => {
    // streams named in the request (the default's own set, motion: every feature is in the store)
    const id = await submit({ name: 'moves', manifest: 'train.csv', training: { epochs: 4, seed: 2 }, streams: 'motion' });
    const done = await waitTraining(id, (s) => s.state === 'completed');
    v3 = done.result!.version;
    expect(done.result).toMatchObject({ registered: { promoted: false }, features: { decoded: 0, embedded: 0 }, streams: ['motion'] });
    expect((await models()).current).toMatchObject({ version: v2 });

    const promote = await app.inject({ method: 'POST', url: '/v1/models/moves/promote', payload: { version: v3 } });
    expect(promote.statusCode, promote.body).toBe(200);
    expect(promote.json<ModelSummary>()).toMatchObject({ promoted: v3 });
    expect(promote.json<ModelSummary>().versions.map((v) => v.version)).toEqual([v3, v2, cancelledVersion]);
    expect((await models()).current).toMatchObject({ version: v3 });

    // three clips labelled one by one with the promoted version
    const first = clips.slice(0, 3);
    for (const c of first) {
      const res = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: `data/${basename(c.path)}` } });
      expect([200, 202], res.body).toContain(res.statusCode);
      const jobId = res.json<{ jobId: string }>().jobId;
      for (let i = 0; i < 600; i++) {
        const s = (await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}` })).json<{ state: string; result: LabelSuccess | null }>();
        if (s.state === 'completed') {
          expect(s.result).toMatchObject({ model: { id: 'moves', version: v3 } });
          break;
        }
        expect(s.state).not.toBe('failed');
        await sleep(100);
      }
    }
    const decodedBefore = workers.handles.find((h) => h.kind === 'decode')!.stats.computed;
    const batch = await app.inject({ method: 'POST', url: '/v1/batches', payload: { path: 'data', mode: 'missing' } });
    expect(batch.statusCode, batch.body).toBe(202);
    const status = await waitBatch(batch.json<{ batchId: string }>().batchId);
    expect(status.ingest).toMatchObject({ found: clips.length, queued: clips.length - first.length, skipped: first.length });
    expect(status.counts.total).toBe(clips.length - first.length);
    expect(status.counts.completed).toBe(clips.length - first.length);
    const results = await batchResults(status.batchId);
    expect(results.map((r) => basename(r.path)).sort()).toEqual(clips.slice(first.length).map((c) => basename(c.path)).sort());
    for (const r of results) expect(r.model).toEqual({ id: 'moves', version: v3 });
    // every feature was in the store: relabelling decoded nothing
    expect(workers.handles.find((h) => h.kind === 'decode')!.stats.computed).toBe(decodedBefore);
  }, 240_000);

  it('serves the report of a version; refuses to remove the promoted version', async () => {
    const html = await app.inject({ method: 'GET', url: `/v1/models/moves/versions/${v3}/report` });
    expect(html.statusCode).toBe(200);
    expect(html.headers['content-type']).toContain('text/html');
    expect(html.body).toContain('<svg');
    const json = await app.inject({ method: 'GET', url: `/v1/models/moves/versions/${v3}/report?format=json` });
    expect(json.json()).toMatchObject({ top1: expect.any(Number), labels: ['pan_left', 'zoom_in'] });
    const rmPromoted = await app.inject({ method: 'DELETE', url: `/v1/models/moves/versions/${v3}` });
    expect(rmPromoted.statusCode).toBe(409);
    expect(rmPromoted.json()).toMatchObject({ error: { code: 'FW_ERR_MODEL_CONFLICT' } });
    const rmOld = await app.inject({ method: 'DELETE', url: `/v1/models/moves/versions/${cancelledVersion}` });
    expect(rmOld.json()).toMatchObject({ removed: true, wasPromoted: false });
    expect((await models()).models[0]?.versions.map((v) => v.version)).toEqual([v3, v2]);
    expect((await app.inject({ method: 'GET', url: '/v1/models/nope' })).statusCode).toBe(404);
  });

  it('refuses data outside the roots and bad options, with their codes', async () => {
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ name: 'moves', manifest: '/etc/passwd' }, 403, 'FW_ERR_PATH_FORBIDDEN'],
      [{ name: 'moves', csv: 'path,label\n/etc/hostname,a\ndata/x.mp4,b\n' }, 403, 'FW_ERR_PATH_FORBIDDEN'],
      [{ name: 'moves', manifest: 'train.csv', csv: 'path,label\n' }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'moves', manifest: 'train.csv', head: { units: -1 } }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'moves', manifest: 'train.csv', training: { epochz: 3 } }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'bad name!', manifest: 'train.csv' }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'moves', csv: 'file,class\ndata/a.mp4,x\n' }, 422, 'FW_ERR_MANIFEST_INVALID'],
      [{ name: 'moves', manifest: 'train.csv', streams: 'rgb,depth' }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'moves', manifest: 'train.csv', streams: '' }, 400, 'FW_ERR_REQUEST_INVALID'],
      [{ name: 'moves', manifest: 'train.csv', streams: { rgb: true } }, 400, 'FW_ERR_REQUEST_INVALID'],
      // augmented copies are rgb frames: with the default (motion) stream it is refused at once
      [{ name: 'moves', manifest: 'train.csv', augment: { flip: true } }, 400, 'FW_ERR_REQUEST_INVALID'],
    ];
    for (const [payload, status, code] of cases) {
      const res = await app.inject({ method: 'POST', url: '/v1/trainings', payload });
      expect(res.statusCode, `${JSON.stringify(payload)}: ${res.body}`).toBe(status);
      expect(res.json()).toMatchObject({ error: { code } });
    }
    expect((await app.inject({ method: 'GET', url: '/v1/trainings/train-0123' })).statusCode).toBe(404);
    const listed = (await app.inject({ method: 'GET', url: '/v1/trainings' })).json<{ trainings: TrainingStatus[] }>().trainings;
    expect(listed.map((t) => t.state)).toEqual(['completed', 'completed', 'cancelled']);
  });
});
