/**
 * The pure parts of archive-scale batches: migration plans, the results query builder, a batch's
 * status from its counters, database error naming, retention options, failure finality, and the
 * streamed listing of folders and manifests (on files made here).
 */
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { isConnectionError, openDatabase, redactDatabaseUrl, toDatabaseError } from '../../src/db/database.js';
import { MIGRATIONS_DIR, planMigrations } from '../../src/db/migrate.js';
import { isFramewiseError } from '../../src/errors/index.js';
import { walkSource, type ListedItem } from '../../src/features/source-walk.js';
import { countersFrom, toBatchStatus } from '../../src/jobs/queue/batch-record.js';
import { failureIsFinal } from '../../src/jobs/queue/failed-reason.js';
import { buildResultsQuery, windowsKey } from '../../src/jobs/queue/results-store.js';
import { finishedJobRetention } from '../../src/jobs/queue/runtime.js';

describe('migrations', () => {
  it('are planned in version order, other files ignored; gaps and duplicates refused', async () => {
    expect(planMigrations(['0002_b.sql', 'README.md', '0001_a.sql']).map((m) => m.file)).toEqual(['0001_a.sql', '0002_b.sql']);
    expect(() => planMigrations(['0001_a.sql', '0003_c.sql'])).toThrow(/expected version 2/);
    expect(() => planMigrations(['0001_a.sql', '0001_b.sql'])).toThrow(/expected version 2/);
    const shipped = planMigrations(await readdir(MIGRATIONS_DIR));
    expect(shipped[0]).toMatchObject({ version: 1, name: 'results' });
  });
});

describe('results query', () => {
  it('reads results by id without filters, every filter a parameter', () => {
    expect(buildResultsQuery({})).toEqual({ text: 'SELECT r.id AS cursor, r.path AS path, r.result FROM results r ORDER BY r.id', params: [] });
    const q = buildResultsQuery({ label: 'fight', minConfidence: 0.8, model: 'fights@v2', pathPrefix: '/arch/50%_off/', since: '2026-01-01', until: '2026-02-01T00:00:00Z', ok: true, after: 10, limit: 5 });
    expect(q.params).toEqual(['fight', 0.8, 'fights', 'v2', '/arch/50\\%\\_off/%', '2026-01-01', '2026-02-01T00:00:00Z', true, 10, 5]);
    expect(q.text).toBe(
      'SELECT r.id AS cursor, r.path AS path, r.result FROM results r WHERE r.label = $1 AND r.confidence >= $2 AND r.model_id = $3 AND r.model_version = $4 AND r.path LIKE $5 AND r.finished_at >= $6::timestamptz AND r.finished_at < $7::timestamptz AND r.ok = $8 AND r.id > $9 ORDER BY r.id LIMIT $10',
    );
    expect(buildResultsQuery({ model: 'fights' }).text).toContain('r.model_id = $1 ORDER');
  });

  it("reads a batch's entries joined to their results, by position", () => {
    const q = buildResultsQuery({ batch: 'batch-1', pathPrefix: '/a/', after: 3 });
    expect(q.text).toBe('SELECT e.seq AS cursor, e.source AS path, r.result FROM batch_entries e JOIN results r ON r.job_id = e.job_id WHERE e.batch_id = $1 AND e.source LIKE $2 AND e.seq > $3 ORDER BY e.seq');
    expect(q.params).toEqual(['batch-1', '/a/%', 3]);
  });

  it('refuses a time that is not one', () => {
    let err: unknown;
    try {
      buildResultsQuery({ since: 'last tuesday-ish' });
    } catch (e) {
      err = e;
    }
    expect(isFramewiseError(err, 'FW_ERR_REQUEST_INVALID')).toBe(true);
  });

  it('keys windowed results by their windows and merge settings', () => {
    expect(windowsKey({})).toBeNull();
    expect(windowsKey({ windows: { policy: { kind: 'windows', windowSec: 2, strideSec: 1, frames: 8 }, threshold: 0.6, minSegmentSec: 3 } })).toBe('windows:2,1:uniform:8;threshold=0.6;minSegment=3');
  });
});

