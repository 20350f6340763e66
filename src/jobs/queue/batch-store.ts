/**
 * Batches and their entries in PostgreSQL (tables `batches` and `batch_entries`, db/migrations):
 * the durable list of a batch's files, in listing order, each with its job and outcome. Redis only
 * keeps a running batch's counters (batches.ts).
 *
 * An entry moves `submitting` (recorded, its job not yet ensured) → `queued` (its job is in the
 * queue) → `completed` | `failed` | `cancelled`; or is `skipped` (mode `missing`: already labelled)
 * or `rejected` (could not be queued: unreadable, outside the roots, a malformed manifest row).
 * The move to a final state is one UPDATE guarded by the state it leaves (`finishEntries`): it
 * happens once per entry whatever the number of workers, retries or redeliveries, and its RETURNING
 * rows are what the Redis counters add.
 */
import type { Database } from '../../db/database.js';
import type { LabelResult } from '../label.js';
import { toLine } from './results-store.js';

export const ENTRY_STATES = ['submitting', 'queued', 'completed', 'failed', 'cancelled', 'skipped', 'rejected'] as const;
export type EntryState = (typeof ENTRY_STATES)[number];
/** The states of an entry whose job may still run. */
export const OPEN_STATES: readonly EntryState[] = ['submitting', 'queued'];
export type FinalClipState = 'completed' | 'failed' | 'cancelled';

export interface BatchRow {
  batchId: string;
  createdAt: string;
  finishedAt: string | null;
  state: string;
  mode: string;
  source: Record<string, string>;
  options: Record<string, unknown>;
  /** The final status, once the batch finished. */
  status: Record<string, unknown> | null;
}

export async function insertBatchRow(db: Database, b: { batchId: string; createdAt: string; state: string; mode: string; source: object; options: object }): Promise<void> {
  await db.query('INSERT INTO batches (batch_id, created_at, state, mode, source, options) VALUES ($1, $2, $3, $4, $5, $6)', [b.batchId, b.createdAt, b.state, b.mode, JSON.stringify(b.source), JSON.stringify(b.options)]);
}

export async function updateBatchRow(db: Database, batchId: string, u: { state?: string; finishedAt?: string; status?: object }): Promise<void> {
  await db.query('UPDATE batches SET state = coalesce($2, state), finished_at = coalesce($3::timestamptz, finished_at), status = coalesce($4::jsonb, status) WHERE batch_id = $1', [
    batchId,
    u.state ?? null,
    u.finishedAt ?? null,
    u.status ? JSON.stringify(u.status) : null,
  ]);
}

export async function readBatchRow(db: Database, batchId: string): Promise<BatchRow | undefined> {
  const { rows } = await db.query<{ batch_id: string; created_at: Date; finished_at: Date | null; state: string; mode: string; source: Record<string, string>; options: Record<string, unknown>; status: Record<string, unknown> | null }>(
    'SELECT batch_id, created_at, finished_at, state, mode, source, options, status FROM batches WHERE batch_id = $1',
    [batchId],
  );
  const r = rows[0];
  if (!r) return undefined;
  return { batchId: r.batch_id, createdAt: r.created_at.toISOString(), finishedAt: r.finished_at?.toISOString() ?? null, state: r.state, mode: r.mode, source: r.source, options: r.options, status: r.status };
}

/** One entry to record. */
export interface NewEntry {
  seq: number;
  item: string;
  source: string;
  realPath?: string | undefined;
  contentHash?: string | undefined;
  jobId?: string | undefined;
  state: EntryState;
  error?: { code: string; message: string } | undefined;
}

/** An entry as recorded. */
export interface StoredEntry {
  seq: number;
  item: string;
  source: string;
  realPath: string | null;
  contentHash: string | null;
  jobId: string | null;
  state: EntryState;
}

interface EntryRow extends Record<string, unknown> {
  seq: string;
  item: string;
  source: string;
  real_path: string | null;
  content_hash: string | null;
  job_id: string | null;
  state: EntryState;
}

const toEntry = (r: EntryRow): StoredEntry => ({ seq: Number(r.seq), item: r.item, source: r.source, realPath: r.real_path, contentHash: r.content_hash, jobId: r.job_id, state: r.state });

