/**
 * Training and evaluating the temporal head on labelled videos. Frames are embedded once into
 * the feature store; every later run reads the stored features.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import type { Extractor, ExtractStats } from '../features/extract.js';
import { addTimings, createStageTimings } from '../features/pipeline-schedule.js';
import { readLabelledData, type InputError, type InputItem } from '../features/inputs.js';
import { DEFAULT_CROP, DEFAULT_SAMPLING, formatSampling, sequenceLength, type CropMode, type SamplingPolicy } from '../media/sampling.js';
import { BACKBONE_SPECS } from '../ml/backbone-specs.js';
import { MODEL_NAME_PATTERN, ModelRegistry } from '../ml/registry.js';
import { createExtractor, runtimeFromConfig, type RuntimeOptions } from './runtime.js';
import { fitNormalization, parseHeadOptions, TemporalHead, type EpochLog, type HeadOptions, type SequenceExample, type TrainOptions } from '../ml/head.js';
import { chooseUnknownThreshold, computeMetrics, formatUnknownRule, type EvalMetrics, type UnknownRule } from '../ml/metrics.js';
import type { StreamLayout } from '../ml/stream-layout.js';
import { DEFAULT_STREAMS, KEYPOINT_STREAMS, openFrameStream, STREAM_IDS, type StreamId } from '../features/streams.js';
import type { StreamExtractor } from '../features/stream-extract.js';
import type { StreamChoice } from './stream-choice.js';
import { foldsFromColumn, groupStratifiedFolds, groupStratifiedSplit, splitByColumn, stratifiedSplit, type Split } from '../ml/split.js';

export { DEFAULT_TRAIN_FEATURE } from '../config/index.js';

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
      normalization: fitNormalization(trainSet.examples, identity.dim, head, o.train.layout),
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

/** Training-time augmentation, made at extraction and stored in the feature store like any features. */
export interface AugmentOptions {
  /** Copies of each training clip whose frames sit at seeded random points of their segments (seeds 1..jitter; `uniform` sampling only). */
  jitter?: number;
  /**
   * A mirrored copy of each training clip. A label naming a side (`left`/`right`) takes the
   * mirrored class when it exists (pan_left ↔ pan_right); when it does not, that clip is not mirrored.
   */
  flip?: boolean;
}

/** The label of a mirrored clip: `left` ↔ `right` in the name (case kept), undefined when that class does not exist; other labels stay. */
export function mirroredLabel(label: string, labels: ReadonlySet<string>): string | undefined {
  if (!/left|right/i.test(label)) return label;
  const swapped = label.replace(/left|right/gi, (m) => {
    const t = m.toLowerCase() === 'left' ? 'right' : 'left';
    if (m === m.toUpperCase()) return t.toUpperCase();
    return m[0] === m[0]?.toUpperCase() ? `${t[0]?.toUpperCase()}${t.slice(1)}` : t;
  });
  return labels.has(swapped) ? swapped : undefined;
}

/** Augmented copies of labelled rows (jittered samplings, the mirror), through variants of `extractor` that share its backbone and store. */
export async function augmentFeatures(
  rows: LabelledFeatures,
  extractor: Extractor,
  o: AugmentOptions,
  onItem?: (done: number, total: number, item: InputItem, ok: boolean) => void,
  signal?: AbortSignal,
): Promise<{ data: LabelledFeatures; stats: ExtractStats }> {
  const { policy, geometry } = extractor.sampling;
  const jitter = o.jitter ?? 0;
  if (jitter > 0 && policy.kind !== 'uniform') throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'jitter augmentation needs uniform:N sampling');
  const variants: Array<{ extractor: Extractor; items: InputItem[] }> = [];
  if (policy.kind === 'uniform') for (let s = 1; s <= jitter; s++) variants.push({ extractor: extractor.variant({ ...policy, jitter: s }, geometry), items: rows.items });
  if (o.flip) {
    const labels = new Set(rows.labels);
    const items = rows.items.flatMap((it) => {
      const label = mirroredLabel(it.label as string, labels);
      return label === undefined ? [] : [{ ...it, label }];
    });
    variants.push({ extractor: extractor.variant(policy, { ...geometry, flip: true }), items });
  }
  const out: LabelledFeatures = { items: [], examples: [], labels: [], failed: [] };
  const stats: ExtractStats = { decoded: 0, embedded: 0, cached: 0, failed: 0, framesEmbedded: 0, timings: createStageTimings() };
  const total = variants.reduce((n, v) => n + v.items.length, 0);
  let done = 0;
  for (const v of variants) {
    const f = await collectFeatures(v.items, v.extractor, (_d, _t, item, ok) => onItem?.(++done, total, item, ok), signal);
    out.items.push(...f.items);
    out.examples.push(...f.examples);
    out.labels.push(...f.labels);
    for (const k of ['decoded', 'embedded', 'cached', 'failed', 'framesEmbedded'] as const) stats[k] += v.extractor.stats[k];
    addTimings(stats.timings, v.extractor.stats.timings);
    await v.extractor.dispose();
  }
  return { data: out, stats };
}