describe('batch status from counters', () => {
  const record = (o: Record<string, string | number>): Record<string, string> => Object.fromEntries(Object.entries({ id: 'batch-x', state: 'running', mode: 'all', source: '{"path":"/a"}', createdAt: 't', ingest: 'running', ...o }).map(([k, v]) => [k, String(v)]));

  it('counts entries, in-flight clips (active, paused, queued) and progress', () => {
    const s = toBatchStatus(record({ found: 12, hashed: 9, queued: 9, skipped: 1, rejected: 2, completed: 4, failed: 1, cancelled: 0 }), 2, 5);
    expect(s.counts).toEqual({ total: 11, queued: 2, active: 2, paused: 0, completed: 4, failed: 3, cancelled: 0 });
    expect(s.skipped).toBe(1);
    expect(s.ingest).toEqual({ state: 'running', found: 12, hashed: 9, queued: 9, skipped: 1, rejected: 2, error: null });
    // not listed to the end yet: below 1 even when all known entries are done
    expect(toBatchStatus(record({ queued: 2, completed: 2 }), 0, 0).progress).toBe(0.99);
    expect(toBatchStatus(record({ ingest: 'done', queued: 4, completed: 1 }), 0, 0).progress).toBe(0.25);
    expect(toBatchStatus(record({ ingest: 'done' }), 0, 0).progress).toBe(1);
  });

  it('counts put-aside clips only while paused, and never more than are in flight', () => {
    const paused = toBatchStatus(record({ state: 'paused', queued: 5, completed: 1 }), 9, 3);
    expect(paused.counts).toMatchObject({ queued: 0, active: 1, paused: 3 });
    expect(toBatchStatus(record({ queued: 5, completed: 1 }), 0, 3).counts).toMatchObject({ queued: 4, paused: 0 });
  });

  it('derives every counter from the entries by state', () => {
    expect(countersFrom({ submitting: 1, queued: 2, completed: 3, failed: 4, cancelled: 5, skipped: 6, rejected: 7 }, 9)).toEqual({ found: 28, hashed: 9, queued: 15, skipped: 6, rejected: 7, completed: 3, failed: 4, cancelled: 5 });
  });
});

