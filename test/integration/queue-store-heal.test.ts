/**
 * The queue heals damaged feature-store entries: a clip (and a windowed clip) whose stored
 * features were damaged after they were computed (a format-1 entry with `"video": null`, the
 * reported crash; flipped data bytes) completes on its first attempt with freshly computed
 * features (`cached: false`), and the bad entry is replaced by a valid one. Real redis-server,
 * real ffmpeg and backbone; workers in this process.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentHash, decodeEntry } from '../../src/features/feature-store.js';
import { submitClip, toClipWindows, waitForClip, type ClipStatus } from '../../src/jobs/queue/clips.js';
import { currentModelInfo } from '../../src/jobs/queue/model-info.js';
import { QueueName } from '../../src/jobs/queue/names.js';
import { openQueueRuntime, type QueueRuntime } from '../../src/jobs/queue/runtime.js';
import { startWorkers, type WorkerGroup } from '../../src/jobs/queue/workers.js';
import { ensureTestModel, freshCacheDir, makeClips, testConfig, testEnv } from '../helpers/queue-fixtures.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

let work: string;
let redis: TestRedis;
let rt: QueueRuntime;
let workers: WorkerGroup;
let cacheDir: string;

beforeAll(async () => {
  const modelDir = await ensureTestModel();
  work = await mkdtemp(join(tmpdir(), 'fw-queue-heal-'));
  redis = await startRedis();
  cacheDir = await freshCacheDir(work);
  const config = testConfig(testEnv({ redisUrl: redis.url, prefix: 'heal', cacheDir, dataDir: join(work, 'data'), modelDir }));
  rt = openQueueRuntime(config);
  workers = await startWorkers(['decode', 'embed', 'classify'], config);
});

afterAll(async () => {
  await workers?.close();
  await rt?.close();
  await redis?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function done(clipId: string): Promise<ClipStatus> {
  const s = await waitForClip(rt, clipId, { timeoutMs: 90_000, pollMs: 100 });
  expect(s.state, JSON.stringify(s.error)).toBe('completed');
  return s;
}

/** Every `.fwf` entry of a content hash under the cache (the clip's and the windowed pass's). */
async function entries(hash: string): Promise<string[]> {
  const all = (await readdir(join(cacheDir, 'features'), { recursive: true })) as string[];
  return all.filter((p) => p.endsWith(`${hash}.fwf`)).map((p) => join(cacheDir, 'features', p));
}

describe('queue: damaged feature-store entries', () => {
  it('a clip and a windowed clip with damaged entries complete on their first attempt, recomputed, and the entries are replaced', async () => {
    const [clip] = await makeClips(join(work, 'clips'), ['zoom_in'], 1, 5100);
    const path = (clip as { path: string }).path;
    const model = await currentModelInfo(rt.config);
    const windows = toClipWindows(model, '1,0.5', undefined);
    expect(windows).toBeDefined();

    // first: compute and store both entries
    const plain1 = await submitClip(rt, { path, source: 'a.mp4', topK: 3 });
    const win1 = await submitClip(rt, { path, source: 'a.mp4', topK: 3, ...(windows ? { windows } : {}) });
    const [p1, w1] = [await done(plain1.jobId), await done(win1.jobId)];
    expect([p1.result?.cached, w1.result?.cached]).toEqual([false, false]);
    const hash = await contentHash(path);
    const files = await entries(hash);
    expect(files).toHaveLength(2);
    const originals = await Promise.all(files.map((f) => readFile(f)));

    // damage them: one becomes the reported format-1 entry with "video": null, the other has flipped data bytes
    const seq0 = decodeEntry(originals[0] as Buffer) as NonNullable<ReturnType<typeof decodeEntry>>;
    const header = Buffer.from(JSON.stringify({ key: seq0.key, count: seq0.count, dim: seq0.dim, times: seq0.times, video: null }));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(header.length);
    await writeFile(files[0] as string, Buffer.concat([Buffer.from('FWF1'), len, header, Buffer.from(seq0.data.buffer), Buffer.from('FWF$')]));
    const flipped = Buffer.from(originals[1] as Buffer);
    const at = flipped.length - 4 - 32 - 256;
    for (let i = 0; i < 64; i++) flipped[at + i] = (flipped[at + i] as number) ^ 0xa5;
    await writeFile(files[1] as string, flipped);

    // the same bytes again (another topK: new jobs over the same feature-store keys)
    const plain2 = await submitClip(rt, { path, source: 'a.mp4', topK: 2 });
    const win2 = await submitClip(rt, { path, source: 'a.mp4', topK: 2, ...(windows ? { windows } : {}) });
    expect([plain2.created, win2.created]).toEqual([true, true]);
    const [p2, w2] = [await done(plain2.jobId), await done(win2.jobId)];
    expect([p2.result?.cached, w2.result?.cached]).toEqual([false, false]);
    expect(p2.result?.label).toBe(p1.result?.label);
    expect(p2.result?.topK).toEqual(p1.result?.topK.slice(0, 2));
    for (const id of [plain2.jobId, win2.jobId]) {
      const job = await rt.queues[QueueName.Classify].getJob(id);
      expect(job?.attemptsMade, `${id} attempts`).toBe(1);
    }
    // both entries are valid again, with the features of the first computation
    for (const [i, f] of files.entries()) {
      const back = decodeEntry(await readFile(f));
      expect(back, f).toBeDefined();
      expect(back?.video).toEqual(decodeEntry(originals[i] as Buffer)?.video);
      expect(back?.data).toEqual(decodeEntry(originals[i] as Buffer)?.data);
    }
  });
});
