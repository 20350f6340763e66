/**
 * Data handling for training: group-aware stratified splits and folds, the unknown-threshold
 * rule, calibration, and the temporal-difference transform.
 */
import { describe, expect, it } from 'vitest';
import { applyTemporalDiff, fitNormalization, headInputDim } from '../../src/ml/head.js';
import { chooseUnknownThreshold, computeCalibration, hardestMistakes, parseUnknownRule, scoreWithUnknown } from '../../src/ml/metrics.js';
import { createRng, foldsFromColumn, groupStratifiedFolds, groupStratifiedSplit } from '../../src/ml/split.js';

/** 44 groups of 3–9 clips, two imbalanced classes, each group mostly one class (like surv_fight's source videos). */
function groupedData(seed: number): { labels: string[]; groups: string[] } {
  const rng = createRng(seed);
  const labels: string[] = [];
  const groups: string[] = [];
  for (let g = 0; g < 44; g++) {
    const size = 3 + Math.floor(rng() * 7);
    const main = rng() < 0.55 ? 'fight' : 'noFight';
    for (let i = 0; i < size; i++) {
      labels.push(rng() < 0.85 ? main : main === 'fight' ? 'noFight' : 'fight');
      groups.push(`src${g}`);
    }
  }
  return { labels, groups };
}

describe('group-aware stratified split', () => {
  it('never puts one group on both sides, and keeps about the asked share of every class', () => {
    for (const seed of [1, 2, 3]) {
      const { labels, groups } = groupedData(seed);
      const s = groupStratifiedSplit(labels, groups, 0.2, seed);
      expect([...s.train, ...s.val].sort((a, b) => a - b)).toEqual(labels.map((_, i) => i));
      const trainGroups = new Set(s.train.map((i) => groups[i]));
      for (const i of s.val) expect(trainGroups.has(groups[i])).toBe(false);
      for (const cls of ['fight', 'noFight']) {
        const total = labels.filter((l) => l === cls).length;
        const inVal = s.val.filter((i) => labels[i] === cls).length;
        expect(inVal / total).toBeGreaterThan(0.1);
        expect(inVal / total).toBeLessThan(0.3);
      }
    }
  });

  it('is deterministic for a seed, and without groups is a plain stratified split', () => {
    const { labels, groups } = groupedData(4);
    expect(groupStratifiedSplit(labels, groups, 0.2, 9)).toEqual(groupStratifiedSplit(labels, groups, 0.2, 9));
    const single = labels.map((_, i) => String(i));
    const s = groupStratifiedSplit(labels, single, 0.25, 1);
    const fights = labels.filter((l) => l === 'fight').length;
    expect(Math.abs(s.val.filter((i) => labels[i] === 'fight').length - fights * 0.25)).toBeLessThanOrEqual(1);
  });
});

describe('k-fold', () => {
  it('puts every item in exactly one test fold, no group in two folds, classes spread evenly', () => {
    const { labels, groups } = groupedData(5);
    const folds = groupStratifiedFolds(labels, groups, 5, 1);
    expect(folds).toHaveLength(5);
    const seen = folds.flat().sort((a, b) => a - b);
    expect(seen).toEqual(labels.map((_, i) => i));
    const foldOfGroup = new Map<string, number>();
    folds.forEach((f, k) =>
      f.forEach((i) => {
        const g = groups[i] as string;
        expect(foldOfGroup.get(g) ?? k).toBe(k);
        foldOfGroup.set(g, k);
      }),
    );
    const share = folds.map((f) => f.filter((i) => labels[i] === 'fight').length / labels.filter((l) => l === 'fight').length);
    for (const s of share) expect(s).toBeGreaterThan(0.1);
    for (const s of share) expect(s).toBeLessThan(0.3);
  });

  it('stratified k-fold without groups, and folds from a column', () => {
    const labels = Array.from({ length: 23 }, (_, i) => (i % 3 === 0 ? 'a' : 'b'));
    const folds = groupStratifiedFolds(labels, labels.map((_, i) => String(i)), 4, 2);
    expect(folds.flat().sort((a, b) => a - b)).toEqual(labels.map((_, i) => i));
    for (const f of folds) expect(f.length === 5 || f.length === 6).toBe(true);
    const c = foldsFromColumn(['2', '0', '10', '0', '1', '2']);
    expect(c.names).toEqual(['0', '1', '2', '10']);
    expect(c.folds).toEqual([[1, 3], [4], [0, 5], [2]]);
    expect(() => groupStratifiedFolds(labels, labels, 1, 1)).toThrow(RangeError);
  });
});

