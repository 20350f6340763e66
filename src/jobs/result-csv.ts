/**
 * Results as CSV, the same from `framewise label`, `framewise batch` and the batch results route:
 * one row per video, or, for windowed results, one row per segment (a failed input: one row with
 * its error).
 */
import { stringify } from 'csv-stringify/sync';
import type { LabelResult } from './label.js';

export const RESULT_CSV_HEADER = ['path', 'ok', 'label', 'confidence', 'top_k', 'model_version', 'error_code', 'error_message'] as const;
export const SEGMENT_CSV_HEADER = ['path', 'label', 'start', 'end', 'confidence', 'error_code', 'error_message'] as const;

/** What a spreadsheet would run as a formula when a cell starts with it. */
const FORMULA_START = /^[=+\-@\t\r]/;
const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/**
 * A cell as written: text starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
 * leading `'` (no formula runs when the file is opened in a spreadsheet); numbers, and text that
 * is a plain number such as `-0.5`, stay as they are.
 */
export function neutralizeCell(v: unknown): unknown {
  if (typeof v !== 'string' || !FORMULA_START.test(v) || NUMBER.test(v)) return v;
  return `'${v}`;
}

/** The CSV rows of one result: one per video, or with `segments` one per segment. */
export function resultCsvRows(r: LabelResult, segments: boolean): unknown[][] {
  let rows: unknown[][];
  if (segments) rows = r.ok ? (r.segments ?? []).map((g) => [r.path, g.label, g.start, g.end, g.confidence, '', '']) : [[r.path, '', '', '', '', r.error.code, r.error.message]];
  else rows = [r.ok ? [r.path, 'true', r.label, r.confidence, r.topK.map((t) => `${t.label}:${t.p}`).join(' '), r.model.version, '', ''] : [r.path, 'false', '', '', '', '', r.error.code, r.error.message]];
  return rows.map((row) => row.map(neutralizeCell));
}

export const csvHeader = (segments: boolean): string => stringify([[...(segments ? SEGMENT_CSV_HEADER : RESULT_CSV_HEADER)]]);

/** Results as one CSV: per segment when any result is windowed, else per video. */
export function resultsToCsv(results: readonly LabelResult[]): string {
  const segments = results.some((r) => r.ok && r.segments !== undefined);
  return csvHeader(segments) + stringify(results.flatMap((r) => resultCsvRows(r, segments)));
}
