/**
 * The `unknown` outcome of a label result: a success whose top probability (its `confidence`)
 * is below the model's `unknownThreshold` gets `label: "unknown"`; its `confidence` and `topK`
 * stay as they were. Every success records the threshold it was held to under `thresholds`.
 * The CLI's `label` and the queue's classify stage apply it the same way.
 */
import type { LabelResult, LabelSuccess } from './label.js';
import type { HeadMetadata } from '../ml/head.js';

export const UNKNOWN_LABEL = 'unknown';

export type LabelSuccessWithThresholds = LabelSuccess & { thresholds: { unknown: number } };

/** The model's unknown threshold (0 = never unknown, e.g. heads trained before thresholds existed). */
export function unknownThresholdOf(meta: Pick<HeadMetadata, 'unknownThreshold'>): number {
  return meta.unknownThreshold ?? 0;
}

export function applyUnknownThreshold(r: LabelResult, threshold: number): LabelResult {
  return r.ok ? withUnknownThreshold(r, { unknownThreshold: threshold }) : r;
}

/** A success held to the model's threshold (see {@link applyUnknownThreshold}). */
export function withUnknownThreshold(r: LabelSuccess, meta: Pick<HeadMetadata, 'unknownThreshold'>): LabelSuccessWithThresholds {
  const threshold = unknownThresholdOf(meta);
  return { ...r, label: r.confidence < threshold ? UNKNOWN_LABEL : r.label, thresholds: { unknown: threshold } };
}
