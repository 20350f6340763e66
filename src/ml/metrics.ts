/** Classification metrics. Pure functions over probability rows and true label indices. */

export interface ClassMetrics {
  label: string;
  support: number;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface EvalMetrics {
  n: number;
  labels: string[];
  top1: number;
  top5: number;
  meanClassAccuracy: number;
  perClass: ClassMetrics[];
  /** confusionMatrix[true][predicted] counts. */
  confusionMatrix: number[][];
}

/** Indices of the k largest values, largest first (ties: lower index first). */
/** Mean and sample standard deviation (0 for fewer than two values). */
export function meanSd(xs: readonly number[]): { mean: number; sd: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const v = xs.length > 1 ? xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1) : 0;
  return { mean, sd: Math.sqrt(v) };
}

export function topKIndices(row: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: row.length }, (_, i) => i);
  idx.sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
  return idx.slice(0, Math.min(k, idx.length));
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
}

export function computeMetrics(probs: ArrayLike<number>[], truth: number[], labels: string[]): EvalMetrics {
  const c = labels.length;
  const confusion = Array.from({ length: c }, () => new Array<number>(c).fill(0));
  let top1 = 0;
  let top5 = 0;
  probs.forEach((row, i) => {
    const t = truth[i] as number;
    const ranked = topKIndices(row, 5);
    const pred = ranked[0] as number;
    (confusion[t] as number[])[pred] = ((confusion[t] as number[])[pred] as number) + 1;
    if (pred === t) top1++;
    if (ranked.includes(t)) top5++;
  });
  const n = probs.length;
  const perClass: ClassMetrics[] = labels.map((label, k) => {
    const row = confusion[k] as number[];
    const support = row.reduce((a, b) => a + b, 0);
    const tp = row[k] as number;
    const predicted = confusion.reduce((a, r) => a + (r[k] as number), 0);
    const recall = support > 0 ? tp / support : 0;
    const precision = predicted > 0 ? tp / predicted : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    return { label, support, accuracy: recall, precision, recall, f1 };
  });
  const present = perClass.filter((p) => p.support > 0);
  return {
    n,
    labels,
    top1: n > 0 ? top1 / n : 0,
    top5: n > 0 ? top5 / n : 0,
    meanClassAccuracy: present.length > 0 ? present.reduce((a, p) => a + p.recall, 0) / present.length : 0,
    perClass,
    confusionMatrix: confusion,
  };
}

export interface CalibrationBin {
  /** Bin bounds on the top-1 confidence, [lo, hi) (the last bin includes 1). */
  lo: number;
  hi: number;
  n: number;
  /** Mean top-1 confidence of the bin's predictions (0 when empty). */
  confidence: number;
  /** Share of the bin's predictions that are right (0 when empty). */
  accuracy: number;
}

export interface Calibration {
  bins: CalibrationBin[];
  /** Expected calibration error: Σ_b (n_b / n) · |accuracy_b − confidence_b| over equal-width bins. */
  ece: number;
}

/** Reliability of the top-1 confidence: equal-width bins over [0, 1] and the expected calibration error. */
export function computeCalibration(probs: ArrayLike<number>[], truth: number[], numBins = 10): Calibration {
  const bins: CalibrationBin[] = Array.from({ length: numBins }, (_, b) => ({ lo: b / numBins, hi: (b + 1) / numBins, n: 0, confidence: 0, accuracy: 0 }));
  probs.forEach((row, i) => {
    const k = argmax(row);
    const p = row[k] as number;
    const bin = bins[Math.min(numBins - 1, Math.floor(p * numBins))] as CalibrationBin;
    bin.n++;
    bin.confidence += p;
    if (k === truth[i]) bin.accuracy++;
  });
  const n = probs.length;
  let ece = 0;
  for (const b of bins) {
    if (b.n === 0) continue;
    b.confidence /= b.n;
    b.accuracy /= b.n;
    ece += (b.n / n) * Math.abs(b.accuracy - b.confidence);
  }
  return { bins, ece };
}

/** Indices of the wrong predictions, most confident first (at most `k`). */
export function hardestMistakes(probs: ArrayLike<number>[], truth: number[], k: number): number[] {
  return probs
    .map((row, i) => ({ i, k: argmax(row), p: row[argmax(row)] as number }))
    .filter((r) => r.k !== truth[r.i])
    .sort((a, b) => b.p - a.p || a.i - b.i)
    .slice(0, k)
    .map((r) => r.i);
}

