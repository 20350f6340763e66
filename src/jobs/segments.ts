/**
 * Merging per-window scores into segments `{label, start, end, confidence}`. Pure: no I/O.
 *
 * 1. Time is cut at every window start and end; each piece gets the mean scores of the windows
 *    that cover it (with W = 2·S, every piece is one stride long and seen by two windows).
 * 2. A label is chosen per piece, in time order, with hysteresis: a class takes over when its
 *    score reaches `threshold` (the enter level); the current class holds while its score stays at
 *    or above `threshold − hysteresis` (the exit level) and no other class reaches the enter
 *    level; where no class holds or enters, the piece is `unknown`.
 * 3. Consecutive pieces with the same label are one segment.
 * 4. Segments shorter than `minSegmentSec` are absorbed, shortest first, by the neighbour whose
 *    class scored higher over them (an `unknown` neighbour only when there is no other), until
 *    none is left or only one segment remains.
 *
 * Confidence: the segment's label's mean score over the segment (duration-weighted); for an
 * `unknown` segment, the mean of the best class's score there (which stayed below the threshold).
 */
import { FramewiseError } from '../errors/index.js';

export const UNKNOWN_LABEL = 'unknown';

export interface SegmentOptions {
  /** Enter level: a class must reach this mean score to start a segment. In [0, 1]; 0: never unknown. */
  threshold: number;
  /** The current class holds down to `threshold − hysteresis`. In [0, threshold]. */
  hysteresis: number;
  /** Shorter segments are absorbed by a neighbour (0: keep all). */
  minSegmentSec: number;
}

/**
 * Defaults. threshold 0.5: above every other class of a softmax with certainty (twice chance
 * for 4 classes), and where the bundled head's correct windows sit (its wrong or mixed windows
 * mostly score below it). hysteresis 0.1: a class holds down to 0.4, so a score wobbling around
 * 0.5 does not flicker between the class and `unknown`. minSegmentSec: one window (W), set by
 * the caller: an action shorter than a window is not seen reliably by the head.
 */
export const DEFAULT_THRESHOLD = 0.5;
export const DEFAULT_HYSTERESIS = 0.1;

export interface Segment {
  label: string;
  start: number;
  end: number;
  confidence: number;
}

export interface ScoredSpan {
  start: number;
  end: number;
  scores: ArrayLike<number>;
}

export type ThresholdSource = 'option' | 'model' | 'default';

/**
 * The unknown threshold in use: `--threshold`, else the head's `unknownThreshold` (chosen on
 * validation data when it was trained; 0 there means "never unknown"), else 0.5.
 */
export function resolveThreshold(option: number | undefined, metadata: unknown): { threshold: number; source: ThresholdSource } {
  if (option !== undefined) {
    validateThreshold(option, '--threshold');
    return { threshold: option, source: 'option' };
  }
  const fromModel = (metadata as { unknownThreshold?: unknown } | undefined)?.unknownThreshold;
  if (typeof fromModel === 'number' && fromModel >= 0 && fromModel <= 1) return { threshold: fromModel, source: 'model' };
  return { threshold: DEFAULT_THRESHOLD, source: 'default' };
}

/** A threshold is a probability in [0, 1] (0: never unknown). */
export function validateThreshold(v: number, name: string): void {
  if (!(Number.isFinite(v) && v >= 0 && v <= 1)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `${name} must be a number in [0, 1], got ${v}`);
}

/** Check merge options, listing what is allowed. */
export function validateSegmentOptions(o: SegmentOptions): SegmentOptions {
  validateThreshold(o.threshold, 'threshold');
  if (!(Number.isFinite(o.hysteresis) && o.hysteresis >= 0 && o.hysteresis <= o.threshold)) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', `hysteresis must be in [0, threshold] = [0, ${o.threshold}], got ${o.hysteresis}`);
  }
  if (!(Number.isFinite(o.minSegmentSec) && o.minSegmentSec >= 0)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `minimum segment duration must be ≥ 0 seconds, got ${o.minSegmentSec}`);
  return o;
}

interface Piece {
  start: number;
  end: number;
  scores: Float64Array;
}