describe('database configuration and errors', () => {
  it('reads DATABASE_URL and its companions, checked', () => {
    const q = loadConfig({ DATABASE_URL: 'postgres://u:p@db:5432/fw' }).queue;
    expect(q).toMatchObject({ databaseUrl: 'postgres://u:p@db:5432/fw', dbSchema: 'framewise', ingestWindow: 4000, ingestChunk: 500, retention: { jobsAgeS: 3600, uploadsS: 3600 } });
    expect(loadConfig({}).queue.databaseUrl).toBeUndefined();
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x', FRAMEWISE_DB_SCHEMA: 'Bad-Name' })).toThrow(/DATABASE_URL[\s\S]*FRAMEWISE_DB_SCHEMA/);
  });

  it('names DATABASE_URL without its password', async () => {
    expect(redactDatabaseUrl('postgres://fw:s3cret@db.local:5432/archive?sslmode=require')).toBe('postgres://fw@db.local:5432/archive');
    const refused = toDatabaseError(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:5432'), { code: 'ECONNREFUSED' }), 'postgres://fw:s3cret@db:5432/a');
    expect(isFramewiseError(refused, 'FW_ERR_DATABASE_UNAVAILABLE')).toBe(true);
    expect((refused as Error).message).toMatch(/^cannot use PostgreSQL at DATABASE_URL postgres:\/\/fw@db:5432\/a: connect ECONNREFUSED/);
    expect((refused as Error).message).not.toContain('s3cret');
    expect(isConnectionError({ code: '28P01', message: 'password authentication failed' })).toBe(true);
    expect(isConnectionError({ code: '3D000', message: 'database "x" does not exist' })).toBe(true);
    // a bad query is not the database being away
    const syntax = Object.assign(new Error('syntax error'), { code: '42601' });
    expect(toDatabaseError(syntax, 'postgres://x')).toBe(syntax);
    const unset = openDatabase({ databaseUrl: undefined, dbSchema: 'framewise', dbPoolSize: 1 });
    await expect(unset.ready()).rejects.toMatchObject({ code: 'FW_ERR_CONFIG_INVALID', message: expect.stringContaining('DATABASE_URL is not set') });
  });

  it('keeps finished jobs by age and count, or not at all', () => {
    expect(finishedJobRetention({ jobsAgeS: 60, jobsCount: 100 })).toEqual({ removeOnComplete: { age: 60, count: 100 }, removeOnFail: { age: 60, count: 100 } });
    expect(finishedJobRetention({ jobsAgeS: 60, jobsCount: 0 })).toEqual({ removeOnComplete: true, removeOnFail: true });
  });

  it('lets a resubmission run again after a cancellation, a changed or a vanished file, never after a bad input', () => {
    expect(failureIsFinal('FW_ERR_MEDIA_NOT_VIDEO')).toBe(true);
    for (const c of ['FW_ERR_JOB_CANCELLED', 'FW_ERR_INPUT_CHANGED', 'FW_ERR_INPUT_NOT_FOUND', 'FW_ERR_MEDIA_DECODE_FAILED', 'FW_ERR_NOT_A_CODE']) expect(failureIsFinal(c), c).toBe(false);
  });
});

describe('listing a source as a stream', () => {
  let dir: string;
  const collect = async (items: AsyncIterable<ListedItem>): Promise<Array<[string, string]>> => {
    const out: Array<[string, string]> = [];
    for await (const i of items) out.push([i.source.replace(dir, ''), 'error' in i ? i.error.code : 'file']);
    return out;
  };
  const open = async (p: string): Promise<string> => p;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-walk-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('walks folders in name order, skipping hidden entries, other files and symlinked folders', async () => {
    const root = join(dir, 'tree');
    await mkdir(join(root, 'b'), { recursive: true });
    await mkdir(join(root, 'a', '.cache'), { recursive: true });
    for (const f of ['b/2.mp4', 'b/1.MKV', 'a/z.mov', 'a/.hidden.mp4', 'a/.cache/x.mp4', 'a/notes.txt', 'top.avi']) await writeFile(join(root, f), 'x');
    await mkdir(join(dir, 'elsewhere'));
    await writeFile(join(dir, 'elsewhere', 'e.mp4'), 'x');
    await symlink(join(dir, 'elsewhere'), join(root, 'linked'));
    await symlink(join(dir, 'elsewhere', 'e.mp4'), join(root, 'b', '3.mp4'));
    expect(await collect(walkSource({ path: root }, open))).toEqual([
      ['/tree/a/z.mov', 'file'],
      ['/tree/b/1.MKV', 'file'],
      ['/tree/b/2.mp4', 'file'],
      ['/tree/b/3.mp4', 'file'],
      ['/tree/top.avi', 'file'],
    ]);
    await mkdir(join(dir, 'empty'));
    expect(await collect(walkSource({ path: join(dir, 'empty') }, open))).toEqual([['/empty', 'FW_ERR_INPUT_EMPTY_DIR']]);
    expect(await collect(walkSource({ path: join(dir, 'nope') }, open))).toEqual([['/nope', 'FW_ERR_INPUT_NOT_FOUND']]);
  });

  it('reads a manifest row by row: malformed rows are errors at their line, the rows after them are read', async () => {
    const m = join(dir, 'm.csv');
    await writeFile(m, ['\uFEFFPath,Label', 'a.mp4,x', '', ',y', '"b" junk.mp4,z', '"multi', 'line.mp4",w', 'c.mp4,v', '"never closed.mp4,u'].join('\r\n'));
    const items: ListedItem[] = [];
    for await (const i of walkSource({ manifest: m }, open)) items.push(i);
    expect(items.map((i) => [i.item, 'error' in i ? i.error.code : i.path])).toEqual([
      ['line:2', join(dir, 'a.mp4')],
      ['line:4', 'FW_ERR_MANIFEST_INVALID'],
      ['line:5', 'FW_ERR_MANIFEST_INVALID'],
      ['line:6', join(dir, 'multi\nline.mp4')],
      ['line:8', join(dir, 'c.mp4')],
      ['line:9', 'FW_ERR_MANIFEST_INVALID'],
    ]);
    await writeFile(join(dir, 'nopath.csv'), 'file\na.mp4\n');
    expect(await collect(walkSource({ manifest: join(dir, 'nopath.csv') }, open))).toEqual([['/nopath.csv', 'FW_ERR_MANIFEST_INVALID']]);
  });
});