describe('the unknown threshold', () => {
  // 3 classes; confident right answers, and wrong answers that are less confident
  const probs = [
    [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.85, 0.1, 0.05], [0.45, 0.4, 0.15],
    [0.1, 0.85, 0.05], [0.05, 0.9, 0.05], [0.5, 0.42, 0.08], [0.2, 0.7, 0.1],
    [0.1, 0.1, 0.8], [0.05, 0.15, 0.8], [0.48, 0.1, 0.42], [0.1, 0.2, 0.7],
  ];
  // items 3 (true 1), 6 (true 1) and 10 (true 2) are wrong, all with top p < 0.55
  const truth = [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2];

  it('scores unknown answers against recall only', () => {
    const s0 = scoreWithUnknown(probs, truth, 3, 0);
    expect(s0.unknownRate).toBe(0);
    expect(s0.precision).toBeCloseTo(9 / 12, 6);
    const s = scoreWithUnknown(probs, truth, 3, 0.6);
    expect(s.unknownRate).toBeCloseTo(3 / 12, 6);
    expect(s.precision).toBe(1);
  });

  it('macro-F1 rule: rejects the low-confidence mistakes, keeps every right answer', () => {
    const r = chooseUnknownThreshold(probs, truth, 3, { kind: 'macro-f1' });
    expect(r.threshold).toBeGreaterThan(0.5);
    expect(r.threshold).toBeLessThanOrEqual(0.7);
    expect(r.chosen.macroF1).toBeGreaterThan(r.atZero.macroF1);
    expect(r.chosen.precision).toBe(1);
  });

  it('precision rule: the lowest threshold that reaches the target; none: 0', () => {
    const r = chooseUnknownThreshold(probs, truth, 3, { kind: 'precision', target: 0.9 });
    expect(r.chosen.precision).toBeGreaterThanOrEqual(0.9);
    // the next lower candidate would not reach it
    expect(scoreWithUnknown(probs, truth, 3, 0.48).precision).toBeLessThan(0.9);
    expect(chooseUnknownThreshold(probs, truth, 3, { kind: 'none' }).threshold).toBe(0);
    // all right already: no reason to say unknown
    const right = chooseUnknownThreshold([[0.9, 0.1], [0.2, 0.8]], [0, 1], 2, { kind: 'macro-f1' });
    expect(right.threshold).toBe(0);
    expect(parseUnknownRule('precision:0.95')).toEqual({ kind: 'precision', target: 0.95 });
    expect(parseUnknownRule('macro-f1')).toEqual({ kind: 'macro-f1' });
    expect(parseUnknownRule('precision:2')).toBeUndefined();
  });
});

describe('calibration and mistakes', () => {
  it('ECE over equal-width bins; hardest mistakes most confident first', () => {
    const probs = [[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.3, 0.7]];
    const truth = [0, 1, 0, 0];
    const c = computeCalibration(probs, truth, 10);
    // bin 0.9: conf 0.95, acc 0.5 (2 items); bin 0.6: conf 0.65 acc 1; bin 0.7: conf 0.7 acc 0
    expect(c.ece).toBeCloseTo((2 / 4) * 0.45 + (1 / 4) * 0.35 + (1 / 4) * 0.7, 6);
    expect(c.bins[9]).toMatchObject({ n: 2, accuracy: 0.5 });
    expect(hardestMistakes(probs, truth, 5)).toEqual([1, 3]);
  });
});

describe('temporal differences', () => {
  it('append gives [x_t, x_t − x_t−1] with d_0 = 0; only gives the differences; normalisation fits the input size', () => {
    const ex = { data: Float32Array.from([1, 2, 4, 6, 5, 5]), count: 3 }; // dim 2
    expect(Array.from(applyTemporalDiff(ex, 2, 'append').data)).toEqual([1, 2, 0, 0, 4, 6, 3, 4, 5, 5, 1, -1]);
    expect(Array.from(applyTemporalDiff(ex, 2, 'only').data)).toEqual([0, 0, 3, 4, 1, -1]);
    expect(applyTemporalDiff(ex, 2, 'none')).toBe(ex);
    expect(headInputDim(2, 'append')).toBe(4);
    expect(fitNormalization([ex], 2, { temporalDiff: 'append' }).mean).toHaveLength(4);
  });
});
