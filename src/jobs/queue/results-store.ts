/**
 * Results in PostgreSQL (table `results`, db/migrations): one row per clip job — (content hash,
 * model version, backbone, sampling, top-k, windows), which is what the job id hashes — holding the
 * result line `framewise label` prints, the fields queries filter on, the error code of a failure
 * and the stage timings. Written with an upsert keyed by the job id, so a retried or redelivered
 * job overwrites its own row (and a success is never replaced by a later failure). Reads go
 * through server-side cursors, so an export of any size runs in flat memory.
 */
import type { Database } from '../../db/database.js';
import { FramewiseError } from '../../errors/index.js';
import { formatWindows, samplingKey } from '../../media/sampling.js';
import type { LabelFailure, LabelResult, LabelSuccess } from '../label.js';
import type { ClassifyJobData, ClipRef } from './payloads.js';

/** What a finished clip job leaves: its identity, the result line (or failure), and how long its stages took. */
export interface ClipOutcome {
  data: Pick<ClassifyJobData, 'clip' | 'model' | 'topK'>;
  result: LabelSuccess | LabelFailure;
  timings?: { decodeMs?: number; embedMs?: number; classifyMs?: number; attempts?: number } | undefined;
}

/** A stored result. */
export interface StoredResult {
  jobId: string;
  ok: boolean;
  /** The result line, its `path` the name the clip was first submitted under. */
  line: LabelResult;
  realPath: string | null;
  batchId: string | null;
  errorCode: string | null;
  createdAt: string;
  finishedAt: string;
}

/** The windows part of a clip's identity (as in its job id), or null for a clip-level result. */
export function windowsKey(clip: Pick<ClipRef, 'windows'>): string | null {
  const w = clip.windows;
  if (!w) return null;
  return [formatWindows(w.policy), `threshold=${w.threshold ?? 'model'}`, ...(w.hysteresis !== undefined ? [`hysteresis=${w.hysteresis}`] : []), ...(w.minSegmentSec !== undefined ? [`minSegment=${w.minSegmentSec}`] : [])].join(';');
}

const withoutPath = (r: LabelResult): Omit<LabelResult, 'path'> => {
  const { path: _path, ...rest } = r;
  return rest;
};

/**
 * Write a finished clip's outcome (insert, or update the job's row). A success already stored is
 * kept: a late failure of a redelivered job does not replace it.
 */
export async function upsertResult(db: Database, o: ClipOutcome): Promise<void> {
  const { clip, model, topK } = o.data;
  const r = o.result;
  const b = clip.backbone;
  await db.query(
    `INSERT INTO results (job_id, content_hash, model_id, model_version, backbone, sampling, windows, top_k_count, path, real_path, batch_id,
                          ok, label, confidence, top_k, segments, error_code, error_message, result, timings)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
     ON CONFLICT (job_id) DO UPDATE SET
       ok = EXCLUDED.ok, label = EXCLUDED.label, confidence = EXCLUDED.confidence, top_k = EXCLUDED.top_k,
       segments = EXCLUDED.segments, error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
       result = EXCLUDED.result, timings = EXCLUDED.timings, real_path = EXCLUDED.real_path, finished_at = now()
     WHERE NOT results.ok`,
    [
      clip.clipId,
      clip.contentHash,
      model.id,
      model.version,
      `${b.id}@${b.version}/${b.featureKind}`,
      samplingKey(clip.sampling.policy, { size: clip.sampling.size, crop: clip.sampling.crop }),
      windowsKey(clip),
      topK,
      clip.source,
      clip.path,
      clip.batchId ?? null,
      r.ok,
      r.ok ? r.label : null,
      r.ok ? r.confidence : null,
      r.ok ? JSON.stringify(r.topK) : null,
      r.ok && r.segments ? JSON.stringify(r.segments) : null,
      r.ok ? null : r.error.code,
      r.ok ? null : r.error.message,
      JSON.stringify(withoutPath(r)),
      o.timings ? JSON.stringify(o.timings) : null,
    ],
  );
}

interface ResultRow extends Record<string, unknown> {
  job_id: string;
  ok: boolean;
  path: string;
  result: Omit<LabelResult, 'path'>;
  real_path: string | null;
  batch_id: string | null;
  error_code: string | null;
  created_at: Date;
  finished_at: Date;
}

/** The line of a stored result under the given name. */
export const toLine = (path: string, result: Omit<LabelResult, 'path'>): LabelResult => ({ path, ...result }) as LabelResult;

const toStored = (row: ResultRow): StoredResult => ({
  jobId: row.job_id,
  ok: row.ok,
  line: toLine(row.path, row.result),
  realPath: row.real_path,
  batchId: row.batch_id,
  errorCode: row.error_code,
  createdAt: row.created_at.toISOString(),
  finishedAt: row.finished_at.toISOString(),
});

