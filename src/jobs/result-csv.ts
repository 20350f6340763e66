/**
 * Results as CSV, the same from `framewise label`, `framewise batch` and the batch results route:
 * one row per video, or, for windowed results, one row per segment (a failed input: one row with
 * its error).
 */
import { stringify } from 'csv-stringify/sync';
import type { LabelResult } from './label.js';

export const RESULT_CSV_HEADER = ['path', 'ok', 'label', 'confidence', 'top_k', 'model_version', 'error_code', 'error_message'] as const;
export const SEGMENT_CSV_HEADER = ['path', 'label', 'start', 'end', 'confidence', 'error_code', 'error_message'] as const;

/** The CSV rows of one result: one per video, or with `segments` one per segment. */
export function resultCsvRows(r: LabelResult, segments: boolean): unknown[][] {
  if (segments) return r.ok ? (r.segments ?? []).map((g) => [r.path, g.label, g.start, g.end, g.confidence, '', '']) : [[r.path, '', '', '', '', r.error.code, r.error.message]];
  return [r.ok ? [r.path, 'true', r.label, r.confidence, r.topK.map((t) => `${t.label}:${t.p}`).join(' '), r.model.version, '', ''] : [r.path, 'false', '', '', '', '', r.error.code, r.error.message]];
}

export const csvHeader = (segments: boolean): string => stringify([[...(segments ? SEGMENT_CSV_HEADER : RESULT_CSV_HEADER)]]);

/** Results as one CSV: per segment when any result is windowed, else per video. */
export function resultsToCsv(results: readonly LabelResult[]): string {
  const segments = results.some((r) => r.ok && r.segments !== undefined);
  return csvHeader(segments) + stringify(results.flatMap((r) => resultCsvRows(r, segments)));
}
