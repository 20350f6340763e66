/**
 * The HTTP API against real workers (in this process), a real redis-server and real ffmpeg:
 * upload → job id → SSE progress through every stage → the result inline `labelItems` gives;
 * the refusals (401, 413, 422 with the code, 403 outside the roots); ops routes.
 */
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackboneId } from '../../src/ml/backbone.js';
import type { Config } from '../../src/config/index.js';
import { labelItems, type LabelResult } from '../../src/jobs/label.js';
import { applyUnknownThreshold, unknownThresholdOf } from '../../src/jobs/thresholds.js';
import type { QueueRuntime } from '../../src/jobs/queue/runtime.js';
import type { WorkerGroup } from '../../src/jobs/queue/workers.js';
import { buildServer } from '../../src/api/server.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { TemporalHead } from '../../src/ml/head.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { freshCacheDir, makeClips, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import type { TestRedis } from '../helpers/redis.js';
import { parseSse } from '../helpers/sse.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';

const KEY = 'test-key-123';
const auth = { authorization: `Bearer ${KEY}` };

let harness: ApiHarness;
let redis: TestRedis;
let work: string;
let roots: string;
let config: Config;
let rt: QueueRuntime;
let app: FastifyInstance;
let workers: WorkerGroup;
let clip: string;
let otherClip: string;
let http: Server;
let base: string;
const hooks: Array<{ body: Record<string, unknown>; status: number }> = [];
let failNextHook = true;

function multipart(name: string, bytes: Uint8Array, boundary = 'fwboundary7MA4YWxk'): { payload: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { payload: Buffer.concat([head, Buffer.from(bytes), tail]), headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, ...auth } };
}

beforeAll(async () => {
  harness = await startApiHarness({
    name: 'apiclips',
    // the download server and webhook endpoint are local: loopback must be allowed on purpose
    env: { FRAMEWISE_API_KEYS: `other-key, ${KEY}`, FRAMEWISE_MAX_UPLOAD_BYTES: String(4 * 1024 * 1024), FRAMEWISE_NETWORK_ALLOW: '127.0.0.1/32' },
    prepare: async (r) => {
      const clips = await makeClips(join(r, 'clips'), ['zoom_out', 'pan_right', 'zoom_in'], 1, 900);
      clip = clips[0]!.path;
      otherClip = clips[2]!.path; // served over HTTP, submitted nowhere else
    },
  });
  ({ redis, work, roots, config, rt, app, workers } = harness);
  const clipBytes = await readFile(otherClip);
  // a local web server: the clip to download, and a webhook endpoint that fails once
  http = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/clip.mp4') {
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': clipBytes.length });
      res.end(clipBytes);
      return;
    }
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const status = failNextHook ? 500 : 204;
      failNextHook = false;
      hooks.push({ body: JSON.parse(body) as Record<string, unknown>, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => http?.close(r));
  await harness?.close();
});

async function inlineLabel(path: string, source: string): Promise<LabelResult> {
  const head = await TemporalHead.load(config.modelDir, undefined, config.backend);
  const meta = head.metadata;
  const extractor = await createExtractor(runtimeFromConfig(config, { cacheDir: await freshCacheDir(join(work, 'inline')), backbone: meta.backbone.id as BackboneId, featureKind: meta.backbone.featureKind }), meta.sampling.policy, { size: meta.sampling.size, crop: meta.sampling.crop });
  try {
    // as `framewise label` prints it: held to the model's unknown threshold
    for await (const r of labelItems([{ path, source, extra: {} }], extractor, head, config.queue.topK)) return applyUnknownThreshold(r, unknownThresholdOf(meta));
    throw new Error('no result');
  } finally {
    await extractor.dispose();
    head.dispose();
  }
}