/** The entries already recorded for these items (an ingest starting again skips them). */
export async function existingEntries(db: Database, batchId: string, items: readonly string[]): Promise<Map<string, StoredEntry>> {
  if (items.length === 0) return new Map();
  const { rows } = await db.query<EntryRow>('SELECT seq, item, source, real_path, content_hash, job_id, state FROM batch_entries WHERE batch_id = $1 AND item = ANY($2::text[])', [batchId, items]);
  return new Map(rows.map((r) => [r.item, toEntry(r)]));
}

/** The batch's entries still `submitting` (recorded before a crash, their jobs perhaps not queued). */
export async function submittingEntries(db: Database, batchId: string): Promise<StoredEntry[]> {
  const { rows } = await db.query<EntryRow>("SELECT seq, item, source, real_path, content_hash, job_id, state FROM batch_entries WHERE batch_id = $1 AND state = 'submitting' ORDER BY seq", [batchId]);
  return rows.map(toEntry);
}

/** Record entries (one statement); those whose item is already recorded are left as they are. Returns the items recorded now. */
export async function insertEntries(db: Database, batchId: string, entries: readonly NewEntry[]): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const col = <T>(f: (e: NewEntry) => T): T[] => entries.map(f);
  const { rows } = await db.query<{ item: string }>(
    `INSERT INTO batch_entries (batch_id, seq, item, source, real_path, content_hash, job_id, state, error_code, error_message, finished_at)
     SELECT $1, t.seq, t.item, t.source, t.real_path, t.content_hash, t.job_id, t.state, t.error_code, t.error_message,
            CASE WHEN t.state IN ('submitting', 'queued') THEN NULL ELSE now() END
     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
          AS t(seq, item, source, real_path, content_hash, job_id, state, error_code, error_message)
     ON CONFLICT (batch_id, item) DO NOTHING
     RETURNING item`,
    [
      batchId,
      col((e) => e.seq),
      col((e) => e.item),
      col((e) => e.source),
      col((e) => e.realPath ?? null),
      col((e) => e.contentHash ?? null),
      col((e) => e.jobId ?? null),
      col((e) => e.state),
      col((e) => e.error?.code ?? null),
      col((e) => e.error?.message ?? null),
    ],
  );
  return new Set(rows.map((r) => r.item));
}

/** Move `submitting` entries of these items to `to`; returns how many moved (entries a worker finished meanwhile stay as they are). */
export async function settleSubmitting(db: Database, batchId: string, items: readonly string[], to: EntryState): Promise<number> {
  if (items.length === 0) return 0;
  const { rowCount } = await db.query(
    `UPDATE batch_entries SET state = $3, finished_at = CASE WHEN $3 IN ('submitting', 'queued') THEN NULL ELSE now() END
     WHERE batch_id = $1 AND item = ANY($2::text[]) AND state = 'submitting'`,
    [batchId, items, to],
  );
  return rowCount ?? 0;
}

/**
 * The job finished: its open entries (of every batch) take its final state, once. Returns, per
 * batch, how many of its entries moved now (what its counters add).
 */
export async function finishEntries(db: Database, jobId: string, state: FinalClipState): Promise<Map<string, number>> {
  const { rows } = await db.query<{ batch_id: string }>("UPDATE batch_entries SET state = $2, finished_at = now() WHERE job_id = $1 AND state IN ('submitting', 'queued') RETURNING batch_id", [jobId, state]);
  const out = new Map<string, number>();
  for (const r of rows) out.set(r.batch_id, (out.get(r.batch_id) ?? 0) + 1);
  return out;
}

/** How many of the batch's entries are unfinished (the backpressure window counts these). */
export async function openEntryCount(db: Database, batchId: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM batch_entries WHERE batch_id = $1 AND state IN ('submitting', 'queued')", [batchId]);
  return Number(rows[0]?.n ?? 0);
}

/** The jobs of the batch's unfinished entries (at most the ingest window and a chunk); `queued`: only those whose job is known to be in the queue. */
export async function openJobIds(db: Database, batchId: string, only?: 'queued'): Promise<string[]> {
  const states = only ? [only] : OPEN_STATES;
  const { rows } = await db.query<{ job_id: string }>('SELECT DISTINCT job_id FROM batch_entries WHERE batch_id = $1 AND state = ANY($2::text[]) AND job_id IS NOT NULL', [batchId, states]);
  return rows.map((r) => r.job_id);
}

