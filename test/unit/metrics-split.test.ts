import { describe, expect, it } from 'vitest';
import { computeMetrics, topKIndices } from '../../src/ml/metrics.js';
import { balancedClassWeights, createRng, splitByColumn, stratifiedSplit } from '../../src/ml/split.js';

describe('metrics', () => {
  it('computes top-1, top-5, mean class accuracy, per-class figures and the confusion matrix', () => {
    const labels = ['a', 'b', 'c'];
    const probs = [
      [0.7, 0.2, 0.1], // a → a
      [0.6, 0.3, 0.1], // a → a
      [0.5, 0.4, 0.1], // b → a
      [0.1, 0.8, 0.1], // b → b
      [0.2, 0.3, 0.5], // c → c
      [0.1, 0.2, 0.7], // c → c
      [0.4, 0.35, 0.25], // c → a (c ranked last)
    ];
    const m = computeMetrics(probs, [0, 0, 1, 1, 2, 2, 2], labels);
    expect(m.n).toBe(7);
    expect(m.top1).toBeCloseTo(5 / 7);
    expect(m.top5).toBe(1);
    expect(m.confusionMatrix).toEqual([
      [2, 0, 0],
      [1, 1, 0],
      [1, 0, 2],
    ]);
    expect(m.meanClassAccuracy).toBeCloseTo((1 + 0.5 + 2 / 3) / 3);
    const a = m.perClass[0]!;
    expect(a.precision).toBeCloseTo(2 / 4);
    expect(a.recall).toBe(1);
    expect(a.f1).toBeCloseTo((2 * 0.5 * 1) / 1.5);
  });

  it('ranks ties by index and caps k', () => {
    expect(topKIndices([0.2, 0.5, 0.5, 0.1], 3)).toEqual([1, 2, 0]);
    expect(topKIndices([0.2, 0.8], 5)).toEqual([1, 0]);
  });
});

describe('splits', () => {
  const labels = [...Array(10).fill('x'), ...Array(5).fill('y'), 'z'];

  it('stratified: every class with ≥2 items is in validation in proportion, deterministic per seed', () => {
    const s = stratifiedSplit(labels, 0.2, 1);
    const valLabels = s.val.map((i) => labels[i]);
    expect(valLabels.filter((l) => l === 'x')).toHaveLength(2);
    expect(valLabels.filter((l) => l === 'y')).toHaveLength(1);
    expect(valLabels).not.toContain('z');
    expect([...s.train, ...s.val].sort((a, b) => a - b)).toEqual(labels.map((_, i) => i));
    expect(stratifiedSplit(labels, 0.2, 1)).toEqual(s);
    expect(stratifiedSplit(labels, 0.2, 2)).not.toEqual(s);
  });

  it('by column: the chosen values validate', () => {
    expect(splitByColumn(['0', '1', '2', '1'], ['1'])).toEqual({ train: [0, 2], val: [1, 3] });
  });

  it('balanced class weights give each class the same total weight', () => {
    const w = balancedClassWeights([0, 0, 0, 1], 2);
    expect(w[0]! * 3).toBeCloseTo(w[1]! * 1);
  });

  it('the seeded RNG is reproducible and in [0, 1)', () => {
    const a = createRng(5);
    const b = createRng(5);
    const xs = Array.from({ length: 100 }, () => a());
    expect(xs).toEqual(Array.from({ length: 100 }, () => b()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
  });
});
