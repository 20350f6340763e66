/**
 * The HTTP API as a hostile but fair user meets it (issue 9): a swapped symlink behind a finished
 * job's video, malformed multipart and Content-Length, webhooks to loopback, user:password
 * webhooks, a deduplicated upload under another name, a glob through a symlinked folder, server
 * paths and ffmpeg output in messages, a valid OpenAPI document, a big batch's status; and, with
 * Redis stopped: /metrics and /readyz answer from the process, a refused upload leaves no file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchStatus } from '../../src/jobs/queue/batches.js';
import { insertBatchRow, insertEntries, type NewEntry } from '../../src/jobs/queue/batch-store.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import type { QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { buildServer } from '../../src/api/server.js';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { makeClips, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import { freePort, startRedis } from '../helpers/redis.js';
import { parseSse } from '../helpers/sse.js';

let harness: ApiHarness;
let app: FastifyInstance;
let rt: QueueRuntime;
let roots: string;
let work: string;
let clip: string;
let otherClip: string;
let hookServer: Server;
let hookPort: number;
const hookCalls: string[] = [];

const BOUNDARY = 'fwHardening9Xq';
function multipart(name: string, bytes: Uint8Array, boundary = BOUNDARY): Buffer {
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
  return Buffer.concat([head, Buffer.from(bytes), Buffer.from(`\r\n--${boundary}--\r\n`)]);
}

async function waitJob(jobId: string): Promise<Record<string, unknown>> {
  const events = parseSse((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body);
  return events[events.length - 1]?.data as Record<string, unknown>;
}

/** Send raw bytes on a fresh connection, half-close, and read all that comes back. */
function rawHttp(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write(text);
      s.end();
    });
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
  });
}