/** Entries by state (the reconciliation reads these), the largest position, and how many know their content hash. */
export async function entryCounts(db: Database, batchId: string): Promise<{ byState: Record<EntryState, number>; maxSeq: number; hashed: number }> {
  const { rows } = await db.query<{ state: EntryState; n: string; max_seq: string | null; hashed: string }>(
    'SELECT state, count(*) AS n, max(seq) AS max_seq, count(content_hash) AS hashed FROM batch_entries WHERE batch_id = $1 GROUP BY state',
    [batchId],
  );
  const byState = Object.fromEntries(ENTRY_STATES.map((s) => [s, 0])) as Record<EntryState, number>;
  let maxSeq = 0;
  let hashed = 0;
  for (const r of rows) {
    byState[r.state] = Number(r.n);
    maxSeq = Math.max(maxSeq, Number(r.max_seq ?? 0));
    hashed += Number(r.hashed);
  }
  return { byState, maxSeq, hashed };
}

/**
 * The batch's finished entries as result lines (`path` as listed), in listing order, through a
 * server-side cursor; `cursor` is the entry's position (paging: `after`).
 */
export async function* batchResultLines(db: Database, batchId: string, page: { after?: number | undefined; limit?: number | undefined } = {}): AsyncGenerator<{ cursor: number; line: LabelResult }> {
  const params: unknown[] = [batchId, page.after ?? 0];
  const limit = page.limit !== undefined ? ` LIMIT $${params.push(page.limit)}` : '';
  const rows = db.stream<{ seq: string; source: string; state: EntryState; error_code: string | null; error_message: string | null; job_id: string | null; result: Omit<LabelResult, 'path'> | null }>(
    `SELECT e.seq, e.source, e.state, e.error_code, e.error_message, e.job_id, r.result
     FROM batch_entries e LEFT JOIN results r ON r.job_id = e.job_id
     WHERE e.batch_id = $1 AND e.seq > $2 AND e.state IN ('completed', 'failed', 'cancelled', 'rejected')
     ORDER BY e.seq${limit}`,
    params,
  );
  for await (const r of rows) {
    let line: LabelResult;
    if (r.state === 'rejected') line = { path: r.source, ok: false, error: { code: r.error_code ?? 'FW_ERR_INTERNAL', message: r.error_message ?? 'rejected' } };
    else if (r.result) line = toLine(r.source, r.result);
    else if (r.state === 'cancelled') line = { path: r.source, ok: false, error: { code: 'FW_ERR_JOB_CANCELLED', message: `job ${r.job_id} was cancelled` } };
    else line = { path: r.source, ok: false, error: { code: 'FW_ERR_JOB_NOT_FOUND', message: `no result was recorded for job ${r.job_id}` } };
    yield { cursor: Number(r.seq), line };
  }
}

/** `mode: missing` without hashing: the files (real path, size, mtime) this model identity has labelled successfully. */
export async function knownLabelled(db: Database, modelKey: string, files: ReadonlyArray<{ path: string; size: number; mtimeMs: number }>): Promise<Map<string, string>> {
  if (files.length === 0) return new Map();
  const { rows } = await db.query<{ path: string; job_id: string }>(
    `SELECT f.path, f.job_id FROM file_index f
     JOIN unnest($2::text[], $3::bigint[], $4::float8[]) AS t(path, size, mtime_ms) ON f.path = t.path AND f.size = t.size AND f.mtime_ms = t.mtime_ms
     JOIN results r ON r.job_id = f.job_id AND r.ok
     WHERE f.model_key = $1`,
    [modelKey, files.map((f) => f.path), files.map((f) => f.size), files.map((f) => f.mtimeMs)],
  );
  return new Map(rows.map((r) => [r.path, r.job_id]));
}

/** Remember which job each hashed file (real path, size, mtime) maps to for this model identity. */
export async function rememberFiles(db: Database, modelKey: string, files: ReadonlyArray<{ path: string; size: number; mtimeMs: number; jobId: string }>): Promise<void> {
  if (files.length === 0) return;
  // one row per path in a statement (ON CONFLICT cannot touch a row twice)
  const unique = [...new Map(files.map((f) => [f.path, f])).values()];
  await db.query(
    `INSERT INTO file_index (model_key, path, size, mtime_ms, job_id)
     SELECT $1, t.path, t.size, t.mtime_ms, t.job_id FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::text[]) AS t(path, size, mtime_ms, job_id)
     ON CONFLICT (model_key, path) DO UPDATE SET size = EXCLUDED.size, mtime_ms = EXCLUDED.mtime_ms, job_id = EXCLUDED.job_id`,
    [modelKey, unique.map((f) => f.path), unique.map((f) => f.size), unique.map((f) => f.mtimeMs), unique.map((f) => f.jobId)],
  );
}
