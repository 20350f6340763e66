/** Pure pieces of queue mode: job ids, failure reasons, paths, artifacts, error mapping, configuration. */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toApiError } from '../../src/api/errors.js';
import { createPathGuard } from '../../src/api/path-guard.js';
import { parseWorkerKinds, toBatchSource } from '../../src/cli/queue-commands.js';
import { loadConfig } from '../../src/config/index.js';
import { ERROR_CODES, FramewiseError } from '../../src/errors/index.js';
import { framesArtifactKey, LocalArtifactStore, validateArtifactKey } from '../../src/jobs/queue/artifact-store.js';
import { globBase, resultsToCsv } from '../../src/jobs/queue/batches.js';
import { formatFailedReason, parseFailedReason } from '../../src/jobs/queue/clips.js';
import { clipIdOfJob, clipJobId, featureKeyOf, isBatchId, isClipId, stageJobIds } from '../../src/jobs/queue/idempotency.js';
import { CLIP_IDENTITY } from '../helpers/clip-identity.js';
import { toQueueError } from '../../src/jobs/queue/runtime.js';

const base = CLIP_IDENTITY;

describe('job ids', () => {
  it('derive from the bytes and everything that shapes the result, nothing else', () => {
    const id = clipJobId(base);
    expect(id).toMatch(/^clip-[0-9a-f]{32}$/);
    expect(clipJobId({ ...base })).toBe(id);
    for (const changed of [
      { ...base, contentHash: 'b'.repeat(64) },
      { ...base, model: { id: 'motion4', version: 'v2' } },
      { ...base, backbone: { ...base.backbone, featureKind: 'grid' as const } },
      { ...base, sampling: { ...base.sampling, policy: { kind: 'uniform' as const, frames: 8 } } },
      { ...base, sampling: { ...base.sampling, crop: 'squash' as const } },
      { ...base, topK: 5 },
    ]) {
      expect(clipJobId(changed)).not.toBe(id);
    }
    const ids = stageJobIds(id);
    expect(ids).toEqual({ decode: `${id}-decode`, embed: `${id}-embed`, classify: id });
    expect(clipIdOfJob(ids.decode)).toBe(id);
    expect(clipIdOfJob(ids.embed)).toBe(id);
    expect(clipIdOfJob('other')).toBeUndefined();
    expect(isClipId(id) && !isClipId(`${id}x`) && !isBatchId(id)).toBe(true);
    expect(isBatchId(`batch-${'0'.repeat(32)}`)).toBe(true);
    for (const v of Object.values(ids)) expect(v).not.toContain(':'); // BullMQ refuses ':' in custom ids
  });

  it('use the feature-store key inline mode uses', () => {
    expect(featureKeyOf(base)).toEqual({ contentHash: base.contentHash, backboneId: 'mobilenet_v2_mid', backboneVersion: 'nsfwjs@4.4.0', featureKind: 'pooled', sampling: 'uniform16-224-center' });
  });
});

describe('failure reasons', () => {
  it('start with the code and read back', () => {
    const e = new FramewiseError('FW_ERR_MEDIA_NOT_VIDEO', 'not a video file: x.mp4');
    expect(formatFailedReason(e)).toBe('FW_ERR_MEDIA_NOT_VIDEO: not a video file: x.mp4');
    expect(parseFailedReason(formatFailedReason(e))).toEqual({ code: 'FW_ERR_MEDIA_NOT_VIDEO', message: 'not a video file: x.mp4' });
    expect(parseFailedReason('job stalled more than allowable limit')).toEqual({ code: 'FW_ERR_INTERNAL', message: 'job stalled more than allowable limit' });
    expect(parseFailedReason('FW_ERR_NO_SUCH_CODE: x').code).toBe('FW_ERR_INTERNAL');
    expect(parseFailedReason(undefined).code).toBe('FW_ERR_INTERNAL');
  });

  it('map to HTTP statuses in one place', () => {
    expect(toApiError(new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'x')).code).toBe('FW_ERR_PATH_FORBIDDEN');
    expect(toApiError(Object.assign(new Error('body/mode must be equal to one of the allowed values'), { validation: [{}], statusCode: 400 })).code).toBe('FW_ERR_REQUEST_INVALID');
    expect(toApiError(Object.assign(new Error('too large'), { code: 'FST_REQ_FILE_TOO_LARGE', statusCode: 413 })).code).toBe('FW_ERR_UPLOAD_TOO_LARGE');
    expect(toApiError(new Error('connect ECONNREFUSED 127.0.0.1:6379')).code).toBe('FW_ERR_QUEUE_UNAVAILABLE');
    expect(toApiError(new Error('boom')).code).toBe('FW_ERR_INTERNAL');
    expect(toQueueError(new Error('boom'))).toBeInstanceOf(Error);
    const statuses = Object.fromEntries(['FW_ERR_AUTH_REQUIRED', 'FW_ERR_PATH_FORBIDDEN', 'FW_ERR_UPLOAD_TOO_LARGE', 'FW_ERR_JOB_NOT_FOUND', 'FW_ERR_QUEUE_UNAVAILABLE', 'FW_ERR_MEDIA_NOT_VIDEO'].map((c) => [c, ERROR_CODES[c as keyof typeof ERROR_CODES].http]));
    expect(statuses).toEqual({ FW_ERR_AUTH_REQUIRED: 401, FW_ERR_PATH_FORBIDDEN: 403, FW_ERR_UPLOAD_TOO_LARGE: 413, FW_ERR_JOB_NOT_FOUND: 404, FW_ERR_QUEUE_UNAVAILABLE: 503, FW_ERR_MEDIA_NOT_VIDEO: 422 });
    expect(ERROR_CODES.FW_ERR_JOB_CANCELLED.permanent && !ERROR_CODES.FW_ERR_QUEUE_UNAVAILABLE.permanent).toBe(true);
  });
});

