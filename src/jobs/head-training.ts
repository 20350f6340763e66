/**
 * Training one temporal head on labelled features: the rows (LabelledFeatures), validation splits,
 * `trainHead` (train, validate, choose the `unknown` threshold, train the mean-pooling baseline
 * beside it) and evaluation of a head on labelled rows.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { FramewiseError } from '../errors/index.js';
import type { Extractor } from '../features/extract.js';
import { type InputError, type InputItem } from '../features/inputs.js';
import { sequenceLength } from '../media/sampling.js';
import { fitNormalization, parseHeadOptions, TemporalHead, type EpochLog, type HeadOptions, type SequenceExample, type TrainOptions } from '../ml/head.js';
import { chooseUnknownThreshold, computeMetrics, formatUnknownRule, type EvalMetrics, type UnknownRule } from '../ml/metrics.js';
import type { StreamLayout } from '../ml/stream-layout.js';
import { groupStratifiedSplit, splitByColumn, stratifiedSplit, type Split } from '../ml/split.js';

export interface LabelledFeatures {
  items: InputItem[];
  examples: SequenceExample[];
  labels: string[];
  /** Inputs that could not be used, with their errors. */
  failed: InputError[];
  /** The per-frame streams side by side in each example (absent: the backbone's rgb features alone). */
  layout?: StreamLayout;
}

/** Extract (or read from the store) the features of labelled items; failures are collected. */
export async function collectFeatures(items: readonly InputItem[], extractor: Extractor, onItem?: (done: number, total: number, item: InputItem, ok: boolean) => void, signal?: AbortSignal): Promise<LabelledFeatures> {
  const out: LabelledFeatures = { items: [], examples: [], labels: [], failed: [] };
  let done = 0;
  for await (const r of extractor.extractMany(items, signal)) {
    done++;
    if (r.ok) {
      out.items.push(r.item);
      out.examples.push({ data: r.seq.data, count: r.seq.count });
      out.labels.push(r.item.label as string);
    } else out.failed.push({ source: r.item.source, error: r.error });
    onItem?.(done, items.length, r.item, r.ok);
  }
  return out;
}

/**
 * How validation rows are chosen from the training data: a stratified share, the rows whose
 * column has given values, a group-aware stratified share (all rows of a group on one side), or none.
 */
export type SplitSpec =
  | { kind: 'stratified'; fraction: number; seed: number }
  | { kind: 'column'; column: string; valValues: string[] }
  | { kind: 'group'; column: string; fraction: number; seed: number }
  | { kind: 'none' };

/** The values of a manifest column for every item (`FW_ERR_MANIFEST_INVALID` when the manifest lacks it). */
export function columnValues(items: readonly InputItem[], column: string, option: string): string[] {
  const values = items.map((it) => it.extra[column.toLowerCase()]);
  if (values.some((v) => v === undefined)) throw new FramewiseError('FW_ERR_MANIFEST_INVALID', `${option} ${column}: the manifest has no such column`);
  return values as string[];
}

export function makeSplit(data: Pick<LabelledFeatures, 'items' | 'labels'>, spec: SplitSpec): Split {
  if (spec.kind === 'none') return { train: data.items.map((_, i) => i), val: [] };
  if (spec.kind === 'column') return splitByColumn(columnValues(data.items, spec.column, '--split-column'), spec.valValues);
  if (spec.kind === 'group') return groupStratifiedSplit(data.labels, columnValues(data.items, spec.column, '--group-column'), spec.fraction, spec.seed);
  return stratifiedSplit(data.labels, spec.fraction, spec.seed);
}

export interface TrainHeadOptions {
  /** Where the features come from (backbone identity and sampling are recorded with the head). */
  extractor: Pick<Extractor, 'identity' | 'sampling'>;
  train: LabelledFeatures;
  /** A separate validation set, or a split of `train`. */
  val: LabelledFeatures | SplitSpec;
  head: Partial<HeadOptions>;
  training: Partial<TrainOptions>;
  id: string;
  /** Also train the order-blind mean-pooling baseline on the same split and record its validation figures (default true: it is cheap). */
  baseline?: boolean;
  /** How the `unknown` threshold is chosen on the validation set (default macro-F1; none without validation data). */
  unknownRule?: UnknownRule;
  onEpoch?: (log: EpochLog) => void | Promise<void>;
  signal?: AbortSignal;
  /** The head's input normalisation (default: fitted on the training rows of the split). */
  normalization?: { mean: Float32Array; std: Float32Array };
}

