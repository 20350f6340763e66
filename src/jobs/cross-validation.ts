/**
 * K-fold cross-validation of a head configuration on stored features (`framewise cv`, the
 * evaluation scripts and the accuracy tests).
 */
import { FramewiseError } from '../errors/index.js';
import type { Extractor } from '../features/extract.js';
import { parseHeadOptions, type HeadOptions, type TrainOptions } from '../ml/head.js';
import { foldsFromColumn, groupStratifiedFolds } from '../ml/split.js';
import { meanSd } from '../ml/metrics.js';
import { augmentTrainingRows, type AugmentOptions } from './augment.js';
import type { StreamId } from '../features/streams.js';
import { trainEnsemble, type TrainEnsembleResult } from './ensemble.js';
import type { StreamChoice } from './stream-choice.js';
import { withStreams } from './stream-features.js';
import { columnValues, evaluateHead, subset, type LabelledFeatures, type SplitSpec } from './head-training.js';

/** Which folds a cross-validation uses: a manifest column's values, or K group-aware stratified folds. */
export type FoldSpec = { kind: 'column'; column: string } | { kind: 'k'; k: number; groupColumn?: string; seed: number };

export interface FoldResult {
  fold: string;
  trainN: number;
  valN: number;
  testN: number;
  epochs: number;
  top1: number;
  meanClassAccuracy: number;
  /** The mean-pooling baseline trained on the same rows (when asked). */
  baseline?: { top1: number; meanClassAccuracy: number };
  /** With `auto`: the stream set chosen on this fold's training rows (and every candidate's validation score). */
  streams?: StreamId[];
  streamChoice?: StreamChoice;
}

export interface CrossValidationResult {
  folds: FoldResult[];
  mean: { top1: number; meanClassAccuracy: number };
  sd: { top1: number; meanClassAccuracy: number };
  baseline?: { mean: { top1: number; meanClassAccuracy: number }; sd: { top1: number; meanClassAccuracy: number } };
  head: HeadOptions;
  /** One line: `top-1 64.3 ± 4.1 %, mean class accuracy 63.0 ± 3.9 % over 5 folds (n=300)`. */
  summary: string;
}