/** Step 1: cut time at every window edge; each piece gets the mean scores of the windows covering it. */
export function toPieces(windows: readonly ScoredSpan[], classes: number): Array<{ start: number; end: number; scores: Float64Array }> {
  const key = (x: number): number => Math.round(x * 1e6) / 1e6;
  const cuts = [...new Set(windows.flatMap((w) => [key(w.start), key(w.end)]))].sort((a, b) => a - b);
  const pieces: Piece[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) pieces.push({ start: cuts[i] as number, end: cuts[i + 1] as number, scores: new Float64Array(classes) });
  const counts = new Uint32Array(pieces.length);
  const firstAtOrAfter = (t: number): number => {
    let lo = 0;
    let hi = pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((pieces[mid] as Piece).start < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const w of windows) {
    const s = key(w.start);
    const e = key(w.end);
    for (let p = firstAtOrAfter(s); p < pieces.length && (pieces[p] as Piece).end <= e; p++) {
      const piece = pieces[p] as Piece;
      for (let c = 0; c < classes; c++) piece.scores[c] = (piece.scores[c] as number) + (Number(w.scores[c]) || 0);
      counts[p] = (counts[p] as number) + 1;
    }
  }
  // pieces no window covers (gaps, never with stride ≤ window) are dropped
  return pieces.flatMap((p, i) => {
    const n = counts[i] as number;
    if (n === 0) return [];
    for (let c = 0; c < classes; c++) p.scores[c] = (p.scores[c] as number) / n;
    return [p];
  });
}

const argmax = (xs: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if ((xs[i] as number) > (xs[best] as number)) best = i;
  return best;
};

interface Run {
  /** Class index, or -1 for unknown. */
  cls: number;
  start: number;
  end: number;
  /** Σ duration × score per class. */
  sums: Float64Array;
  /** Σ duration × best score. */
  bestSum: number;
}

const UNKNOWN = -1;
const dur = (r: { start: number; end: number }): number => r.end - r.start;

/** Per-window scores → segments (see the module comment). `labels` in the scores' order. */
export function mergeSegments(windows: readonly ScoredSpan[], labels: readonly string[], options: SegmentOptions): Segment[] {
  const o = validateSegmentOptions(options);
  const C = labels.length;
  const pieces = toPieces(windows, C);
  if (pieces.length === 0) return [];
  const enter = o.threshold;
  const exit = o.threshold - o.hysteresis;

  // step 2: a label per piece, with hysteresis
  let cur = UNKNOWN;
  const runs: Run[] = [];
  for (const p of pieces) {
    const best = argmax(p.scores);
    const sBest = p.scores[best] as number;
    const holds = cur !== UNKNOWN && (p.scores[cur] as number) >= exit && !(best !== cur && sBest >= enter);
    if (!holds) cur = sBest >= enter ? best : UNKNOWN;
    const d = dur(p);
    const last = runs[runs.length - 1];
    // step 3: consecutive pieces with one label are one run
    const run: Run = last && last.cls === cur && Math.abs(last.end - p.start) < 1e-6 ? last : { cls: cur, start: p.start, end: p.start, sums: new Float64Array(C), bestSum: 0 };
    if (run !== last) runs.push(run);
    run.end = p.end;
    for (let c = 0; c < C; c++) run.sums[c] = (run.sums[c] as number) + d * (p.scores[c] as number);
    run.bestSum += d * sBest;
  }

  // step 4: absorb short runs, shortest first
  const meanOf = (r: Run, cls: number): number => (dur(r) > 0 ? (r.sums[cls] as number) / dur(r) : 0);
  for (;;) {
    if (runs.length <= 1 || o.minSegmentSec <= 0) break;
    let k = -1;
    for (let i = 0; i < runs.length; i++) {
      const r = runs[i] as Run;
      if (dur(r) < o.minSegmentSec - 1e-9 && (k < 0 || dur(r) < dur(runs[k] as Run))) k = i;
    }
    if (k < 0) break;
    const r = runs[k] as Run;
    const prev = runs[k - 1];
    const next = runs[k + 1];
    const rank = (n: Run | undefined): number => (n === undefined ? -Infinity : n.cls === UNKNOWN ? -1 : meanOf(r, n.cls));
    const into = rank(prev) >= rank(next) ? k - 1 : k + 1;
    const target = runs[into] as Run;
    target.start = Math.min(target.start, r.start);
    target.end = Math.max(target.end, r.end);
    for (let c = 0; c < C; c++) target.sums[c] = (target.sums[c] as number) + (r.sums[c] as number);
    target.bestSum += r.bestSum;
    runs.splice(k, 1);
    // the neighbours of the absorbed run may now share a label: join them
    const at = into < k ? into : into - 1;
    const a = runs[at];
    const b = runs[at + 1];
    const z = runs[at - 1];
    if (a && b && a.cls === b.cls) joinInto(a, b, C, runs, at + 1);
    if (a && z && a.cls === z.cls) joinInto(z, a, C, runs, at);
  }

  const r4 = (x: number): number => Math.round(x * 1e4) / 1e4;
  const t3 = (x: number): number => Math.round(x * 1e3) / 1e3;
  return runs.map((r) => ({
    label: r.cls === UNKNOWN ? UNKNOWN_LABEL : (labels[r.cls] as string),
    start: t3(r.start),
    end: t3(r.end),
    confidence: r4(r.cls === UNKNOWN ? (dur(r) > 0 ? r.bestSum / dur(r) : 0) : meanOf(r, r.cls)),
  }));
}

function joinInto(into: Run, from: Run, C: number, runs: Run[], removeAt: number): void {
  into.start = Math.min(into.start, from.start);
  into.end = Math.max(into.end, from.end);
  for (let c = 0; c < C; c++) into.sums[c] = (into.sums[c] as number) + (from.sums[c] as number);
  into.bestSum += from.bestSum;
  runs.splice(removeAt, 1);
}

/** Mean of the window scores: the clip-level scores of a windowed result. */
export function meanScores(windows: readonly ScoredSpan[], classes: number): Float32Array {
  const out = new Float32Array(classes);
  if (windows.length === 0) return out;
  for (const w of windows) for (let c = 0; c < classes; c++) out[c] = (out[c] as number) + (Number(w.scores[c]) || 0);
  for (let c = 0; c < classes; c++) out[c] = (out[c] as number) / windows.length;
  return out;
}