export interface TrainHeadResult {
  head: TemporalHead;
  epochs: EpochLog[];
  bestEpoch: number;
  valMetrics: EvalMetrics | undefined;
  /** The validation rows and the head's probabilities for them (for a validation report). */
  validation: { items: InputItem[]; labels: string[]; probs: Float32Array[] } | undefined;
  /** The mean-pooling baseline's validation figures (when asked and there is validation data). */
  baseline: { top1: number; meanClassAccuracy: number } | undefined;
  trainN: number;
  valN: number;
}

const pick = <T>(xs: readonly T[], idx: readonly number[]): T[] => idx.map((i) => xs[i] as T);

/** Hash of the training data identity (paths + labels), recorded with the model. */
export function dataHash(items: readonly InputItem[]): string {
  const h = createHash('sha256');
  for (const it of items) h.update(`${it.source}\t${it.label ?? ''}\n`);
  return h.digest('hex').slice(0, 16);
}

export async function trainHead(o: TrainHeadOptions): Promise<TrainHeadResult> {
  let trainSet: { examples: SequenceExample[]; labels: string[]; items: InputItem[] };
  let valSet: { examples: SequenceExample[]; labels: string[]; items: InputItem[] } | undefined;
  if ('examples' in o.val) {
    trainSet = o.train;
    valSet = o.val.examples.length > 0 ? o.val : undefined;
  } else {
    const split = makeSplit(o.train, o.val);
    trainSet = { examples: pick(o.train.examples, split.train), labels: pick(o.train.labels, split.train), items: pick(o.train.items, split.train) };
    valSet = split.val.length > 0 ? { examples: pick(o.train.examples, split.val), labels: pick(o.train.labels, split.val), items: pick(o.train.items, split.val) } : undefined;
  }
  const labels = [...new Set(trainSet.labels)].sort();
  if (labels.length < 2) throw new FramewiseError('FW_ERR_TRAIN_DATA', `training needs at least two classes with usable videos; got ${labels.length} (${labels.join(', ') || 'none'})`);
  if (valSet) {
    const unknown = [...new Set(valSet.labels.filter((l) => !labels.includes(l)))];
    if (unknown.length > 0) throw new FramewiseError('FW_ERR_TRAIN_DATA', `validation labels not present in training data: ${unknown.join(', ')}`);
  }
  const { identity, sampling } = o.extractor;
  const headOptions = parseHeadOptions(o.head);
  const create = (head: HeadOptions): Promise<TemporalHead> =>
    TemporalHead.create({
      id: o.id,
      labels,
      backbone: identity,
      sampling: { policy: sampling.policy, size: sampling.geometry.size, crop: sampling.geometry.crop },
      sequenceLength: sequenceLength(sampling.policy),
      head,
      ...(o.training.seed !== undefined ? { seed: o.training.seed } : {}),
      ...(o.train.layout ? { streams: o.train.layout } : {}),
      // an ensemble's members share one normalisation (fitted on all their rows)
      normalization: head === headOptions && o.normalization ? o.normalization : fitNormalization(trainSet.examples, identity.dim, head, o.train.layout),
    });
  const head = await create(headOptions);
  const toIdx = (ls: string[]): number[] => ls.map((l) => labels.indexOf(l));
  const trainIdx = { examples: trainSet.examples, labels: toIdx(trainSet.labels) };
  const valIdx = valSet ? { examples: valSet.examples, labels: toIdx(valSet.labels) } : undefined;
  const result = await head.train(trainIdx, valIdx, o.training, o.onEpoch, o.signal);
  let valMetrics: EvalMetrics | undefined;
  let validation: TrainHeadResult['validation'];
  let baseline: TrainHeadResult['baseline'];
  const metrics: Record<string, unknown> = {};
  if (valSet && valIdx) {
    const probs = await head.predict(valSet.examples);
    valMetrics = computeMetrics(probs, valIdx.labels, labels);
    validation = { items: valSet.items, labels: valSet.labels, probs };
    metrics.validation = summarize(valMetrics);
    const rule = o.unknownRule ?? { kind: 'macro-f1' };
    const u = chooseUnknownThreshold(probs, valIdx.labels, labels.length, rule);
    // 4 decimals, rounded down: results show confidences to 4 decimals and are compared with it
    head.annotate({ unknownThreshold: Math.floor(u.threshold * 1e4) / 1e4, unknownRule: { rule: formatUnknownRule(rule), validationN: probs.length, chosen: u.chosen, atZero: u.atZero } });
    if ((o.baseline ?? true) && headOptions.cell !== 'mean' && !o.signal?.aborted) {
      // the order-blind baseline on the same features and split, with the same training options
      const base = await create(parseHeadOptions({ cell: 'mean', dropout: headOptions.dropout }));
      try {
        await base.train(trainIdx, valIdx, o.training, undefined, o.signal);
        const bm = computeMetrics(await base.predict(valSet.examples), valIdx.labels, labels);
        baseline = { top1: bm.top1, meanClassAccuracy: bm.meanClassAccuracy };
        metrics.baseline = { head: 'mean', validation: summarize(bm) };
      } finally {
        base.dispose();
      }
    }
  } else {
    head.annotate({ unknownThreshold: 0, unknownRule: { rule: 'none', reason: 'no validation data' } });
  }
  head.annotate({
    metrics,
    training: { trainN: trainSet.examples.length, valN: valSet?.examples.length ?? 0, dataHash: dataHash(trainSet.items), split: 'examples' in o.val ? { kind: 'manifest' } : o.val },
  });
  return { head, epochs: result.history, bestEpoch: result.bestEpoch, valMetrics, validation, baseline, trainN: trainSet.examples.length, valN: valSet?.examples.length ?? 0 };
}