/** How the `unknown` threshold is chosen on validation predictions. */
export type UnknownRule = { kind: 'macro-f1' } | { kind: 'precision'; target: number } | { kind: 'none' };

export function parseUnknownRule(text: string): UnknownRule | undefined {
  if (text === 'macro-f1' || text === 'none') return { kind: text };
  const m = /^precision(?::|>=)(0?\.\d+|1(?:\.0*)?)$/.exec(text);
  return m ? { kind: 'precision', target: Number(m[1]) } : undefined;
}

export function formatUnknownRule(rule: UnknownRule): string {
  return rule.kind === 'precision' ? `precision:${rule.target}` : rule.kind;
}

export interface UnknownScore {
  threshold: number;
  /** Mean over the classes present of F1, where an `unknown` answer counts against the true class's recall and toward no class's precision. */
  macroF1: number;
  /** Share of the answered (not unknown) predictions that are right. */
  precision: number;
  /** Share of the predictions answered `unknown`. */
  unknownRate: number;
}

/** Scores of predictions when those whose top probability is below `threshold` answer `unknown`. */
export function scoreWithUnknown(probs: ArrayLike<number>[], truth: number[], numClasses: number, threshold: number): UnknownScore {
  const tp = new Array<number>(numClasses).fill(0);
  const predicted = new Array<number>(numClasses).fill(0);
  const support = new Array<number>(numClasses).fill(0);
  let answered = 0;
  let right = 0;
  probs.forEach((row, i) => {
    const t = truth[i] as number;
    support[t] = (support[t] as number) + 1;
    const k = argmax(row);
    if ((row[k] as number) < threshold) return;
    answered++;
    predicted[k] = (predicted[k] as number) + 1;
    if (k === t) {
      tp[k] = (tp[k] as number) + 1;
      right++;
    }
  });
  let f1Sum = 0;
  let present = 0;
  for (let c = 0; c < numClasses; c++) {
    if ((support[c] as number) === 0) continue;
    present++;
    const p = (predicted[c] as number) > 0 ? (tp[c] as number) / (predicted[c] as number) : 0;
    const r = (tp[c] as number) / (support[c] as number);
    f1Sum += p + r > 0 ? (2 * p * r) / (p + r) : 0;
  }
  const n = probs.length;
  return { threshold, macroF1: present > 0 ? f1Sum / present : 0, precision: answered > 0 ? right / answered : 0, unknownRate: n > 0 ? (n - answered) / n : 0 };
}

/**
 * Choose the `unknown` threshold on validation predictions. Candidates: 0 (never unknown) and the
 * midpoints between consecutive distinct top probabilities of the validation predictions (a
 * threshold t answers `unknown` when top p < t; a midpoint leaves a margin on both sides).
 * - `macro-f1`: the threshold with the highest macro-F1 with the unknown option (ties: the lowest threshold);
 * - `precision`: the lowest threshold whose answered predictions are at least `target` right;
 *   when none reaches it, the one with the highest precision (ties: the lowest);
 * - `none`: 0.
 * Returns the threshold with its validation scores and those at threshold 0.
 */
export function chooseUnknownThreshold(probs: ArrayLike<number>[], truth: number[], numClasses: number, rule: UnknownRule): { threshold: number; chosen: UnknownScore; atZero: UnknownScore } {
  const atZero = scoreWithUnknown(probs, truth, numClasses, 0);
  if (rule.kind === 'none' || probs.length === 0) return { threshold: 0, chosen: atZero, atZero };
  const tops = [...new Set(probs.map((row) => row[argmax(row)] as number))].sort((a, b) => a - b);
  // midpoints between consecutive top probabilities: the same splits of the validation rows, with a margin on both sides
  const candidates = tops.slice(1).map((v, i) => ((tops[i] as number) + v) / 2);
  const scores = [atZero, ...candidates.map((t) => scoreWithUnknown(probs, truth, numClasses, t))];
  let best = atZero;
  if (rule.kind === 'macro-f1') {
    for (const s of scores) if (s.macroF1 > best.macroF1 + 1e-12) best = s;
  } else {
    const reaching = scores.find((s) => s.unknownRate < 1 && s.precision >= rule.target - 1e-12);
    if (reaching) best = reaching;
    else for (const s of scores) if (s.unknownRate < 1 && s.precision > best.precision + 1e-12) best = s;
  }
  return { threshold: best.threshold, chosen: best, atZero };
}