describe('paths', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-guard-'));
    await mkdir(join(dir, 'root', 'sub'), { recursive: true });
    await mkdir(join(dir, 'outside'), { recursive: true });
    await writeFile(join(dir, 'root', 'sub', 'a.mp4'), 'x');
    await writeFile(join(dir, 'outside', 'b.mp4'), 'x');
    await symlink(join(dir, 'outside'), join(dir, 'root', 'escape'));
    await symlink(join(dir, 'root', 'sub'), join(dir, 'root', 'inner'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('the guard allows the roots only, judged on real paths', async () => {
    const guard = createPathGuard([join(dir, 'root')]);
    await expect(guard(join(dir, 'root', 'sub', 'a.mp4'))).resolves.toBe(join(dir, 'root', 'sub', 'a.mp4'));
    await expect(guard('sub/a.mp4')).resolves.toBe(join(dir, 'root', 'sub', 'a.mp4'));
    await expect(guard(join(dir, 'root', 'inner', 'a.mp4'))).resolves.toBe(join(dir, 'root', 'sub', 'a.mp4'));
    for (const p of [join(dir, 'outside', 'b.mp4'), join(dir, 'root', '..', 'outside', 'b.mp4'), join(dir, 'root', 'escape', 'b.mp4'), '../outside/b.mp4', join(dir, 'outside', 'nope.mp4'), `${dir}/root-sibling/x.mp4`]) {
      await expect(guard(p), p).rejects.toMatchObject({ code: 'FW_ERR_PATH_FORBIDDEN' });
    }
    await expect(guard(join(dir, 'root', 'nope.mp4'))).rejects.toMatchObject({ code: 'FW_ERR_INPUT_NOT_FOUND' });
    await expect(createPathGuard([])(join(dir, 'root', 'sub', 'a.mp4'))).rejects.toMatchObject({ code: 'FW_ERR_PATH_FORBIDDEN' });
  });

  it('glob bases and CLI batch sources', () => {
    expect(globBase('/archive/2024/**/*.mp4')).toBe('/archive/2024');
    expect(globBase('/a/b/c.mp4')).toBe('/a/b/c.mp4');
    expect(globBase('*.mp4')).toBe('.');
    expect(globBase('/*.mp4')).toBe('/');
    expect(toBatchSource('/x/*.mp4')).toEqual({ glob: '/x/*.mp4' });
    expect(toBatchSource('/x/list.CSV')).toEqual({ manifest: '/x/list.CSV' });
    expect(toBatchSource('/x/folder')).toEqual({ path: '/x/folder' });
    expect(parseWorkerKinds('all')).toEqual(['decode', 'embed', 'classify', 'webhook', 'train', 'ingest']);
    expect(parseWorkerKinds('embed, classify,embed')).toEqual(['embed', 'classify']);
    expect(() => parseWorkerKinds('embed,gpu')).toThrow(/unknown worker kind gpu/);
  });
});

describe('artifact store', () => {
  it('stores, reads back and deletes bytes under safe keys only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fw-artifacts-'));
    try {
      const store = new LocalArtifactStore(dir);
      const key = framesArtifactKey(`clip-${'1'.repeat(32)}`);
      expect(key).toBe(`frames/clip-${'1'.repeat(32)}.rgb`);
      expect(await store.get(key)).toBeUndefined();
      await store.put(key, new Uint8Array([1, 2, 3]));
      expect(Array.from((await store.get(key)) ?? [])).toEqual([1, 2, 3]);
      await store.delete(key);
      await store.delete(key);
      expect(await store.get(key)).toBeUndefined();
      for (const bad of ['../x', '/abs', 'a/../b', 'a//b', '', 'a b']) expect(() => validateArtifactKey(bad), bad).toThrow(/invalid artifact key/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('queue configuration', () => {
  it('has defaults and validates the queue variables', () => {
    const c = loadConfig({ HOME: '/home/u' }).queue;
    expect(c).toMatchObject({ redisUrl: 'redis://127.0.0.1:6379', prefix: 'fw', apiHost: '127.0.0.1', apiPort: 8080, apiKeys: [], pathRoots: [], allowUrlInput: false, dataDir: '/home/u/.local/share/framewise', embedConcurrency: 4, attempts: 3 });
    const d = loadConfig({ FRAMEWISE_API_KEYS: ' a, b ,,', FRAMEWISE_PATH_ROOTS: '/srv/a,/srv/b/', FRAMEWISE_ALLOW_URL_INPUT: 'true', REDIS_URL: 'rediss://h:6380/2' }).queue;
    expect(d.apiKeys).toEqual(['a', 'b']);
    expect(d.pathRoots).toEqual(['/srv/a', '/srv/b']);
    expect(d.allowUrlInput).toBe(true);
    expect(() => loadConfig({ REDIS_URL: 'http://x', FRAMEWISE_ALLOW_URL_INPUT: 'maybe', FRAMEWISE_API_PORT: '70000', FRAMEWISE_QUEUE_PREFIX: 'a:b' })).toThrow(/REDIS_URL.*FRAMEWISE_QUEUE_PREFIX|FRAMEWISE_QUEUE_PREFIX.*REDIS_URL|REDIS_URL/);
  });

  it('writes results as the CSV `label` writes', () => {
    const csv = resultsToCsv([
      { path: 'a.mp4', ok: false, error: { code: 'FW_ERR_MEDIA_NOT_VIDEO', message: 'not, a video' } },
    ]);
    expect(csv).toBe('path,ok,label,confidence,top_k,model_version,error_code,error_message\na.mp4,false,,,,,FW_ERR_MEDIA_NOT_VIDEO,"not, a video"\n');
  });
});