/**
 * Augment the training side only: a split of `train` is made first (validation stays real clips),
 * then the training rows get their augmented copies. `val` given as features is kept as it is.
 */
export async function augmentTrainingRows(
  train: LabelledFeatures,
  val: SplitSpec | LabelledFeatures,
  extractor: Extractor,
  o: AugmentOptions,
  onItem?: (done: number, total: number, item: InputItem, ok: boolean) => void,
  signal?: AbortSignal,
): Promise<{ train: LabelledFeatures; val: LabelledFeatures; augmented: { data: LabelledFeatures; stats: ExtractStats } }> {
  let rows = train;
  let valRows: LabelledFeatures;
  if ('examples' in val) valRows = val;
  else {
    const split = makeSplit(train, val);
    rows = subset(train, split.train);
    valRows = subset(train, split.val);
  }
  const augmented = await augmentFeatures(rows, extractor, o, onItem, signal);
  return { train: concatFeatures(rows, augmented.data), val: valRows, augmented };
}

/** Two sets of labelled features, one after the other. */
export function concatFeatures(a: LabelledFeatures, b: LabelledFeatures): LabelledFeatures {
  return { items: [...a.items, ...b.items], examples: [...a.examples, ...b.examples], labels: [...a.labels, ...b.labels], failed: [...a.failed, ...b.failed], ...(a.layout ? { layout: a.layout } : {}) };
}

/** Rows `idx` of labelled features. */
export function subset(data: LabelledFeatures, idx: readonly number[]): LabelledFeatures {
  return { items: pick(data.items, idx), examples: pick(data.examples, idx), labels: pick(data.labels, idx), failed: [], ...(data.layout ? { layout: data.layout } : {}) };
}

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