export interface CrossValidationOptions {
  extractor: Pick<Extractor, 'identity' | 'sampling'>;
  data: LabelledFeatures;
  folds: FoldSpec;
  /** Validation (early stopping, unknown threshold) inside each fold's training rows: a group-aware split when `groupColumn` is given, else stratified. */
  valFraction?: number;
  groupColumn?: string;
  head: Partial<HeadOptions>;
  training: Partial<TrainOptions>;
  /** Train the mean-pooling baseline beside the head in every fold. */
  baseline?: boolean;
  /** Augmented copies of each fold's training rows (not its validation or test rows), extracted with variants of `extractor`. */
  augment?: { options: AugmentOptions; extractor: Extractor };
  /**
   * `--streams auto` inside every fold (nested): the candidate sets are tried on the fold's own
   * training rows as `train` would (stream-choice.ts), the winner is tested on the fold. The
   * candidates are the streams `data` holds.
   */
  auto?: { speeds?: Partial<Record<StreamId, number>> };
  onFold?: (r: FoldResult, index: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * K-fold cross-validation on stored features: for each fold, train on the other folds (minus a
 * validation share for early stopping) and test on it. Reports mean ± sd (sample sd) of top-1
 * and mean class accuracy over the folds.
 */
export async function runCrossValidation(o: CrossValidationOptions): Promise<CrossValidationResult> {
  const { data } = o;
  let names: string[];
  let folds: number[][];
  if (o.folds.kind === 'column') ({ names, folds } = foldsFromColumn(columnValues(data.items, o.folds.column, '--fold-column')));
  else {
    const groups = o.folds.groupColumn ? columnValues(data.items, o.folds.groupColumn, '--group-column') : data.items.map((_, i) => String(i));
    folds = groupStratifiedFolds(data.labels, groups, o.folds.k, o.folds.seed);
    names = folds.map((_, i) => String(i));
  }
  if (folds.length < 2) throw new FramewiseError('FW_ERR_TRAIN_DATA', `cross-validation needs at least two folds, got ${folds.length}`);
  const seed = o.training.seed ?? 42;
  const results: FoldResult[] = [];
  for (const [f, testIdx] of folds.entries()) {
    if (o.signal?.aborted) break;
    const inTest = new Set(testIdx);
    const train = subset(data, data.items.map((_, i) => i).filter((i) => !inTest.has(i)));
    const test = subset(data, testIdx);
    const spec: SplitSpec = o.groupColumn ? { kind: 'group', column: o.groupColumn, fraction: o.valFraction ?? 0.2, seed } : { kind: 'stratified', fraction: o.valFraction ?? 0.2, seed };
    const { train: trainRows, val } = o.augment ? await augmentTrainingRows(train, spec, o.augment.extractor, o.augment.options, undefined, o.signal) : { train, val: spec };
    const common = { extractor: o.extractor, val, id: `cv-${names[f]}`, head: o.head, training: o.training, baseline: false, unknownRule: { kind: 'none' as const }, ...(o.signal ? { signal: o.signal } : {}) };
    let choice: StreamChoice | undefined;
    let r: TrainEnsembleResult;
    if (o.auto) {
      const { chooseStreams } = await import('./stream-choice.js');
      ({ choice, result: r } = await chooseStreams({ ...common, data: trainRows, ...(o.auto.speeds ? { speeds: o.auto.speeds } : {}) }));
    } else r = await trainEnsemble({ ...common, train: trainRows });
    try {
      const known = test.labels.map((l) => r.head.labels.includes(l));
      const testAll = subset(test, known.flatMap((k, i) => (k ? [i] : [])));
      const testKnown = choice ? withStreams(testAll, choice.chosen) : testAll;
      const m = await evaluateHead(r.head, testKnown);
      const fr: FoldResult = { fold: names[f] as string, trainN: r.trainN, valN: r.valN, testN: m.n, epochs: r.epochs.length, top1: m.top1, meanClassAccuracy: m.meanClassAccuracy, ...(choice ? { streams: choice.chosen, streamChoice: choice } : {}) };
      if (o.baseline) {
        const b = await trainEnsemble({ extractor: o.extractor, train: choice ? withStreams(trainRows, choice.chosen) : trainRows, val, id: `cv-${names[f]}-mean`, head: { cell: 'mean', dropout: parseHeadOptions(o.head).dropout }, training: o.training, baseline: false, unknownRule: { kind: 'none' } });
        const bm = await evaluateHead(b.head, testKnown);
        b.head.dispose();
        fr.baseline = { top1: bm.top1, meanClassAccuracy: bm.meanClassAccuracy };
      }
      results.push(fr);
      o.onFold?.(fr, f, folds.length);
    } finally {
      r.head.dispose();
    }
  }
  const t = meanSd(results.map((r) => r.top1));
  const c = meanSd(results.map((r) => r.meanClassAccuracy));
  const pct = (x: { mean: number; sd: number }): string => `${(x.mean * 100).toFixed(1)} ± ${(x.sd * 100).toFixed(1)} %`;
  const out: CrossValidationResult = {
    folds: results,
    mean: { top1: t.mean, meanClassAccuracy: c.mean },
    sd: { top1: t.sd, meanClassAccuracy: c.sd },
    head: parseHeadOptions(o.head),
    summary: `top-1 ${pct(t)}, mean class accuracy ${pct(c)} over ${results.length} folds (n=${data.items.length})`,
  };
  if (o.baseline && results.every((r) => r.baseline)) {
    const bt = meanSd(results.map((r) => (r.baseline as { top1: number }).top1));
    const bc = meanSd(results.map((r) => (r.baseline as { meanClassAccuracy: number }).meanClassAccuracy));
    out.baseline = { mean: { top1: bt.mean, meanClassAccuracy: bc.mean }, sd: { top1: bt.sd, meanClassAccuracy: bc.sd } };
    out.summary += `; mean-pooling baseline top-1 ${pct(bt)}`;
  }
  return out;
}
