/** Seeded randomness and train/validation splits. Pure. */

/** mulberry32: a small, fast, seeded PRNG in [0, 1). */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffleInPlace<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

export interface Split {
  train: number[];
  val: number[];
}

/**
 * Stratified split: in each class, a `fraction` share (at least one item when the class has two
 * or more) goes to validation. Returns indices into `labels`.
 */
export function stratifiedSplit(labels: readonly string[], fraction: number, seed: number): Split {
  const rng = createRng(seed);
  const byClass = new Map<string, number[]>();
  labels.forEach((l, i) => byClass.set(l, [...(byClass.get(l) ?? []), i]));
  const train: number[] = [];
  const val: number[] = [];
  for (const key of [...byClass.keys()].sort()) {
    const idx = shuffleInPlace([...(byClass.get(key) as number[])], rng);
    const nVal = idx.length >= 2 ? Math.max(1, Math.round(idx.length * fraction)) : 0;
    val.push(...idx.slice(0, nVal));
    train.push(...idx.slice(nVal));
  }
  return { train: train.sort((a, b) => a - b), val: val.sort((a, b) => a - b) };
}

/** Split by the value of a column (e.g. `fold`): rows whose value is in `valValues` validate. */
export function splitByColumn(values: readonly string[], valValues: readonly string[]): Split {
  const set = new Set(valValues);
  const train: number[] = [];
  const val: number[] = [];
  values.forEach((v, i) => (set.has(v) ? val : train).push(i));
  return { train, val };
}

/** Class weights n / (k × n_c), so each class carries the same total weight. */
export function balancedClassWeights(labelIdx: readonly number[], numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (const y of labelIdx) counts[y] = (counts[y] as number) + 1;
  const n = labelIdx.length;
  return counts.map((c) => (c > 0 ? n / (numClasses * c) : 0));
}

/** Items of each group (groups in first-seen order). */
function groupsOf(groups: readonly string[]): Map<string, number[]> {
  const by = new Map<string, number[]>();
  groups.forEach((g, i) => {
    const list = by.get(g);
    if (list) list.push(i);
    else by.set(g, [i]);
  });
  return by;
}

/** Per-class counts of the items `idx`, over `classes`. */
function classCounts(labels: readonly string[], idx: readonly number[], classes: readonly string[]): number[] {
  const counts = new Array<number>(classes.length).fill(0);
  for (const i of idx) {
    const k = classes.indexOf(labels[i] as string);
    counts[k] = (counts[k] as number) + 1;
  }
  return counts;
}

/**
 * Groups in a seeded random order, larger groups first (so the greedy assignments below can
 * still balance with the small ones at the end).
 */
function orderedGroups(groups: readonly string[], seed: number): Array<{ key: string; idx: number[] }> {
  const by = groupsOf(groups);
  const keys = shuffleInPlace([...by.keys()].sort(), createRng(seed));
  const rank = new Map(keys.map((k, i) => [k, i]));
  return keys
    .map((key) => ({ key, idx: by.get(key) as number[] }))
    .sort((a, b) => b.idx.length - a.idx.length || (rank.get(a.key) as number) - (rank.get(b.key) as number));
}

/**
 * Group-aware stratified split: every group (e.g. the source video of several clips) lies wholly
 * on one side; groups are given to validation greedily, largest first in a seeded random order,
 * when that brings validation's per-class counts closer to `fraction` of each class's total.
 * Without groups (each item its own group) this is a plain stratified split.
 */
export function groupStratifiedSplit(labels: readonly string[], groups: readonly string[], fraction: number, seed: number): Split {
  if (groups.length !== labels.length) throw new RangeError('groupStratifiedSplit: one group per label');
  const classes = [...new Set(labels)].sort();
  const totals = classCounts(labels, labels.map((_, i) => i), classes);
  const target = totals.map((t) => t * fraction);
  const val = new Array<number>(classes.length).fill(0);
  const cost = (counts: number[]): number => counts.reduce((s, c, k) => s + ((c - (target[k] as number)) / Math.max(1, totals[k] as number)) ** 2, 0);
  const valIdx: number[] = [];
  const trainIdx: number[] = [];
  for (const g of orderedGroups(groups, seed)) {
    const add = classCounts(labels, g.idx, classes);
    const withIt = val.map((c, k) => c + (add[k] as number));
    if (cost(withIt) < cost(val)) {
      valIdx.push(...g.idx);
      withIt.forEach((c, k) => (val[k] = c));
    } else trainIdx.push(...g.idx);
  }
  return { train: trainIdx.sort((a, b) => a - b), val: valIdx.sort((a, b) => a - b) };
}

/**
 * Group-aware stratified k folds (like scikit-learn's StratifiedGroupKFold): each group goes,
 * largest first in a seeded random order, to the fold where it best evens out the per-class
 * counts (ties: the smaller fold). Returns the test items of each fold; every item is in exactly
 * one fold, and no group is in two.
 */
export function groupStratifiedFolds(labels: readonly string[], groups: readonly string[], k: number, seed: number): number[][] {
  if (groups.length !== labels.length) throw new RangeError('groupStratifiedFolds: one group per label');
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`groupStratifiedFolds: k must be an integer ≥ 2, got ${k}`);
  const classes = [...new Set(labels)].sort();
  const totals = classCounts(labels, labels.map((_, i) => i), classes);
  const folds = Array.from({ length: k }, () => ({ idx: [] as number[], counts: new Array<number>(classes.length).fill(0) }));
  for (const g of orderedGroups(groups, seed)) {
    const add = classCounts(labels, g.idx, classes);
    let best = 0;
    let bestCost = Infinity;
    folds.forEach((f, i) => {
      // spread of each class's share over the folds if the group went to fold i
      let c = 0;
      for (let cl = 0; cl < classes.length; cl++) {
        const shares = folds.map((h, j) => ((h.counts[cl] as number) + (j === i ? (add[cl] as number) : 0)) / Math.max(1, totals[cl] as number));
        const mean = shares.reduce((a, b) => a + b, 0) / k;
        c += shares.reduce((a, s) => a + (s - mean) ** 2, 0);
      }
      if (c < bestCost - 1e-12 || (Math.abs(c - bestCost) <= 1e-12 && f.idx.length < (folds[best] as typeof f).idx.length)) {
        best = i;
        bestCost = c;
      }
    });
    const f = folds[best] as (typeof folds)[number];
    f.idx.push(...g.idx);
    add.forEach((a, cl) => (f.counts[cl] = (f.counts[cl] as number) + a));
  }
  return folds.map((f) => f.idx.sort((a, b) => a - b));
}

/** Folds from a column's values (e.g. a `fold` column): one fold per distinct value, in sorted order. */
export function foldsFromColumn(values: readonly string[]): { names: string[]; folds: number[][] } {
  const names = [...new Set(values)].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return { names, folds: names.map((n) => values.flatMap((v, i) => (v === n ? [i] : []))) };
}