const meanSd = (xs: number[]): { mean: number; sd: number } => {
  const m = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const v = xs.length > 1 ? xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1) : 0;
  return { mean: m, sd: Math.sqrt(v) };
};

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
    const r = await trainHead({ extractor: o.extractor, train: trainRows, val, id: `cv-${names[f]}`, head: o.head, training: o.training, baseline: false, unknownRule: { kind: 'none' }, ...(o.signal ? { signal: o.signal } : {}) });
    try {
      const known = test.labels.map((l) => r.head.labels.includes(l));
      const testKnown = subset(test, known.flatMap((k, i) => (k ? [i] : [])));
      const m = await evaluateHead(r.head, testKnown);
      const fr: FoldResult = { fold: names[f] as string, trainN: r.trainN, valN: r.valN, testN: m.n, epochs: r.epochs.length, top1: m.top1, meanClassAccuracy: m.meanClassAccuracy };
      if (o.baseline) {
        const b = await trainHead({ extractor: o.extractor, train: trainRows, val, id: `cv-${names[f]}-mean`, head: { cell: 'mean', dropout: parseHeadOptions(o.head).dropout }, training: o.training, baseline: false, unknownRule: { kind: 'none' } });
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

/** What a training run needs (the CLI's `train` and the queue's `train` worker both call {@link runTraining}). */
export interface TrainingOptions {
  config: Config;
  /** Training data: a CSV manifest (`path,label`, other columns allowed) or class folders. */
  manifest: string;
  /** The folder the manifest's relative paths are relative to. @defaultValue the manifest's folder */
  manifestBaseDir?: string;
  /** Separate validation data (else a split of `manifest`, see `split`). */
  valManifest?: string;
  /**
   * Validation rows from `manifest`: `column`+`valValues` (rows whose column has one of the values),
   * else `groupColumn` (group-aware stratified share), else a stratified share. Default fraction 0.2.
   */
  split?: { fraction?: number; column?: string; valValues?: string[]; groupColumn?: string };
  sampling?: SamplingPolicy;
  crop?: CropMode;
  /** Engine, backend, backbone, feature kind, cache dir… (defaults from the configuration). */
  runtime?: Partial<RuntimeOptions>;
  head?: Partial<HeadOptions>;
  training?: Partial<TrainOptions>;
  /** Model id recorded in metadata (default: the registry name, else the --out folder name). */
  id?: string;
  /** Save the head to this folder. */
  out?: string;
  /** Save the head as a new version of this registry name. */
  register?: string;
  /** Promote the new registry version (the first version of a name always is). */
  promote?: boolean;
  /** Train and record the mean-pooling baseline's validation figures (default true). */
  baseline?: boolean;
  /** Rule for the `unknown` threshold (default macro-F1 on validation). */
  unknownRule?: UnknownRule;
  /** Augmented copies of the training rows (never of validation rows), made at extraction and stored like other features. */
  augment?: AugmentOptions;
  /** Write the validation report (report.json/html, with contact sheets) beside the model (default true when there is validation data). */
  report?: boolean;
  /**
   * Per-frame streams the head reads (features/streams.ts), or `auto`: the set chosen on the
   * training data's validation split (jobs/stream-choice.ts). @defaultValue DEFAULT_STREAMS
   */
  streams?: readonly StreamId[] | 'auto';
  /** Seeds `auto` compares candidates over (each with its own validation split). @defaultValue seed, seed+1, seed+2 */
  autoSeeds?: number[];
  /** The streams `auto` builds its candidate sets from. @defaultValue rgb, motion and the keypoint streams this build can load */
  autoStreams?: StreamId[];
}

export interface TrainingHooks {
  onEpoch?: (log: EpochLog) => void | Promise<void>;
  /** Feature extraction progress. */
  onItem?: (done: number, total: number, item: InputItem, ok: boolean) => void;
  signal?: AbortSignal;
}

export interface TrainingResult {
  /** Where the model was saved (the registry version folder when registered). */
  modelDir: string;
  version: string;
  id: string;
  metrics: { validation: ReturnType<typeof summarize> | null; baseline: { top1: number; meanClassAccuracy: number } | null; unknownThreshold: number };
  labels: string[];
  trainN: number;
  valN: number;
  epochs: number;
  bestEpoch: number;
  /** Also saved here (when both `register` and `out` were given). */
  copies: string[];
  registered: { name: string; version: string; promoted: boolean } | null;
  skipped: InputError[];
  /** True when the run was cancelled during training: the model saved is the best epoch so far (never promoted). */
  cancelled: boolean;
  /** Where the features came from: the feature store (`cached`) or decoded and embedded now. */
  features: ExtractStats;
  /** The augmented training examples made, and where their features came from. */
  augmented?: ExtractStats & { examples: number };
  /** The per-frame streams of the model. */
  streams: StreamId[];
  /** With `--streams auto`: every candidate's validation score and cost, and the one chosen. */
  streamChoice?: StreamChoice;
}

async function sha256File(path: string): Promise<string | undefined> {
  try {
    return createHash('sha256').update(await readFile(path)).digest('hex');
  } catch {
    return undefined;
  }
}

/**
 * Train a head end to end: read the labelled data, embed it (the feature store makes repeats
 * instant), split, train, choose the unknown threshold, train the baseline, then save to `out`
 * and/or register it, with its validation report. The queue's `train` worker calls this.
 * Cancelled (`hooks.signal`) during training, it keeps the best epoch so far: saved and
 * registered (never promoted), `cancelled: true`; cancelled before the first epoch, it throws
 * `FW_ERR_JOB_CANCELLED`.
 */
export async function runTraining(o: TrainingOptions, hooks: TrainingHooks = {}): Promise<TrainingResult> {
  if (!o.out && !o.register) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'training needs somewhere to save the model: --out DIR or --register NAME');
  if (o.split?.column && !o.split.valValues?.length) throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--split-column needs --val-values');
  if (o.valManifest && (o.split?.column || o.split?.groupColumn)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'use either --val-manifest or a split of the manifest (--split-column / --group-column), not both');
  const registry = o.register ? ModelRegistry.fromConfig(o.config) : undefined;
  if (o.register && !MODEL_NAME_PATTERN.test(o.register)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `invalid model name '${o.register}': letters, digits, . _ - (at most 64)`);
  const rt = runtimeFromConfig(o.config, { featureKind: o.config.trainFeatureKind, ...(o.runtime ?? {}) });
  const policy = o.sampling ?? DEFAULT_SAMPLING;
  const geometry = { size: BACKBONE_SPECS[rt.backbone].inputSize, crop: o.crop ?? DEFAULT_CROP };
  const requested = o.streams ?? DEFAULT_STREAMS;
  const sf = await import('./stream-features.js');
  // several streams (or auto): one decode per clip feeds every stream, each cached on its own
  let streamExtractor: StreamExtractor | undefined;
  if (requested === 'auto' || !sf.isRgbOnly(requested)) {
    if (o.augment && ((o.augment.jitter ?? 0) > 0 || o.augment.flip)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `--augment works with --streams rgb only (the streams here: ${requested === 'auto' ? 'auto' : requested.join(',')})`);
    let streams: StreamId[] = requested === 'auto' ? (o.autoStreams ? [...o.autoStreams] : ['rgb', 'motion']) : [...requested];
    if (requested === 'auto' && !o.autoStreams) {
      // the keypoint streams this build can load join the candidates
      for (const id of KEYPOINT_STREAMS) {
        try {
          const s = await openFrameStream(id, { cacheDir: rt.cacheDir, threads: rt.threads });
          await s.dispose();
          streams.push(id);
        } catch (err) {
          if (!(err instanceof FramewiseError && err.code === 'FW_ERR_STREAM_UNAVAILABLE')) throw err;
        }
      }
      streams = STREAM_IDS.filter((s) => streams.includes(s));
    }
    streamExtractor = await sf.createStreamExtractor(rt, policy, geometry, streams);
  }
  const extractor = streamExtractor ?? (await createExtractor(rt, policy, geometry));
  try {
    const read = async (source: string, baseDir?: string): Promise<LabelledFeatures> => {
      const inputs = await readLabelledData(source, undefined, baseDir);
      const feats = streamExtractor ? await sf.collectStreamFeatures(inputs.items, streamExtractor, hooks.onItem, hooks.signal) : await collectFeatures(inputs.items, extractor as Extractor, hooks.onItem, hooks.signal);
      feats.failed.unshift(...inputs.errors);
      return feats;
    };
    let train = await read(o.manifest, o.manifestBaseDir);
    const seed = o.training?.seed ?? 42;
    const val: SplitSpec | LabelledFeatures = o.valManifest
      ? await read(o.valManifest)
      : o.split?.column
        ? { kind: 'column', column: o.split.column, valValues: o.split.valValues ?? [] }
        : o.split?.groupColumn
          ? { kind: 'group', column: o.split.groupColumn, fraction: o.split.fraction ?? 0.2, seed }
          : { kind: 'stratified', fraction: o.split?.fraction ?? 0.2, seed };
    let val2 = val;
    const skipped = [...train.failed, ...('failed' in val ? val.failed : [])];
    if (hooks.signal?.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
    let streamChoice: StreamChoice | undefined;
    if (requested === 'auto' && streamExtractor) {
      const { candidateSets, chooseStreams } = await import('./stream-choice.js');
      const first = train.items[0];
      const speeds = first ? await streamExtractor.measureSpeeds(first.path) : {};
      streamChoice = await chooseStreams({
        extractor,
        data: train,
        val,
        candidates: candidateSets(streamExtractor.streams),
        seeds: o.autoSeeds ?? [seed, seed + 1, seed + 2],
        head: o.head ?? {},
        training: o.training ?? {},
        speeds,
        ...(hooks.signal ? { signal: hooks.signal } : {}),
      });
      train = sf.withStreams(train, streamChoice.chosen);
      if ('examples' in val) val2 = sf.withStreams(val, streamChoice.chosen);
    }
    const id = o.id ?? o.register ?? basename(resolve(o.out as string));
    // augmentation: copies of the training rows only (split first, so validation stays real clips)
    let trainRows = train;
    let valRows = val2;
    let augmented: { data: LabelledFeatures; stats: ExtractStats } | undefined;
    if (o.augment && ((o.augment.jitter ?? 0) > 0 || o.augment.flip)) {
      ({ train: trainRows, val: valRows, augmented } = await augmentTrainingRows(train, val, extractor as Extractor, o.augment, hooks.onItem, hooks.signal));
      if (hooks.signal?.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
    }
    const result = await trainHead({
      extractor,
      train: trainRows,
      val: valRows,
      id,
      head: o.head ?? {},
      training: o.training ?? {},
      ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
      ...(o.unknownRule ? { unknownRule: o.unknownRule } : {}),
      ...(hooks.onEpoch ? { onEpoch: hooks.onEpoch } : {}),
      ...(hooks.signal ? { signal: hooks.signal } : {}),
    });
    const head = result.head;
    try {
      // cancelled while training: the best epoch so far is kept (as a version that is not promoted)
      const cancelled = hooks.signal?.aborted === true;
      if (cancelled && result.epochs.length === 0) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled before its first epoch');
      head.annotate({
        training: {
          ...(cancelled ? { cancelled: { afterEpoch: result.epochs.length, bestEpoch: result.bestEpoch } } : {}),
          ...(augmented ? { augment: { ...o.augment, examples: augmented.data.examples.length }, split: 'examples' in val ? { kind: 'manifest' } : val } : {}),
          ...(streamChoice ? { streamChoice } : {}),
          manifest: resolve(o.manifest),
          manifestSha256: (await sha256File(resolve(o.manifest))) ?? dataHash(train.items),
          ...(o.valManifest ? { valManifest: resolve(o.valManifest), valManifestSha256: await sha256File(resolve(o.valManifest)) } : {}),
          sampling: formatSampling(policy),
        },
      });
      const dirs: string[] = [];
      let registered: TrainingResult['registered'] = null;
      if (registry && o.register) {
        const r = await registry.register(head, o.register, cancelled ? { promote: false, promoteFirst: false } : { promote: o.promote === true });
        registered = { name: o.register, version: r.version, promoted: r.promoted };
        dirs.push(r.dir);
        if (o.out) {
          await mkdir(resolve(o.out), { recursive: true });
          for (const f of ['model.json', 'weights.bin', 'metadata.json']) await copyFile(join(r.dir, f), join(resolve(o.out), f));
          dirs.push(resolve(o.out));
        }
      } else {
        const out = resolve(o.out as string);
        await mkdir(dirname(out), { recursive: true });
        await head.save(out);
        dirs.push(out);
      }
      if (result.validation && result.valMetrics && o.report !== false) {
        const v = result.validation;
        const truth = v.labels.map((l) => head.labels.indexOf(l));
        const { buildEvalReport, writeEvalReport } = await import('./evaluate.js');
        const report = buildEvalReport({ metrics: result.valMetrics, probs: v.probs, truth, items: v.items, meta: head.metadata, failed: [], source: `validation rows of ${o.valManifest ?? o.manifest}`, ...(result.baseline ? { baseline: { head: 'mean' as const, ...result.baseline, trainN: result.trainN, trainSource: o.manifest } } : {}) });
        await writeEvalReport(dirs, report, { items: v.items, sampling: { policy, crop: geometry.crop }, tools: rt.tools });
      }
      return {
        modelDir: dirs[0] as string,
        version: head.metadata.version,
        id: head.metadata.id,
        metrics: { validation: result.valMetrics ? summarize(result.valMetrics) : null, baseline: result.baseline ?? null, unknownThreshold: head.metadata.unknownThreshold ?? 0 },
        labels: head.labels,
        trainN: result.trainN,
        valN: result.valN,
        epochs: result.epochs.length,
        bestEpoch: result.bestEpoch,
        copies: dirs.slice(1),
        registered,
        skipped,
        cancelled,
        features: { ...extractor.stats },
        ...(augmented ? { augmented: { examples: augmented.data.examples.length, ...augmented.stats } } : {}),
        streams: head.streams.map((s) => s.id),
        ...(streamChoice ? { streamChoice } : {}),
      };
    } finally {
      head.dispose();
    }
  } finally {
    await extractor.dispose();
  }
}
