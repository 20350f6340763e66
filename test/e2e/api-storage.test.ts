/**
 * A full or read-only data folder (FRAMEWISE_DATA_DIR on a 1 MiB tmpfs, then remounted
 * read-only): uploads, decoded-frame artifacts and the trainings' CSV store answer with the
 * storage codes (507), with messages that name no server path. Needs `mount` (root in a
 * container that allows it); where it is not permitted the suite is skipped under a name that
 * says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiHarness, type ApiHarness } from '../helpers/api-harness.js';
import { makeClips } from '../helpers/queue-fixtures.js';
import { parseSse } from '../helpers/sse.js';

/** Whether this process may mount a tmpfs (tried once, on a scratch folder). */
function canMountTmpfs(): boolean {
  const dir = join(tmpdir(), `fw-mount-probe-${process.pid}`);
  spawnSync('mkdir', ['-p', dir]);
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status === 0;
  if (ok) spawnSync('umount', [dir]);
  spawnSync('rmdir', [dir]);
  return ok;
}

const MOUNT_OK = canMountTmpfs();
if (!MOUNT_OK) process.stderr.write('api-storage.test.ts: SKIPPED — `mount -t tmpfs` is not permitted here, so a real ENOSPC/EROFS cannot be made\n');

const BOUNDARY = 'fwStorage5Kz';
const upload = (name: string, bytes: Uint8Array) => ({
  headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` },
  payload: Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: video/mp4\r\n\r\n`), Buffer.from(bytes), Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]),
});

describe.skipIf(!MOUNT_OK)(MOUNT_OK ? 'a full or read-only data folder' : 'a full or read-only data folder — SKIPPED: mount -t tmpfs not permitted here', () => {
  let harness: ApiHarness;
  let data: string;
  let clip: string;
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'fw-storage-'));
    harness = await startApiHarness({
      name: 'apistorage',
      prepare: async (roots, work) => {
        clip = (await makeClips(join(roots, 'clips'), ['zoom_in'], 1, 7100))[0]!.path;
        data = join(work, 'data');
        await mkdir(data, { recursive: true });
        const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', data]);
        if (r.status !== 0) throw new Error(`mount failed: ${r.stderr.toString()}`);
      },
    });
  });

  afterAll(async () => {
    await harness?.close().catch(() => undefined);
    if (data) spawnSync('umount', ['-l', data]);
    await rm(scratch, { recursive: true, force: true });
  });

  const noPath = (body: string): void => {
    expect(body).not.toContain(harness.work);
    expect(body).not.toContain(data);
  };

  it('an upload larger than the space left: 507 FW_ERR_STORAGE_FULL, nothing left behind', async () => {
    const big = Buffer.concat([await readFile(clip), Buffer.alloc(2 * 1024 * 1024, 7)]);
    const res = await harness.app.inject({ method: 'POST', url: '/v1/clips', ...upload('big.mp4', big) });
    expect(res.statusCode, res.body).toBe(507);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_STORAGE_FULL');
    noPath(res.body);
    const df = spawnSync('df', ['--output=used', '-B1', data]).stdout.toString().trim().split('\n').pop();
    expect(Number(df)).toBeLessThan(64 * 1024);
  });

  it('decoded frames that do not fit: the job fails with FW_ERR_STORAGE_FULL', async () => {
    // fill the folder, leaving a few KiB
    const filler = join(data, 'filler.bin');
    await writeFile(filler, Buffer.alloc(1024 * 1024 - 16 * 1024, 1)).catch(() => undefined);
    const sub = await harness.app.inject({ method: 'POST', url: '/v1/clips', payload: { path: clip } });
    expect([200, 202], sub.body).toContain(sub.statusCode);
    const { jobId } = sub.json<{ jobId: string }>();
    const events = parseSse((await harness.app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).body);
    const last = events[events.length - 1]!;
    expect(last.event, JSON.stringify(last)).toBe('failed');
    expect((last.data.error as { code: string }).code).toBe('FW_ERR_STORAGE_FULL');
    // the job's `path` is the caller's own; the message names no data folder
    noPath((last.data.error as { message: string }).message);
    await rm(filler, { force: true });
  });

  it('a read-only data folder: uploads and training CSVs answer 507 FW_ERR_STORAGE_READONLY', async () => {
    const r = spawnSync('mount', ['-o', 'remount,ro', data]);
    expect(r.status, r.stderr.toString()).toBe(0);
    try {
      const res = await harness.app.inject({ method: 'POST', url: '/v1/clips', ...upload('clip.mp4', await readFile(clip)) });
      expect(res.statusCode, res.body).toBe(507);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_STORAGE_READONLY');
      noPath(res.body);
      const training = await harness.app.inject({ method: 'POST', url: '/v1/trainings', payload: { name: 'ro-test', csv: 'path,label\nclips/zoom_in-0.mp4,zoom_in\n' } });
      expect(training.statusCode, training.body).toBe(507);
      expect(training.json<{ error: { code: string } }>().error.code).toBe('FW_ERR_STORAGE_READONLY');
      noPath(training.body);
    } finally {
      spawnSync('mount', ['-o', 'remount,rw', data]);
    }
  });
});