beforeAll(async () => {
  harness = await startApiHarness({
    name: 'apihard',
    // no FRAMEWISE_NETWORK_ALLOW: loopback is refused, as in a default deployment
    env: { FRAMEWISE_WEBHOOK_ATTEMPTS: '1' },
    prepare: async (r) => {
      const clips = await makeClips(join(r, 'clips'), ['zoom_out', 'pan_right'], 1, 4200);
      clip = clips[0]!.path;
      otherClip = clips[1]!.path;
    },
  });
  ({ app, rt, roots, work } = harness);
  hookServer = createServer((req, res) => {
    hookCalls.push(`${req.method} ${req.url}`);
    req.resume();
    res.writeHead(204).end();
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', () => r()));
  hookPort = (hookServer.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => hookServer?.close(r));
  await harness?.close();
});

describe('API hardening', () => {
  it('serves a path job\'s video only while it is within the roots: a symlink swapped in is refused (item 3)', async () => {
    const path = join(roots, 'served.mp4');
    await writeFile(path, await readFile(otherClip));
    const sub = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path } });
    expect([200, 202], sub.body).toContain(sub.statusCode);
    const { jobId } = sub.json<{ jobId: string }>();
    expect((await waitJob(jobId)).state).toBe('completed');
    const before = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/video` });
    expect(before.statusCode).toBe(200);
    expect(before.rawPayload.equals(await readFile(otherClip))).toBe(true);

    const secret = join(work, 'outside-secret.txt');
    await writeFile(secret, 'TOP-SECRET-OUTSIDE-THE-ROOTS\n');
    await rename(path, `${path}.moved`);
    await symlink(secret, path);
    const after = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/video` });
    expect([403, 404], after.body).toContain(after.statusCode);
    expect(after.body).not.toContain('TOP-SECRET');
    expect(after.json<{ error: { code: string; message: string } }>().error.code).toMatch(/^FW_ERR_(PATH_FORBIDDEN|INPUT_NOT_FOUND)$/);
    expect(after.body).not.toContain(work);
    const ranged = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/video`, headers: { range: 'bytes=0-9' } });
    expect(ranged.body).not.toContain('TOP-SECRET');

    // a folder on the way swapped for a symlink out of the roots: refused too
    const folder = join(roots, 'sub');
    await mkdir(folder);
    await writeFile(join(folder, 'clip.mp4'), await readFile(otherClip));
    const sub2 = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: join(folder, 'clip.mp4') } });
    const job2 = sub2.json<{ jobId: string }>().jobId;
    await waitJob(job2);
    const outsideDir = join(work, 'outside-dir');
    await mkdir(outsideDir);
    await writeFile(join(outsideDir, 'clip.mp4'), 'TOP-SECRET-IN-A-FOLDER\n');
    await rename(folder, `${folder}.moved`);
    await symlink(outsideDir, folder);
    const viaDir = await app.inject({ method: 'GET', url: `/v1/jobs/${job2}/video` });
    expect([403, 404], viaDir.body).toContain(viaDir.statusCode);
    expect(viaDir.body).not.toContain('TOP-SECRET');
  });

  it('answers malformed multipart, a wrong Content-Length and unknown routes in its own shape (item 6)', async () => {
    const body = multipart('a.mp4', Buffer.from('not really a video'));
    const cases: Array<[string, string, Buffer]> = [
      ['no boundary', 'multipart/form-data', body],
      ['wrong boundary', 'multipart/form-data; boundary=SomethingElse', body],
      ['no closing boundary', `multipart/form-data; boundary=${BOUNDARY}`, body.subarray(0, body.length - `\r\n--${BOUNDARY}--\r\n`.length)],
    ];
    for (const [what, type, payload] of cases) {
      const res = await app.inject({ method: 'POST', url: '/v1/clips', headers: { 'content-type': type }, payload });
      expect(res.statusCode, `${what}: ${res.body}`).toBe(400);
      expect(res.json(), what).toEqual({ error: { code: 'FW_ERR_REQUEST_INVALID', message: expect.any(String) } });
    }
    const unknown = await app.inject({ method: 'GET', url: '/v1/nothing-here' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toEqual({ error: { code: 'FW_ERR_ROUTE_NOT_FOUND', message: expect.any(String) } });

    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    const json = JSON.stringify({ path: 'clips/none.mp4' });
    const mp = multipart('a.mp4', Buffer.from('x'.repeat(64)));
    const requests = [
      `POST /v1/clips HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${json.length + 10}\r\n\r\n${json}`,
      `POST /v1/clips HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${json.length - 5}\r\n\r\n${json}`,
      `POST /v1/clips HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${mp.length + 10}\r\n\r\n${mp.toString('latin1')}`,
      `POST /v1/clips HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${mp.length - 20}\r\n\r\n${mp.toString('latin1')}`,
    ];
    for (const req of requests) {
      const answer = await rawHttp(port, req);
      const statuses = [...answer.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
      expect(statuses.length, answer).toBeGreaterThan(0);
      expect(statuses.every((s) => s === 400), answer).toBe(true);
      // every answer is ours: {error: {code, message}}, never fastify's {error, message, statusCode}
      const bodies = [...answer.matchAll(/\r\n\r\n(\{.*?\}\})/g)].map((m) => JSON.parse(m[1] as string) as { error: { code: string } });
      expect(bodies.length, answer).toBe(statuses.length);
      for (const b of bodies) expect(b.error.code, answer).toBe('FW_ERR_REQUEST_INVALID');
      expect(answer).not.toContain('statusCode');
    }
  });

  it('refuses webhooks with credentials, and never delivers to loopback unless allowed (item 8)', async () => {
    const creds = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: clip, webhook: `http://user:pw@127.0.0.1:${hookPort}/hook` } });
    expect(creds.statusCode, creds.body).toBe(400);
    expect(creds.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_REQUEST_INVALID');

    const sub = await app.inject({ method: 'POST', url: '/v1/clips', payload: { path: clip, webhook: `http://127.0.0.1:${hookPort}/hook` } });
    expect([200, 202], sub.body).toContain(sub.statusCode);
    await waitJob(sub.json<{ jobId: string }>().jobId);
    const webhooks = rt.queues[QueueName.Webhook];
    for (let i = 0; i < 200 && (await webhooks.getJobCounts('failed')).failed === 0; i++) await sleep(50);
    const failed = await webhooks.getFailed();
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]?.failedReason).toMatch(/^FW_ERR_WEBHOOK_FAILED: /);
    expect(hookCalls).toEqual([]);

    // URL input: loopback refused by default; a closed port (where allowed) reads the same
    const urlEnv = (extra: Record<string, string>) => testConfig({ ...testEnv({ redisUrl: harness.redis.url, prefix: 'unused', cacheDir: harness.config.cacheDir, dataDir: harness.config.queue.dataDir, modelDir: harness.config.modelDir }), FRAMEWISE_QUEUE_PREFIX: harness.config.queue.prefix, FRAMEWISE_ALLOW_URL_INPUT: 'true', ...extra });
    const strict = await buildServer(urlEnv({}), { runtime: rt });
    const open = await buildServer(urlEnv({ FRAMEWISE_NETWORK_ALLOW: '127.0.0.1/32' }), { runtime: rt });
    try {
      const refused = await strict.inject({ method: 'POST', url: '/v1/clips', payload: { url: `http://127.0.0.1:${hookPort}/clip.mp4` } });
      const closedPort = await freePort();
      const closed = await open.inject({ method: 'POST', url: '/v1/clips', payload: { url: `http://127.0.0.1:${closedPort}/clip.mp4` } });
      expect(refused.statusCode, refused.body).toBe(502);
      expect(closed.statusCode, closed.body).toBe(502);
      const msg = (r: typeof refused, port: number): unknown => ({ ...r.json<{ error: { code: string; message: string } }>().error, message: r.json<{ error: { message: string } }>().error.message.replace(String(port), 'PORT') });
      expect(msg(refused, hookPort)).toEqual(msg(closed, closedPort));
      expect(msg(refused, hookPort)).toMatchObject({ code: 'FW_ERR_URL_FETCH_FAILED' });
      const withCreds = await open.inject({ method: 'POST', url: '/v1/clips', payload: { url: `http://u:p@127.0.0.1:${hookPort}/clip.mp4` } });
      expect(withCreds.statusCode).toBe(400);
      expect(hookCalls).toEqual([]);
    } finally {
      await strict.close();
      await open.close();
    }
  });

  it('shows a deduplicated upload under the caller\'s own name only, and no server paths or ffmpeg output (item 8)', async () => {
    const bytes = await readFile(clip);
    const type = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
    const first = await app.inject({ method: 'POST', url: '/v1/clips', headers: type, payload: multipart('alice-private-name.mp4', bytes) });
    expect([200, 202], first.body).toContain(first.statusCode);
    const { jobId } = first.json<{ jobId: string }>();
    await waitJob(jobId);
    const second = await app.inject({ method: 'POST', url: '/v1/clips', headers: type, payload: multipart('bob.mp4', bytes) });
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json()).toMatchObject({ jobId, created: false, source: 'bob.mp4', result: { path: 'bob.mp4' } });
    expect(second.body).not.toContain('alice');
    const status = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}` });
    expect(status.body).not.toContain('alice');
    expect((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body).not.toContain('alice');

    // a non-video upload: the message names no server folder and quotes no ffprobe output
    const text = await app.inject({ method: 'POST', url: '/v1/clips', headers: type, payload: multipart('notes.mp4', Buffer.from('plain text, not a video\n'.repeat(40))) });
    expect(text.statusCode, text.body).toBe(422);
    const message = text.json<{ error: { message: string } }>().error.message;
    expect(message).not.toContain(harness.config.queue.dataDir);
    expect(message).not.toContain(work);
    expect(message).not.toMatch(/ffprobe|Invalid data|@ 0x/);
  });

  it('lists no file behind a symlinked folder in a glob batch (item 8)', async () => {
    const outside = join(work, 'outside-videos');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'outside-secret-name.mp4'), await readFile(clip));
    await symlink(outside, join(roots, 'linked'));
    const res = await app.inject({ method: 'POST', url: '/v1/batches', payload: { glob: `${roots}/**/*.mp4` } });
    expect(res.statusCode, res.body).toBe(202);
    const { batchId } = res.json<{ batchId: string }>();
    const results = await app.inject({ method: 'GET', url: `/v1/batches/${batchId}/results` });
    expect(results.body).not.toContain('outside-secret-name');
    const dotdot = await app.inject({ method: 'POST', url: '/v1/batches', payload: { glob: `${roots}/clips/../../outside-videos/*.mp4` } });
    expect(dotdot.statusCode).toBe(403);
    const viaPattern = await app.inject({ method: 'POST', url: '/v1/batches', payload: { glob: `${roots}/*/../../outside-videos/*.mp4` } });
    expect(viaPattern.body).not.toContain('outside-secret-name');
    if (viaPattern.statusCode === 202) {
      const r = await app.inject({ method: 'GET', url: `/v1/batches/${viaPattern.json<{ batchId: string }>().batchId}/results` });
      expect(r.body).not.toContain('outside-secret-name');
    }
  });

  it('publishes a valid OpenAPI document (item 10)', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<Record<string, unknown>>();
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
    // the rule the schema could not carry is still enforced
    const zero = await app.inject({ method: 'POST', url: '/v1/trainings', payload: { name: 'x', csv: 'path,label\na.mp4,a\n', split: { fraction: 0 } } });
    expect(zero.statusCode, zero.body).toBe(400);
    expect(zero.body).toContain('split.fraction');
  });

  it('reads a batch status in the same few Redis commands at 20,000 entries as at 20, and reconciles to the same counts (item 7)', async () => {
    // two batches as the ingest records them: entries in PostgreSQL, counters in Redis
    const record = async (n: number): Promise<string> => {
      const batchId = `batch-${randomBytes(16).toString('hex')}`;
      await insertBatchRow(rt.db, { batchId, createdAt: new Date().toISOString(), state: 'running', mode: 'all', source: { path: roots }, options: {} });
      const entries: NewEntry[] = Array.from({ length: n }, (_, i) => ({ seq: i + 1, item: `${roots}/f${i}.mp4`, source: `${roots}/f${i}.mp4`, jobId: `clip-${i.toString(16).padStart(32, '0')}`, state: i % 10 === 0 ? 'failed' : 'completed' }));
      for (let i = 0; i < n; i += 5000) await insertEntries(rt.db, batchId, entries.slice(i, i + 5000));
      const failed = entries.filter((e) => e.state === 'failed').length;
      await rt.redis.hset(rt.keys.batch(batchId), { id: batchId, state: 'running', mode: 'all', source: JSON.stringify({ path: roots }), createdAt: new Date().toISOString(), ingest: 'running', found: n, hashed: n, queued: n, skipped: 0, rejected: 0, completed: n - failed, failed, cancelled: 0 });
      return batchId;
    };
    const big = await record(20_000);
    const small = await record(20);
    const commands = async (): Promise<number> => Number(/total_commands_processed:(\d+)/.exec(await rt.redis.info('stats'))?.[1]);
    const cost = async (batchId: string): Promise<{ used: number; status: BatchStatus }> => {
      const before = await commands();
      const res = await app.inject({ method: 'GET', url: `/v1/batches/${batchId}` });
      expect(res.statusCode, res.body).toBe(200);
      // the INFO that reads the counter is one command itself
      return { used: (await commands()) - before - 1, status: res.json<BatchStatus>() };
    };
    const a = await cost(big);
    const b = await cost(small);
    expect(a.status.counts).toEqual({ total: 20_000, queued: 0, active: 0, paused: 0, completed: 18_000, failed: 2000, cancelled: 0 });
    expect(b.status.counts).toMatchObject({ total: 20, completed: 18, failed: 2 });
    // MULTI, HGETALL, SCARD, SCARD, EXEC: whatever the size (it was a state read per clip, 2,000+ commands per call)
    expect(a.used).toBe(b.used);
    expect(a.used).toBeLessThanOrEqual(5);
    const health = await app.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    // the counters agree with the entries they stand for
    const reconciled = await app.inject({ method: 'GET', url: `/v1/batches/${big}?reconcile=true` });
    expect(reconciled.json<BatchStatus>().counts).toEqual(a.status.counts);
  });

  it('with Redis stopped: /metrics and /readyz answer from the process, and a refused upload leaves no file (items 6, 7, 8)', async () => {
    // a second API process with a Redis of its own, which then stops (the shared one stays up for the others)
    const own = await startRedis();
    const dataDir = join(work, 'outage-data');
    const config = testConfig(testEnv({ redisUrl: own.url, prefix: 'outage', cacheDir: harness.config.cacheDir, dataDir, modelDir: harness.config.modelDir, extra: { FRAMEWISE_PATH_ROOTS: roots } }));
    const down = await buildServer(config);
    expect((await down.inject({ method: 'GET', url: '/metrics' })).body).toMatch(/^framewise_queue_jobs_stale 0$/m);
    await own.stop();
    // older than the 1 s the queue counts are reused for: the next scrape asks Redis again
    await sleep(1100);
    try {
      const metrics = await down.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toContain('framewise_api_process_cpu_user_seconds_total');
      expect(metrics.body).toMatch(/^framewise_queue_jobs_stale 1$/m);
      expect(metrics.body).toContain('framewise_queue_jobs{');

      const ready = await down.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toEqual({ ready: false, checks: { redis: 'failed', database: 'ok', model: expect.stringMatching(/^(ok( \(.+\))?|failed)$/) } });
      expect(ready.body).not.toMatch(/ECONNREFUSED|closed|127\.0\.0\.1|:\d{4,5}/);

      // bytes never stored before: refused with 503, and not left in uploads/
      const fresh = Buffer.concat([await readFile(otherClip), Buffer.from('trailing bytes that make these bytes new')]);
      const up = await down.inject({ method: 'POST', url: '/v1/clips', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, payload: multipart('during-outage.mp4', fresh) });
      expect(up.statusCode, up.body).toBe(503);
      expect(up.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_QUEUE_UNAVAILABLE');
      const left = (await readdir(join(dataDir, 'uploads')).catch(() => [])).filter((f) => !f.startsWith('.'));
      expect(left).toEqual([]);
    } finally {
      // closing waits for Redis connections that cannot connect: do not hold the suite on it
      await Promise.race([down.close(), sleep(2000)]);
    }
  });
});