describe('POST /v1/clips (upload) and the job routes', () => {
  it('upload → 202 job id → SSE through every stage → the inline result', async () => {
    const bytes = await readFile(clip);
    const up = await app.inject({ method: 'POST', url: '/v1/clips', ...multipart('my clip.mp4', bytes) });
    expect(up.statusCode, up.body).toBe(202);
    const { jobId, source } = up.json<{ jobId: string; source: string }>();
    expect(jobId).toMatch(/^clip-[0-9a-f]{32}$/);
    expect(source).toBe('my clip.mp4');
    expect(up.headers.location).toBe(`/v1/jobs/${jobId}`);

    const sse = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events`, headers: auth });
    expect(sse.statusCode).toBe(200);
    expect(sse.headers['content-type']).toContain('text/event-stream');
    const events = parseSse(sse.body);
    for (const stage of ['decode', 'embed', 'classify']) {
      const seen = events.filter((e) => e.event === 'stage' && e.data.stage === stage).map((e) => e.data.state);
      expect(seen, `${stage}: ${JSON.stringify(events)}`).toContain('completed');
    }
    const last = events[events.length - 1]!;
    expect(last.event).toBe('result');
    const result = last.data.result as Extract<LabelResult, { ok: true }>;

    // the job names an upload by its content, not by any uploader's file name
    expect(result.path).toMatch(/^upload-[0-9a-f]{12}\.mp4$/);
    const inline = await inlineLabel(clip, result.path);
    if (!inline.ok) throw new Error(JSON.stringify(inline));
    assertValidResult(result);
    expect(result.label).toBe(inline.label);
    expect(result.topK.map((t) => t.label)).toEqual(inline.topK.map((t) => t.label));
    result.topK.forEach((t, i) => expect(Math.abs(t.p - inline.topK[i]!.p)).toBeLessThanOrEqual(1e-4));
    expect(Math.abs(result.confidence - inline.confidence)).toBeLessThanOrEqual(1e-4);
    expect({ ...result, topK: undefined, confidence: undefined }).toEqual({ ...inline, topK: undefined, confidence: undefined });

    const got = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}`, headers: auth });
    expect(got.statusCode).toBe(200);
    const status = got.json<{ state: string; stages: Record<string, { state: string; progress: number }>; result: unknown }>();
    expect(status.state).toBe('completed');
    expect(Object.values(status.stages).map((s) => [s.state, s.progress])).toEqual([
      ['completed', 100],
      ['completed', 100],
      ['completed', 100],
    ]);
    expect(status.result).toEqual(result);

    // the same bytes again: the same job, answered with the stored result
    const again = await app.inject({ method: 'POST', url: '/v1/clips', ...multipart('again.mp4', bytes) });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ jobId, created: false, state: 'completed', source: 'again.mp4', result: { ...result, path: 'again.mp4' } });
  });

  it('refuses without a key (401), an oversized upload (413), a non-video (422 with the code)', async () => {
    const bytes = await readFile(clip);
    const noKey = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: clip } });
    expect(noKey.statusCode).toBe(401);
    expect(noKey.json()).toEqual({ error: { code: 'FW_ERR_AUTH_REQUIRED', message: expect.any(String) } });
    const badKey = await app.inject({ method: 'GET', url: '/v1/jobs/clip-00000000000000000000000000000000', headers: { authorization: 'Bearer nope' } });
    expect(badKey.statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/admin/queues' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);

    const big = new Uint8Array(5 * 1024 * 1024);
    big.set(bytes);
    const tooBig = await app.inject({ method: 'POST', url: '/v1/clips', ...multipart('big.mp4', big) });
    expect(tooBig.statusCode).toBe(413);
    expect(tooBig.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_UPLOAD_TOO_LARGE');

    const text = await app.inject({ method: 'POST', url: '/v1/clips', ...multipart('video.mp4', Buffer.from('hello, this is text and not a video\n'.repeat(50))) });
    expect(text.statusCode).toBe(422);
    expect(text.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_MEDIA_NOT_VIDEO');

    const unknown = await app.inject({ method: 'GET', url: '/v1/jobs/clip-00000000000000000000000000000000', headers: auth });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_JOB_NOT_FOUND');
  });

  it('reads server paths only within the roots (403 outside, after symlinks and ..)', async () => {
    const outside = join(work, 'outside');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'secret.mp4'), await readFile(clip));
    await symlink(outside, join(roots, 'link-out')).catch(() => undefined);
    for (const path of [join(outside, 'secret.mp4'), `${roots}/../outside/secret.mp4`, join(roots, 'link-out', 'secret.mp4'), '/etc/passwd', join(outside, 'missing.mp4')]) {
      const res = await app.inject({ method: 'POST', url: '/v1/clips', headers: auth, payload: { path } });
      expect(res.statusCode, path).toBe(403);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_PATH_FORBIDDEN');
    }
    const missing = await app.inject({ method: 'POST', url: '/v1/clips', headers: auth, payload: { path: join(roots, 'nope.mp4') } });
    expect(missing.statusCode).toBe(404);
    const url = await app.inject({ method: 'POST', url: '/v1/clips', headers: auth, payload: { url: 'http://127.0.0.1:1/x.mp4' } });
    expect(url.statusCode).toBe(403);
    expect(url.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_URL_FORBIDDEN');
    const both = await app.inject({ method: 'POST', url: '/v1/clips', headers: auth, payload: { path: clip, url: 'http://x/y' } });
    expect(both.statusCode).toBe(400);
    const inside = await app.inject({ method: 'POST', url: '/v1/clips', headers: auth, payload: { path: 'clips/pan_right-0.mp4' } });
    expect([200, 202]).toContain(inside.statusCode);
  });

  it('downloads URLs when enabled, cancels jobs, calls webhooks with retries', async () => {
    const urlConfig = testConfig({ ...testEnv({ redisUrl: redis.url, prefix: 'unused', cacheDir: config.cacheDir, dataDir: config.queue.dataDir, modelDir: config.modelDir }), FRAMEWISE_QUEUE_PREFIX: config.queue.prefix, FRAMEWISE_ALLOW_URL_INPUT: 'true', FRAMEWISE_MAX_UPLOAD_BYTES: '100000000', FRAMEWISE_NETWORK_ALLOW: '127.0.0.1/32' });
    const urlApp = await buildServer(urlConfig, { runtime: rt });
    try {
      // cancel: with the decode worker paused the job waits; DELETE removes it
      const decode = workers.handles.find((h) => h.kind === 'decode')!.worker;
      await decode.pause();
      const sub = await urlApp.inject({ method: 'POST', url: '/v1/clips', payload: { url: `${base}/clip.mp4`, webhook: `${base}/hook` } });
      expect(sub.statusCode, sub.body).toBe(202);
      const { jobId } = sub.json<{ jobId: string }>();
      const del = await urlApp.inject({ method: 'DELETE', url: `/v1/jobs/${jobId}` });
      expect(del.statusCode, del.body).toBe(200);
      expect(del.json()).toMatchObject({ jobId, state: 'cancelled', error: { code: 'FW_ERR_JOB_CANCELLED' } });
      const events = parseSse((await urlApp.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body);
      expect(events[events.length - 1]?.event).toBe('cancelled');
      expect((await urlApp.inject({ method: 'DELETE', url: `/v1/jobs/${jobId}` })).json()).toMatchObject({ state: 'cancelled' });
      decode.resume();
      // the cancellation was notified (the endpoint failed once: the webhook was retried)
      for (let i = 0; i < 100 && !hooks.some((h) => h.status === 204); i++) await sleep(100);
      expect(hooks.map((h) => [h.body.event, h.body.jobId, h.status])).toEqual([
        ['job.failed', jobId, 500],
        ['job.failed', jobId, 204],
      ]);
      expect(hooks[1]?.body.result).toMatchObject({ ok: false, error: { code: 'FW_ERR_JOB_CANCELLED' } });

      // submitting the same bytes again runs the job again, and it completes; its webhook fires
      const again = await urlApp.inject({ method: 'POST', url: '/v1/clips', payload: { url: `${base}/clip.mp4`, webhook: `${base}/hook` } });
      expect(again.statusCode, again.body).toBe(202);
      expect(again.json()).toMatchObject({ jobId, created: true });
      const done = parseSse((await urlApp.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body);
      expect(done[done.length - 1]).toMatchObject({ event: 'result', data: { result: { ok: true, path: expect.stringMatching(/^download-[0-9a-f]{12}\.mp4$/) } } });
      for (let i = 0; i < 100 && hooks.length < 3; i++) await sleep(100);
      expect(hooks[2]?.body).toMatchObject({ event: 'job.completed', jobId, result: { ok: true } });

      const small = testConfig({ ...testEnv({ redisUrl: redis.url, prefix: 'unused', cacheDir: config.cacheDir, dataDir: config.queue.dataDir, modelDir: config.modelDir }), FRAMEWISE_ALLOW_URL_INPUT: 'true', FRAMEWISE_MAX_UPLOAD_BYTES: '1000', FRAMEWISE_NETWORK_ALLOW: '127.0.0.1/32' });
      const smallApp = await buildServer(small, { runtime: rt });
      const tooBig = await smallApp.inject({ method: 'POST', url: '/v1/clips', payload: { url: `${base}/clip.mp4` } });
      await smallApp.close();
      expect(tooBig.statusCode).toBe(413);
      const ftp = await urlApp.inject({ method: 'POST', url: '/v1/clips', payload: { url: 'ftp://example.com/a.mp4' } });
      expect(ftp.statusCode).toBe(403);
    } finally {
      await urlApp.close();
    }
  });

  it('serves health, readiness, OpenAPI, metrics and Bull Board', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ ok: true });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode, ready.body).toBe(200);
    const spec = await app.inject({ method: 'GET', url: '/openapi.json', headers: auth });
    expect(spec.statusCode).toBe(200);
    const paths = Object.keys(spec.json<{ paths: Record<string, unknown> }>().paths);
    for (const p of ['/v1/clips', '/v1/jobs/{id}', '/v1/jobs/{id}/events', '/v1/batches', '/v1/batches/{id}', '/v1/batches/{id}/results', '/v1/batches/{id}/pause']) expect(paths).toContain(p);
    const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: auth });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toMatch(/framewise_queue_jobs\{queue="classify",state="completed"\} [1-9]/);
    expect(metrics.body).toContain('framewise_stage_duration_seconds');
    const board = await app.inject({ method: 'GET', url: '/admin/queues', headers: auth });
    expect(board.statusCode).toBe(200);
    expect(board.body).toContain('<html');
  });
});