/** The headline numbers of an evaluation (for metadata and one-line summaries). */
export function summarize(m: EvalMetrics): { n: number; top1: number; top5: number; meanClassAccuracy: number } {
  return { n: m.n, top1: m.top1, top5: m.top5, meanClassAccuracy: m.meanClassAccuracy };
}

/** Evaluate a head on labelled features (labels must be the head's). */
export async function evaluateHead(head: TemporalHead, data: Pick<LabelledFeatures, 'examples' | 'labels'>): Promise<EvalMetrics> {
  return (await predictLabelled(head, data)).metrics;
}

/** Metrics and the per-item probabilities and true label indices (for reports). */
export async function predictLabelled(head: TemporalHead, data: Pick<LabelledFeatures, 'examples' | 'labels'>): Promise<{ metrics: EvalMetrics; probs: Float32Array[]; truth: number[] }> {
  const truth = data.labels.map((l) => head.labels.indexOf(l));
  if (truth.some((t) => t < 0)) throw new FramewiseError('FW_ERR_MANIFEST_BAD_LABEL', 'evaluation data holds labels the model does not know');
  const probs = await head.predict(data.examples);
  return { metrics: computeMetrics(probs, truth, head.labels), probs, truth };
}


/** Two sets of labelled features, one after the other. */
export function concatFeatures(a: LabelledFeatures, b: LabelledFeatures): LabelledFeatures {
  return { items: [...a.items, ...b.items], examples: [...a.examples, ...b.examples], labels: [...a.labels, ...b.labels], failed: [...a.failed, ...b.failed], ...(a.layout ? { layout: a.layout } : {}) };
}

/** Rows `idx` of labelled features. */
export function subset(data: LabelledFeatures, idx: readonly number[]): LabelledFeatures {
  return { items: pick(data.items, idx), examples: pick(data.examples, idx), labels: pick(data.labels, idx), failed: [], ...(data.layout ? { layout: data.layout } : {}) };
}