/** The stored result of one job, or undefined. */
export async function readResult(db: Database, jobId: string): Promise<StoredResult | undefined> {
  const { rows } = await db.query<ResultRow>('SELECT job_id, ok, path, result, real_path, batch_id, error_code, created_at, finished_at FROM results WHERE job_id = $1', [jobId]);
  return rows[0] ? toStored(rows[0]) : undefined;
}

/** Whether each of these jobs has a stored result, and its outcome (jobs without one are absent). */
export async function readOutcomes(db: Database, jobIds: readonly string[]): Promise<Map<string, { ok: boolean; errorCode: string | null }>> {
  if (jobIds.length === 0) return new Map();
  const { rows } = await db.query<{ job_id: string; ok: boolean; error_code: string | null }>('SELECT job_id, ok, error_code FROM results WHERE job_id = ANY($1::text[])', [jobIds]);
  return new Map(rows.map((r) => [r.job_id, { ok: r.ok, errorCode: r.error_code }]));
}

/** Filters of `GET /v1/results` and `framewise results query` (all optional, combined with AND). */
export interface ResultsFilter {
  /** Results with this label (successes only). */
  label?: string | undefined;
  /** Results at least this confident (successes only). */
  minConfidence?: number | undefined;
  /** `NAME` (any version) or `NAME@VERSION`: the model id and version the result records. */
  model?: string | undefined;
  /** Results of this batch's entries (their `path` is the file as the batch listed it). */
  batch?: string | undefined;
  /** Paths starting with this text. */
  pathPrefix?: string | undefined;
  /** Finished at or after / before this time (ISO 8601). */
  since?: string | undefined;
  until?: string | undefined;
  /** Successes only (true) or failures only (false). */
  ok?: boolean | undefined;
  /** Paging: rows after this cursor (the `cursor` of the last row of the previous page). */
  after?: number | undefined;
  /** At most this many rows. */
  limit?: number | undefined;
}

export interface QueryText {
  text: string;
  params: unknown[];
}

/** `%` and `_` taken literally in a LIKE prefix. */
const likePrefix = (p: string): string => `${p.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

function checkTime(v: string, name: string): string {
  if (Number.isNaN(Date.parse(v))) throw new FramewiseError('FW_ERR_REQUEST_INVALID', `${name} must be a date or time (ISO 8601), not '${v}'`);
  return v;
}

/**
 * The SQL of a results query (pure). Without `batch` it reads `results` (a row per job, its path
 * the first name submitted, cursor its id); with `batch` the batch's entries joined to their
 * results (a row per listed file, its path as listed, cursor the entry's position).
 */
export function buildResultsQuery(f: ResultsFilter): QueryText {
  const params: unknown[] = [];
  const p = (v: unknown): string => {
    params.push(v);
    return `$${params.length}`;
  };
  const where: string[] = [];
  const byBatch = f.batch !== undefined;
  const pathCol = byBatch ? 'e.source' : 'r.path';
  const cursorCol = byBatch ? 'e.seq' : 'r.id';
  if (byBatch) where.push(`e.batch_id = ${p(f.batch)}`);
  if (f.label !== undefined) where.push(`r.label = ${p(f.label)}`);
  if (f.minConfidence !== undefined) where.push(`r.confidence >= ${p(f.minConfidence)}`);
  if (f.model !== undefined) {
    const at = f.model.indexOf('@');
    if (at < 0) where.push(`r.model_id = ${p(f.model)}`);
    else where.push(`r.model_id = ${p(f.model.slice(0, at))} AND r.model_version = ${p(f.model.slice(at + 1))}`);
  }
  if (f.pathPrefix !== undefined) where.push(`${pathCol} LIKE ${p(likePrefix(f.pathPrefix))}`);
  if (f.since !== undefined) where.push(`r.finished_at >= ${p(checkTime(f.since, 'since'))}::timestamptz`);
  if (f.until !== undefined) where.push(`r.finished_at < ${p(checkTime(f.until, 'until'))}::timestamptz`);
  if (f.ok !== undefined) where.push(`r.ok = ${p(f.ok)}`);
  if (f.after !== undefined) where.push(`${cursorCol} > ${p(f.after)}`);
  const from = byBatch ? 'batch_entries e JOIN results r ON r.job_id = e.job_id' : 'results r';
  const limit = f.limit !== undefined ? ` LIMIT ${p(f.limit)}` : '';
  return {
    text: `SELECT ${cursorCol} AS cursor, ${pathCol} AS path, r.result FROM ${from}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${cursorCol}${limit}`,
    params,
  };
}

/** A result line and its paging cursor. */
export interface ResultLine {
  cursor: number;
  line: LabelResult;
}

/** The results matching `f`, in cursor order, read through a server-side cursor. */
export async function* queryResults(db: Database, f: ResultsFilter): AsyncGenerator<ResultLine> {
  const q = buildResultsQuery(f);
  for await (const row of db.stream<{ cursor: string; path: string; result: Omit<LabelResult, 'path'> }>(q.text, q.params)) {
    yield { cursor: Number(row.cursor), line: toLine(row.path, row.result) };
  }
}
