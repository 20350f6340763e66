/**
 * The temporal head: a recurrent classifier over a (masked, padded) sequence of frame features.
 *
 * [feature transform: temporal differences] → standardise → Masking → projection → [LSTM | GRU]
 * (optionally bidirectional, stacked) → [last state | masked attention pooling over the states]
 * → dropout → softmax, in tfjs-layers. New heads use framewise's fused LSTM layer (fused-lstm.ts:
 * the same computation as tf.layers.lstm in far fewer kernels) and a cheaper masking layer
 * (sequence-masking.ts); heads saved before keep the tfjs-layers layers their model.json names.
 * Training is a small custom loop so that it can do what `model.fit` cannot here: gradient
 * clipping by global norm, per-sample class weights, early stopping that restores the best
 * weights, a seeded shuffle and seeded dropout masks (a fresh mask per batch, drawn from the
 * training seed): the same data, seed and backend train the same weights, bit for bit on the CPU
 * backends. Features are standardised with the training set's mean/std,
 * which are saved with the model.
 *
 * Saved as a directory: `model.json` + `weights.bin` (tfjs format) + `metadata.json`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { FramewiseError } from '../errors/index.js';
import { balancedClassWeights, createRng, shuffleInPlace } from './split.js';
import { argmax } from './metrics.js';
import { folderLoader } from './tf-io.js';
import { SAMPLING_SCHEMA, CROP_MODES } from '../media/sampling.js';
import { FEATURE_KINDS, type BackboneInfo } from './backbone.js';
import { tf, initTfjs } from './tfjs-runtime.js';
import { MaskedAttentionPooling } from './attention-pooling.js';
import { MaskedMeanPooling } from './mean-pooling.js';
import { FusedLstm } from './fused-lstm.js';
import { SequenceMasking } from './sequence-masking.js';
import { StreamSlice } from './stream-slice.js';
import { inputSpans, layoutInputDim, transformLayout, type InputSpan, type StreamLayout } from './stream-layout.js';
import { STREAM_IDS } from '../features/streams.js';
import { installWasmMatMulFix } from './tfjs-wasm-matmul.js';
import { installWasmSliceFix } from './tfjs-wasm-slice.js';
import type { TfjsBackendChoice } from '../config/index.js';

export const HEAD_FORMAT_VERSION = 1;

/** Frame-feature transforms applied before standardisation (identically at train and predict time). */
export const TEMPORAL_DIFFS = ['none', 'append', 'only'] as const;
export type TemporalDiff = (typeof TEMPORAL_DIFFS)[number];
/** How a head over several streams fuses them. */
export const FUSIONS = ['early', 'late'] as const;
export type Fusion = (typeof FUSIONS)[number];
/** How the recurrent states become one vector. */
export const POOLINGS = ['last', 'attention'] as const;
export type Pooling = (typeof POOLINGS)[number];
/** What joins the recurrent state before the softmax. */
export const SUMMARIES = ['none', 'mean'] as const;
export type Summary = (typeof SUMMARIES)[number];

export const HEAD_OPTIONS_SCHEMA = z.object({
  /** Recurrent cell, or `mean`: the baseline that averages the frames (order-blind) then applies a softmax layer. */
  cell: z.enum(['lstm', 'gru', 'mean']).default('lstm'),
  units: z.number().int().min(1).max(4096).default(128),
  layers: z.number().int().min(1).max(4).default(1),
  /** Default true (with `grid` features and `temporalDiff: only`): the best head over 3 seeds on surv_fight (docs/training.md). */
  bidirectional: z.boolean().default(true),
  dropout: z.number().min(0).max(0.9).default(0.3),
  /** Units of a per-frame dense projection (ReLU) before the recurrent layers; 0 = none. Cuts training time ~4× on 1792-d features and regularises. */
  projection: z.number().int().min(0).max(4096).default(64),
  /**
   * `last`: the last recurrent state (of each direction). `attention`: a learned, masked softmax
   * attention over every step's state (padded steps get exactly zero weight).
   */
  pooling: z.enum(POOLINGS).default('last'),
  /**
   * Frame-to-frame feature differences d_t = x_t − x_{t−1} (d_0 = 0): `append` feeds [x_t, d_t]
   * (twice the input size), `only` feeds d_t, `none` feeds x_t. Default `only` (with `grid`
   * features): the best recurrent head on surv_fight and 100 % on the synthetic order and
   * position tasks (docs/training.md). For classes told apart by appearance rather than motion,
   * try `append` or `none`.
   */
  temporalDiff: z.enum(TEMPORAL_DIFFS).default('only'),
  /**
   * How a head over several streams fuses them: `early`, each stream standardised and projected
   * on its own, concatenated per time step into the recurrent layers; `late`, one recurrent head
   * per stream, their class probabilities averaged. One stream: no effect.
   */
  fusion: z.enum(FUSIONS).default('early'),
  /**
   * An order-blind summary beside the recurrent state: `mean`, the masked mean over the steps of
   * the frame features themselves (their levels, whatever `temporalDiff` feeds the recurrent
   * layers), concatenated with the recurrent state before the softmax. `none`: the recurrent
   * state alone (the default: with it, motion on egogestar_dev fell from 88.6 to 80.7 %; README
   * "Accuracy").
   */
  summary: z.enum(SUMMARIES).default('none'),
});
export type HeadOptions = z.infer<typeof HEAD_OPTIONS_SCHEMA>;

/**
 * Head options with defaults filled in. The `mean` baseline stays order-blind unless asked
 * otherwise: without an explicit `temporalDiff` it uses `none` (the mean of frame differences
 * would carry the direction of time: (x_last − x_first) / T).
 */
export function parseHeadOptions(input: Partial<HeadOptions> = {}): HeadOptions {
  const withBaseline = input.cell === 'mean' && input.temporalDiff === undefined ? { ...input, temporalDiff: 'none' as const } : input;
  return HEAD_OPTIONS_SCHEMA.parse(withBaseline);
}

/** Head options as stored in metadata: fields added later default to what older heads did. */
export const STORED_HEAD_OPTIONS_SCHEMA = HEAD_OPTIONS_SCHEMA.extend({
  bidirectional: z.boolean().default(false),
  pooling: z.enum(POOLINGS).default('last'),
  temporalDiff: z.enum(TEMPORAL_DIFFS).default('none'),
  fusion: z.enum(FUSIONS).default('early'),
  summary: z.enum(SUMMARIES).default('none'),
});

/** A head's per-frame streams as recorded in its metadata (absent: the backbone's rgb features alone). */
export const STREAM_LAYOUT_SCHEMA = z.array(z.object({ id: z.enum(STREAM_IDS), version: z.string(), dim: z.number().int().positive(), masked: z.boolean() })).min(1);

export const TRAIN_OPTIONS_SCHEMA = z.object({
  epochs: z.number().int().min(1).max(10_000).default(60),
  batchSize: z.number().int().min(1).max(4096).default(16),
  learningRate: z.number().positive().max(1).default(1e-3),
  clipNorm: z.number().positive().default(1),
  patience: z.number().int().min(1).default(10),
  classWeights: z.enum(['balanced', 'none']).default('balanced'),
  /** Draw every batch class-balanced (sampling with replacement, classes equally likely) instead of weighting the loss; class weights are then not applied. */
  balancedSampling: z.boolean().default(false),
  seed: z.number().int().min(0).default(42),
  /**
   * Heads trained (seeds seed … seed + members − 1, each with its own validation split) and
   * averaged into one: 3 scored 1.0 point above one on surv_fight and 4.6 on egogestar_dev
   * (motion, seed 1; README "Accuracy"); 1 trains a single head.
   */
  members: z.number().int().min(1).max(16).default(3),
});
export type TrainOptions = z.infer<typeof TRAIN_OPTIONS_SCHEMA>;

export const HEAD_METADATA_SCHEMA = z.object({
  formatVersion: z.literal(HEAD_FORMAT_VERSION),
  id: z.string().min(1),
  version: z.string().min(1),
  created: z.string(),
  labels: z.array(z.string().min(1)).min(2),
  backbone: z.object({ id: z.string(), version: z.string(), dim: z.number().int().positive(), featureKind: z.enum(FEATURE_KINDS) }),
  sampling: z.object({ policy: SAMPLING_SCHEMA, size: z.number().int().positive(), crop: z.enum(CROP_MODES) }),
  sequenceLength: z.number().int().positive(),
  /** The per-frame streams the head reads, in input order (absent: rgb alone, the backbone's features). */
  streams: STREAM_LAYOUT_SCHEMA.optional(),
  head: STORED_HEAD_OPTIONS_SCHEMA,
  training: z.record(z.string(), z.unknown()).default({}),
  metrics: z.record(z.string(), z.unknown()).default({}),
  /** Feature mean/std of the head's input (after the temporal-difference transform). */
  normalization: z.object({ mean: z.array(z.number()), std: z.array(z.number()) }),
  /** A prediction whose top probability is below this is reported as `unknown` (0 = never). Chosen on validation data. */
  unknownThreshold: z.number().min(0).max(1).optional(),
  /** How `unknownThreshold` was chosen (e.g. `macro-f1`, `precision>=0.9`), with its validation figures. */
  unknownRule: z.record(z.string(), z.unknown()).optional(),
  /** Several heads in one (their class probabilities averaged), each trained with its own seed and validation split. */
  ensemble: z.object({ members: z.number().int().min(2), seeds: z.array(z.number().int()), valTop1: z.array(z.number()).optional(), bestEpochs: z.array(z.number().int()).optional() }).optional(),
});
export type HeadMetadata = z.infer<typeof HEAD_METADATA_SCHEMA>;

/** One training/eval example: `count` frames of `dim` features, row-major. */
export interface SequenceExample {
  data: Float32Array;
  count: number;
}

export interface EpochLog {
  /** Which head of several is training (ensemble members, `--streams auto` candidates), when there are several. */
  member?: { index: number; of: number; label?: string };
  epoch: number;
  loss: number;
  acc: number;
  valLoss: number | undefined;
  valAcc: number | undefined;
  ms: number;
}

export interface TrainResult {
  epochsRun: number;
  bestEpoch: number;
  history: EpochLog[];
}

/**
 * The transform of the frame features that makes the head's input: the `temporalDiff` option,
 * except that a `mean` summary over differences-only recurrent input needs the levels too
 * (`append`: [x_t, d_t]; the recurrent layers read d_t, the summary x_t). The `mean` cell has no
 * recurrent layers: its input is `temporalDiff`'s.
 */
export function inputDiff(head: Pick<HeadOptions, 'cell' | 'temporalDiff' | 'summary'>): TemporalDiff {
  return head.cell !== 'mean' && head.summary === 'mean' && head.temporalDiff === 'only' ? 'append' : head.temporalDiff;
}

/** Size of one step of the head's input for backbone features of size `dim`. */
export function headInputDim(dim: number, temporalDiff: TemporalDiff): number {
  return temporalDiff === 'append' ? 2 * dim : dim;
}

/**
 * The temporal-difference transform of one example (`none` returns it unchanged). d_0 = 0, so a
 * clip of one frame gives one all-difference-zero step.
 */
export function applyTemporalDiff(ex: SequenceExample, dim: number, mode: TemporalDiff): SequenceExample {
  if (mode === 'none') return ex;
  const out = headInputDim(dim, mode);
  const data = new Float32Array(ex.count * out);
  for (let t = 0; t < ex.count; t++) {
    const src = t * dim;
    const dst = t * out;
    const diffAt = mode === 'append' ? dst + dim : dst;
    if (mode === 'append') data.set(ex.data.subarray(src, src + dim), dst);
    if (t > 0) for (let d = 0; d < dim; d++) data[diffAt + d] = (ex.data[src + d] as number) - (ex.data[src - dim + d] as number);
  }
  return { data, count: ex.count };
}

/**
 * Normalisation (mean/std per input dimension) for a head with these options, fitted on raw
 * examples. With a multi-stream `layout`, each stream's block is standardised on its own values
 * (per dimension) and presence values are left as they are (mean 0, std 1).
 */
export function fitNormalization(examples: readonly SequenceExample[], dim: number, head: Partial<HeadOptions> = {}, layout?: StreamLayout): { mean: Float32Array; std: Float32Array } {
  const mode = inputDiff(parseHeadOptions(head));
  if (layout && isFusedLayout(layout)) {
    const n = computeNormalization(
      examples.map((ex) => transformLayout(ex, layout, mode)),
      layoutInputDim(layout, mode),
    );
    for (const span of inputSpans(layout, mode)) {
      if (span.maskAt === undefined) continue;
      n.mean[span.maskAt] = 0;
      n.std[span.maskAt] = 1;
    }
    return n;
  }
  return computeNormalization(
    examples.map((ex) => applyTemporalDiff(ex, dim, mode)),
    headInputDim(dim, mode),
  );
}

/**
 * Whether a head's input is laid out per stream (several streams, or a keypoint stream with its
 * presence value); one appearance stream (rgb or motion alone) is the plain single-block input.
 */
export function isFusedLayout(layout: StreamLayout | undefined): boolean {
  return layout !== undefined && (layout.length > 1 || layout.some((s) => s.masked));
}

/**
 * Build the padded [n, T, dim] batch, standardised; padded steps stay all-zero (masked). With
 * `spans` (a fused head), a masked stream's block is zero at steps where its presence value is 0.
 */
export function buildBatch(examples: readonly SequenceExample[], T: number, dim: number, mean: Float32Array, std: Float32Array, spans?: readonly InputSpan[]): Float32Array {
  const masked = (spans ?? []).filter((s) => s.maskAt !== undefined);
  const out = new Float32Array(examples.length * T * dim);
  examples.forEach((ex, b) => {
    const steps = Math.min(ex.count, T);
    for (let t = 0; t < steps; t++) {
      const src = t * dim;
      const dst = (b * T + t) * dim;
      for (let d = 0; d < dim; d++) {
        const v = ((ex.data[src + d] as number) - (mean[d] as number)) / (std[d] as number);
        // an exact zero would read as padding to the Masking layer
        out[dst + d] = v === 0 ? 1e-6 : v;
      }
      for (const s of masked) if ((ex.data[src + (s.maskAt as number)] as number) <= 0) out.fill(0, dst + s.offset, dst + (s.maskAt as number));
    }
  });
  return out;
}

/** Per-dimension mean and std over every real frame of the examples. */
export function computeNormalization(examples: readonly SequenceExample[], dim: number): { mean: Float32Array; std: Float32Array } {
  const sum = new Float64Array(dim);
  const sq = new Float64Array(dim);
  let n = 0;
  for (const ex of examples) {
    for (let t = 0; t < ex.count; t++) {
      for (let d = 0; d < dim; d++) {
        const v = ex.data[t * dim + d] as number;
        sum[d] = (sum[d] as number) + v;
        sq[d] = (sq[d] as number) + v * v;
      }
      n++;
    }
  }
  const mean = new Float32Array(dim);
  const std = new Float32Array(dim);
  for (let d = 0; d < dim; d++) {
    const m = n > 0 ? (sum[d] as number) / n : 0;
    mean[d] = m;
    std[d] = Math.sqrt(Math.max(n > 0 ? (sq[d] as number) / n - m * m : 1, 0)) + 1e-3;
  }
  return { mean, std };
}

/** Mean of the real (unpadded) frames of each example, standardised: [n, dim]. */
export function buildMeanBatch(examples: readonly SequenceExample[], T: number, dim: number, mean: Float32Array, std: Float32Array): Float32Array {
  const out = new Float32Array(examples.length * dim);
  examples.forEach((ex, b) => {
    const steps = Math.max(1, Math.min(ex.count, T));
    for (let t = 0; t < steps; t++) for (let d = 0; d < dim; d++) out[b * dim + d] = (out[b * dim + d] as number) + (ex.data[t * dim + d] as number);
    for (let d = 0; d < dim; d++) out[b * dim + d] = ((out[b * dim + d] as number) / steps - (mean[d] as number)) / (std[d] as number);
  });
  return out;
}

/**
 * A seed for tfjs's normal-distribution initialisers (orthogonal): they treat 0 as "no seed" and
 * draw from Math.random, so 0 is mapped to a fixed non-zero value.
 */
export function normalSeed(seed: number): number {
  return seed === 0 ? 0x2545f491 : seed;
}

/** The tfjs-layers dropout layers of a model (their `seed` is read at every call). */
function dropoutLayers(model: tf.LayersModel): Array<{ seed?: number }> {
  return model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as Array<{ seed?: number }>;
}

/**
 * Give every dropout layer its own seed for the next batch (drawn from `rng`), or clear them
 * (`rng` undefined: after training, so the saved topology carries no seed). A fixed seed in
 * tf.layers.dropout would repeat one mask at every call; unseeded, masks come from Math.random.
 */
export function seedDropout(model: tf.LayersModel, rng: (() => number) | undefined): void {
  for (const layer of dropoutLayers(model)) {
    if (rng) layer.seed = 1 + Math.floor(rng() * 0x7ffffffe);
    else delete layer.seed;
  }
}

/**
 * Where one stream's blocks lie in the head's input step: its recurrent input (what the recurrent
 * layers read) and its levels (the frame features themselves, for a `mean` summary).
 */
interface BlockSlices {
  id: string;
  recurrent: { offset: number; width: number };
  level: { offset: number; width: number };
}

/**
 * The slices of each stream's block. A block holds [x_t] (`none`), [d_t] (`only`), [x_t, d_t]
 * (`append`, or `only` with a `mean` summary: the recurrent layers then read d_t alone); a
 * keypoint block [positions, velocities, presence] is read whole, its positions are its levels.
 */
function blockSlices(opts: HeadOptions, inputDim: number, spans: readonly InputSpan[] | undefined, layout: StreamLayout | undefined): BlockSlices[] {
  const mode = inputDiff(opts);
  const blocks = spans ?? [{ id: layout?.[0]?.id ?? 'rgb', offset: 0, width: inputDim } as InputSpan];
  return blocks.map((span, i) => {
    const entry = layout?.[i];
    const keypoint = span.maskAt !== undefined || entry?.masked === true;
    const dim = entry?.dim ?? (mode === 'append' ? span.width / 2 : span.width);
    if (keypoint) return { id: span.id, recurrent: { offset: span.offset, width: span.width }, level: { offset: span.offset, width: dim } };
    const diffOnly = opts.temporalDiff === 'only' && mode === 'append';
    return {
      id: span.id,
      recurrent: diffOnly ? { offset: span.offset + dim, width: dim } : { offset: span.offset, width: span.width },
      level: { offset: span.offset, width: dim },
    };
  });
}

const slice = (x: tf.SymbolicTensor, at: { offset: number; width: number }, whole: number, name: string): tf.SymbolicTensor =>
  at.offset === 0 && at.width === whole ? x : (new StreamSlice({ offset: at.offset, width: at.width, name }).apply(x) as tf.SymbolicTensor);

/**
 * A named layer's name within one head: the head's seed is part of it, so that heads of one
 * ensemble (different seeds) can sit in one saved model without two weights of the same name.
 */
const layerName = (base: string, seed: number): string => `${base}_s${seed}`;

/** The `mean` summary of some blocks: the masked mean over the steps of each block's levels, side by side. */
function summaryOf(masked: tf.SymbolicTensor, blocks: readonly BlockSlices[], whole: number, suffix: string, seed: number): tf.SymbolicTensor {
  const means = blocks.map((b) => new MaskedMeanPooling({ name: layerName(`summary_mean_${b.id}${suffix}`, seed) }).apply(slice(masked, b.level, whole, layerName(`summary_levels_${b.id}${suffix}`, seed))) as tf.SymbolicTensor);
  return means.length === 1 ? (means[0] as tf.SymbolicTensor) : (tf.layers.concatenate({ axis: -1, name: layerName(`summary${suffix}`, seed) }).apply(means) as tf.SymbolicTensor);
}

function buildModel(T: number, inputDim: number, numClasses: number, opts: HeadOptions, seed: number, spans?: readonly InputSpan[], layout?: StreamLayout): tf.LayersModel {
  if (opts.cell !== 'mean' && spans && spans.length > 1) return buildFusedModel(T, inputDim, numClasses, opts, seed, spans, layout);
  if (opts.cell === 'mean') {
    const input = tf.input({ shape: [inputDim] });
    let x: tf.SymbolicTensor = input;
    if (opts.dropout > 0) x = tf.layers.dropout({ rate: opts.dropout }).apply(x) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: numClasses, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 7 }) }).apply(x) as tf.SymbolicTensor;
    return tf.model({ inputs: input, outputs: out });
  }
  const input = tf.input({ shape: [T, inputDim] });
  // the mask of tf.layers.masking({ maskValue: 0 }), computed far more cheaply (sequence-masking.ts)
  const masked = new SequenceMasking().apply(input) as tf.SymbolicTensor;
  const blocks = blockSlices(opts, inputDim, spans, layout);
  const block = blocks[0] as BlockSlices;
  let x = opts.summary === 'mean' ? slice(masked, block.recurrent, inputDim, layerName('recurrent_input', seed)) : masked;
  if (opts.projection > 0) {
    x = tf.layers.dense({ units: opts.projection, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 3 }) }).apply(x) as tf.SymbolicTensor;
    if (opts.dropout > 0) x = tf.layers.dropout({ rate: opts.dropout }).apply(x) as tf.SymbolicTensor;
  }
  const summary = opts.summary === 'mean' ? summaryOf(masked, blocks, inputDim, '', seed) : undefined;
  const out = recurrentTop(x, numClasses, opts, seed, '', summary);
  return tf.model({ inputs: input, outputs: out });
}

/**
 * A head over several streams. `early`: each stream's block → its own dense projection (ReLU) →
 * concatenated per step → dropout → the recurrent layers → softmax. `late`: each stream's block →
 * its own projection and recurrent layers and softmax; the class probabilities are averaged. A
 * `mean` summary (of every stream's levels, or of its own in `late`) joins the recurrent state.
 */
function buildFusedModel(T: number, inputDim: number, numClasses: number, opts: HeadOptions, seed: number, spans: readonly InputSpan[], layout?: StreamLayout): tf.LayersModel {
  const input = tf.input({ shape: [T, inputDim] });
  const masked = new SequenceMasking().apply(input) as tf.SymbolicTensor;
  const blocks = blockSlices(opts, inputDim, spans, layout);
  const project = (span: InputSpan, k: number): tf.SymbolicTensor => {
    const at = opts.summary === 'mean' ? (blocks[k] as BlockSlices).recurrent : { offset: span.offset, width: span.width };
    const x = new StreamSlice({ offset: at.offset, width: at.width, name: layerName(`stream_${span.id}`, seed) }).apply(masked) as tf.SymbolicTensor;
    if (opts.projection <= 0) return x;
    return tf.layers.dense({ units: opts.projection, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 3 + 1000 * k }), name: layerName(`projection_${span.id}`, seed) }).apply(x) as tf.SymbolicTensor;
  };
  const drop = (x: tf.SymbolicTensor): tf.SymbolicTensor => (opts.dropout > 0 ? (tf.layers.dropout({ rate: opts.dropout }).apply(x) as tf.SymbolicTensor) : x);
  if (opts.fusion === 'late') {
    const outs = spans.map((span, k) => {
      const summary = opts.summary === 'mean' ? summaryOf(masked, [blocks[k] as BlockSlices], inputDim, `_${span.id}`, seed) : undefined;
      return recurrentTop(drop(project(span, k)), numClasses, opts, seed + 1000 * k, `_${span.id}`, summary);
    });
    return tf.model({ inputs: input, outputs: tf.layers.average().apply(outs) as tf.SymbolicTensor });
  }
  const parts = spans.map((span, k) => project(span, k));
  const x = drop(tf.layers.concatenate({ axis: -1 }).apply(parts) as tf.SymbolicTensor);
  const summary = opts.summary === 'mean' ? summaryOf(masked, blocks, inputDim, '', seed) : undefined;
  return tf.model({ inputs: input, outputs: recurrentTop(x, numClasses, opts, seed, '', summary) });
}

/** The recurrent layers, pooling, dropout and softmax on a per-step input (with a summary beside the pooled state, when given). */
function recurrentTop(input: tf.SymbolicTensor, numClasses: number, opts: HeadOptions, seed: number, suffix = '', summary?: tf.SymbolicTensor): tf.SymbolicTensor {
  let x = input;
  const attention = opts.pooling === 'attention';
  for (let i = 0; i < opts.layers; i++) {
    const last = i === opts.layers - 1;
    const returnSequences = !last || attention;
    let layer: tf.layers.Layer;
    if (opts.cell === 'lstm') {
      // the same computation and initial weights as tf.layers.lstm (+ bidirectional concat), in far fewer kernels
      layer = new FusedLstm({ units: opts.units, bidirectional: opts.bidirectional, returnSequences, kernelSeed: seed + 11 * i, recurrentSeed: normalSeed(seed + 13 * i) });
    } else {
      const cell = tf.layers.gru({
        units: opts.units,
        returnSequences,
        kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 11 * i }),
        recurrentInitializer: tf.initializers.orthogonal({ seed: normalSeed(seed + 13 * i) }),
      });
      layer = opts.bidirectional ? tf.layers.bidirectional({ layer: cell, mergeMode: 'concat' }) : cell;
    }
    x = layer.apply(x) as tf.SymbolicTensor;
    if (opts.dropout > 0 && !(last && attention)) x = tf.layers.dropout({ rate: opts.dropout }).apply(x) as tf.SymbolicTensor;
  }
  if (attention) {
    x = new MaskedAttentionPooling({ units: Math.min(64, opts.units), seed: seed + 17, name: layerName(`attention_pooling${suffix}`, seed) }).apply(x) as tf.SymbolicTensor;
    if (opts.dropout > 0) x = tf.layers.dropout({ rate: opts.dropout }).apply(x) as tf.SymbolicTensor;
  }
  if (summary) {
    const s = opts.dropout > 0 ? (tf.layers.dropout({ rate: opts.dropout }).apply(summary) as tf.SymbolicTensor) : summary;
    x = tf.layers.concatenate({ axis: -1 }).apply([x, s]) as tf.SymbolicTensor;
  }
  return tf.layers.dense({ units: numClasses, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 7 }) }).apply(x) as tf.SymbolicTensor;
}

/** Weighted categorical cross-entropy on probabilities. */
function weightedLoss(probs: tf.Tensor, y: tf.Tensor, w: tf.Tensor): tf.Scalar {
  const ce = tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(probs, 1e-7, 1))), -1));
  return tf.div(tf.sum(tf.mul(ce, w)), tf.sum(w)) as tf.Scalar;
}

export class TemporalHead {
  private constructor(
    private readonly model: tf.LayersModel,
    readonly metadata: HeadMetadata,
    private readonly mean: Float32Array,
    private readonly std: Float32Array,
  ) {}

  get labels(): string[] {
    return this.metadata.labels;
  }

  /** A new, untrained head. */
  static async create(init: {
    labels: string[];
    backbone: Pick<BackboneInfo, 'id' | 'version' | 'dim' | 'featureKind'>;
    sampling: HeadMetadata['sampling'];
    sequenceLength: number;
    head?: Partial<HeadOptions>;
    seed?: number;
    id?: string;
    normalization: { mean: Float32Array; std: Float32Array };
    backend?: TfjsBackendChoice;
    /** The per-frame streams of the input (absent: the backbone's rgb features alone). */
    streams?: StreamLayout;
  }): Promise<TemporalHead> {
    await initTfjs(init.backend ?? 'auto');
    installWasmMatMulFix();
    installWasmSliceFix();
    if (init.labels.length < 2) throw new FramewiseError('FW_ERR_TRAIN_DATA', `a head needs at least two classes, got ${init.labels.length}`);
    const head = parseHeadOptions(init.head ?? {});
    const fused = init.streams && isFusedLayout(init.streams) ? init.streams : undefined;
    const inputDim = fused ? layoutInputDim(fused, inputDiff(head)) : headInputDim(init.streams?.[0]?.dim ?? init.backbone.dim, inputDiff(head));
    if (init.normalization.mean.length !== inputDim || init.normalization.std.length !== inputDim) {
      throw new FramewiseError('FW_ERR_INTERNAL', `normalization has ${init.normalization.mean.length} values, the head's input has ${inputDim} (use fitNormalization with the head options)`);
    }
    const model = buildModel(init.sequenceLength, inputDim, init.labels.length, head, init.seed ?? 42, fused ? inputSpans(fused, inputDiff(head)) : undefined, fused);
    const metadata: HeadMetadata = {
      formatVersion: HEAD_FORMAT_VERSION,
      id: init.id ?? 'head',
      version: 'untrained',
      created: new Date().toISOString(),
      labels: init.labels,
      backbone: { id: init.backbone.id, version: init.backbone.version, dim: init.backbone.dim, featureKind: init.backbone.featureKind },
      sampling: init.sampling,
      sequenceLength: init.sequenceLength,
      ...(init.streams ? { streams: init.streams } : {}),
      head,
      training: {},
      metrics: {},
      normalization: { mean: Array.from(init.normalization.mean), std: Array.from(init.normalization.std) },
    };
    return new TemporalHead(model, metadata, init.normalization.mean, init.normalization.std);
  }

  /**
   * One head from several trained on the same streams, labels, options and normalisation (an
   * ensemble): the class probabilities of the members are averaged. The members' models become
   * parts of the new head: use and dispose only the result.
   */
  static combine(members: readonly TemporalHead[], ensemble: NonNullable<HeadMetadata['ensemble']>): TemporalHead {
    const first = members[0];
    if (!first) throw new FramewiseError('FW_ERR_INTERNAL', 'an ensemble needs at least one member');
    if (members.length === 1) return first;
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    for (const m of members) {
      if (!same(m.metadata.labels, first.metadata.labels) || !same(m.metadata.head, first.metadata.head) || !same(m.metadata.streams, first.metadata.streams) || !same(Array.from(m.mean), Array.from(first.mean)) || !same(Array.from(m.std), Array.from(first.std))) {
        throw new FramewiseError('FW_ERR_INTERNAL', 'ensemble members must share labels, head options, streams and normalisation');
      }
    }
    const shape = (first.model.inputs[0] as tf.SymbolicTensor).shape.slice(1) as number[];
    const input = tf.input({ shape });
    const outs = members.map((m) => m.model.apply(input) as tf.SymbolicTensor);
    const model = tf.model({ inputs: input, outputs: tf.layers.average().apply(outs) as tf.SymbolicTensor });
    const metadata: HeadMetadata = { ...structuredClone(first.metadata), ensemble };
    return new TemporalHead(model, metadata, first.mean, first.std);
  }

  /** Load a saved head; `expect` (when given) must match its backbone id, version-independent dim and feature kind. */
  static async load(dir: string, expect?: Pick<BackboneInfo, 'id' | 'dim' | 'featureKind'>, backend?: TfjsBackendChoice): Promise<TemporalHead> {
    await initTfjs(backend ?? 'auto');
    installWasmMatMulFix();
    installWasmSliceFix();
    let raw: string;
    try {
      raw = await readFile(join(dir, 'metadata.json'), 'utf8');
    } catch (err) {
      throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no model at ${dir} (metadata.json missing)`, { cause: err });
    }
    let metadata: HeadMetadata;
    try {
      metadata = HEAD_METADATA_SCHEMA.parse(JSON.parse(raw));
    } catch (err) {
      throw new FramewiseError('FW_ERR_MODEL_INVALID', `invalid metadata.json in ${dir}: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`, { cause: err });
    }
    if (expect) checkCompatible(metadata, expect, dir);
    let model: tf.LayersModel;
    try {
      model = await tf.loadLayersModel(folderLoader(dir));
    } catch (err) {
      throw new FramewiseError('FW_ERR_MODEL_INVALID', `cannot load the head weights in ${dir}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return new TemporalHead(model, metadata, Float32Array.from(metadata.normalization.mean), Float32Array.from(metadata.normalization.std));
  }

  /** The model input for examples: padded sequences [n, T, dim], or frame means [n, dim] for the `mean` baseline. */
  private toInput(examples: readonly SequenceExample[], transformed = false): tf.Tensor {
    const { sequenceLength: T, head } = this.metadata;
    const dim = this.inputDim;
    const xs = transformed ? examples : this.transform(examples);
    if (head.cell === 'mean') return tf.tensor2d(buildMeanBatch(xs, T, dim, this.mean, this.std), [xs.length, dim]);
    return tf.tensor3d(buildBatch(xs, T, dim, this.mean, this.std, this.spans), [xs.length, T, dim]);
  }

  /** The streams' blocks of a fused head's input (undefined for a single-block input). */
  private get spans(): InputSpan[] | undefined {
    const { streams, head } = this.metadata;
    return streams && isFusedLayout(streams) ? inputSpans(streams, inputDiff(head)) : undefined;
  }

  /** The per-frame streams the head reads, in input order. */
  get streams(): StreamLayout {
    const { streams, backbone } = this.metadata;
    return streams ?? [{ id: 'rgb', version: `${backbone.id}@${backbone.version}:${backbone.featureKind}`, dim: backbone.dim, masked: false }];
  }

  /** Size of one input step (the backbone's dim, doubled when temporal differences are appended; per stream for a fused head). */
  get inputDim(): number {
    const { streams, head, backbone } = this.metadata;
    if (streams && isFusedLayout(streams)) return layoutInputDim(streams, inputDiff(head));
    return headInputDim(streams?.[0]?.dim ?? backbone.dim, inputDiff(head));
  }

  /** The feature transform of the head's options (temporal differences; per stream for a fused head), applied to raw features. */
  transform(examples: readonly SequenceExample[]): SequenceExample[] {
    const { backbone, head, streams } = this.metadata;
    if (streams && isFusedLayout(streams)) return examples.map((ex) => transformLayout(ex, streams, inputDiff(head)));
    return examples.map((ex) => applyTemporalDiff(ex, streams?.[0]?.dim ?? backbone.dim, inputDiff(head)));
  }

  /** The attention weights [n][T] of each example (only for `pooling: attention`); padded steps are 0. */
  async attentionWeights(examples: readonly SequenceExample[]): Promise<number[][]> {
    const layer = this.model.layers.find((l) => l instanceof MaskedAttentionPooling) as MaskedAttentionPooling | undefined;
    if (!layer) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'this head has no attention pooling');
    const idx = this.model.layers.indexOf(layer);
    const prev = this.model.layers[idx - 1] as tf.layers.Layer;
    const states = tf.model({ inputs: this.model.inputs, outputs: prev.output as tf.SymbolicTensor });
    const w = tf.tidy(() => {
      const x = this.toInput(examples);
      const h = states.predict(x) as tf.Tensor;
      const mask = tf.notEqual(tf.sum(tf.abs(x), -1), 0);
      return layer.attentionWeights(h, mask);
    });
    try {
      return (await w.array()) as number[][];
    } finally {
      w.dispose();
    }
  }

  /** Class probabilities for each example (rows of `labels.length`). */
  async predict(examples: readonly SequenceExample[], batchSize = 64): Promise<Float32Array[]> {
    return this.predictTransformed(this.transform(examples), batchSize);
  }

  private async predictTransformed(examples: readonly SequenceExample[], batchSize = 64): Promise<Float32Array[]> {
    const rows: Float32Array[] = [];
    for (let i = 0; i < examples.length; i += batchSize) {
      const chunk = examples.slice(i, i + batchSize);
      const probs = tf.tidy(() => {
        return this.model.predict(this.toInput(chunk, true)) as tf.Tensor2D;
      });
      try {
        const values = (await probs.data()) as Float32Array;
        const c = this.labels.length;
        for (let r = 0; r < chunk.length; r++) rows.push(values.slice(r * c, (r + 1) * c));
      } finally {
        probs.dispose();
      }
    }
    return rows;
  }

  /**
   * Train on examples with integer labels. Early stopping on validation loss (when a validation
   * set is given) restores the best epoch's weights. `signal` stops training between batches;
   * the best full epoch so far is restored (none when the first epoch was not finished).
   */
  async train(
    train: { examples: SequenceExample[]; labels: number[] },
    val: { examples: SequenceExample[]; labels: number[] } | undefined,
    optionsIn: Partial<TrainOptions>,
    onEpoch?: (log: EpochLog) => void | Promise<void>,
    signal?: AbortSignal,
  ): Promise<TrainResult> {
    const opts = TRAIN_OPTIONS_SCHEMA.parse(optionsIn);
    const c = this.labels.length;
    const classWeight = opts.classWeights === 'balanced' && !opts.balancedSampling ? balancedClassWeights(train.labels, c) : new Array<number>(c).fill(1);
    const trainX = this.transform(train.examples);
    const valX = val ? this.transform(val.examples) : undefined;
    const byClass = Array.from({ length: c }, (_, k) => train.labels.flatMap((y, i) => (y === k ? [i] : [])));
    const present = byClass.filter((ids) => ids.length > 0);
    const optimizer = tf.train.adam(opts.learningRate);
    const rng = createRng(opts.seed);
    // dropout masks: their own seeded stream, so the shuffle order does not depend on the layer count
    const dropoutRng = createRng((opts.seed ^ 0x5bd1e995) >>> 0);
    const variables = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
    const history: EpochLog[] = [];
    let best = { loss: Infinity, epoch: 0, weights: undefined as tf.Tensor[] | undefined };
    let sinceBest = 0;
    try {
      for (let epoch = 1; epoch <= opts.epochs; epoch++) {
        if (signal?.aborted) break;
        const t0 = Date.now();
        const order = opts.balancedSampling
          ? Array.from({ length: train.examples.length }, () => {
              const ids = present[Math.floor(rng() * present.length)] as number[];
              return ids[Math.floor(rng() * ids.length)] as number;
            })
          : shuffleInPlace(Array.from({ length: train.examples.length }, (_, i) => i), rng);
        let lossSum = 0;
        let correct = 0;
        for (let i = 0; i < order.length; i += opts.batchSize) {
          // let timers run between batches (a queue worker's lock renewal, cancellation checks)
          await new Promise<void>((r) => setImmediate(r));
          if (signal?.aborted) break;
          const idx = order.slice(i, i + opts.batchSize);
          seedDropout(this.model, dropoutRng);
          const batchLoss = tf.tidy(() => {
            const x = this.toInput(idx.map((k) => trainX[k] as SequenceExample), true);
            const yIdx = idx.map((k) => train.labels[k] as number);
            const y = tf.oneHot(tf.tensor1d(yIdx, 'int32'), c);
            const w = tf.tensor1d(yIdx.map((k) => classWeight[k] as number));
            let predsOut: tf.Tensor | undefined;
            const { value, grads } = tf.variableGrads(() => {
              const probs = this.model.apply(x, { training: true }) as tf.Tensor;
              predsOut = tf.keep(probs.argMax(-1));
              return weightedLoss(probs, y, w);
            }, variables);
            optimizer.applyGradients(clipByGlobalNorm(grads, opts.clipNorm) as tf.NamedTensorMap as Parameters<typeof optimizer.applyGradients>[0]);
            const preds = (predsOut as tf.Tensor).dataSync();
            (predsOut as tf.Tensor).dispose();
            preds.forEach((p, k) => {
              if (p === yIdx[k]) correct++;
            });
            return value.dataSync()[0] as number;
          });
          lossSum += batchLoss * idx.length;
        }
        if (signal?.aborted) break; // a cut-short epoch is not logged; the best full epoch is restored below
        const log: EpochLog = { epoch, loss: lossSum / order.length, acc: correct / order.length, valLoss: undefined, valAcc: undefined, ms: 0 };
        if (val && valX && val.examples.length > 0) {
          const probs = await this.predictTransformed(valX);
          let vl = 0;
          let vc = 0;
          probs.forEach((row, k) => {
            const yk = val.labels[k] as number;
            vl -= Math.log(Math.max(row[yk] as number, 1e-7));
            if (argmax(row) === yk) vc++;
          });
          log.valLoss = vl / probs.length;
          log.valAcc = vc / probs.length;
        }
        log.ms = Date.now() - t0;
        history.push(log);
        await onEpoch?.(log);
        const monitored = log.valLoss ?? log.loss;
        if (monitored < best.loss - 1e-4) {
          best.weights?.forEach((t) => t.dispose());
          best = { loss: monitored, epoch, weights: this.model.getWeights().map((t) => t.clone()) };
          sinceBest = 0;
        } else if (++sinceBest >= opts.patience && val) {
          break;
        }
      }
      if (best.weights) this.model.setWeights(best.weights);
    } finally {
      seedDropout(this.model, undefined);
      best.weights?.forEach((t) => t.dispose());
      optimizer.dispose();
    }
    this.metadata.training = { ...this.metadata.training, ...opts, epochsRun: history.length, bestEpoch: best.epoch };
    return { epochsRun: history.length, bestEpoch: best.epoch, history };
  }

  /** Record metrics/training facts and stamp a version (called before save). */
  annotate(fields: { id?: string; metrics?: Record<string, unknown>; training?: Record<string, unknown>; unknownThreshold?: number; unknownRule?: Record<string, unknown> }): void {
    if (fields.id) this.metadata.id = fields.id;
    if (fields.unknownThreshold !== undefined) this.metadata.unknownThreshold = fields.unknownThreshold;
    if (fields.unknownRule) this.metadata.unknownRule = fields.unknownRule;
    if (fields.metrics) this.metadata.metrics = { ...this.metadata.metrics, ...fields.metrics };
    if (fields.training) this.metadata.training = { ...this.metadata.training, ...fields.training };
  }

  /** Save to `dir` (model.json, weights.bin, metadata.json), replacing what was there. */
  async save(dir: string): Promise<void> {
    const created = new Date();
    this.metadata.created = created.toISOString();
    this.metadata.version = `${created.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
    await mkdir(tmp);
    try {
      await this.model.save(
        tf.io.withSaveHandler(async (artifacts) => {
          const weights = artifacts.weightData;
          const bytes = Buffer.from(weights instanceof ArrayBuffer ? weights : await new Blob(weights as ArrayBuffer[]).arrayBuffer());
          await writeFile(join(tmp, 'weights.bin'), bytes);
          const modelJson = { format: 'layers-model', generatedBy: 'framewise', modelTopology: artifacts.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }] };
          await writeFile(join(tmp, 'model.json'), JSON.stringify(modelJson));
          return { modelArtifactsInfo: { dateSaved: created, modelTopologyType: 'JSON' } };
        }),
      );
      await writeFile(join(tmp, 'metadata.json'), `${JSON.stringify(this.metadata, null, 2)}\n`);
      for (const f of ['weights.bin', 'model.json', 'metadata.json']) await rename(join(tmp, f), join(dir, f));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  dispose(): void {
    this.model.dispose();
  }
}

function clipByGlobalNorm(grads: tf.NamedTensorMap, clipNorm: number): tf.NamedTensorMap {
  return tf.tidy(() => {
    const list = Object.values(grads);
    const norm = tf.sqrt(tf.addN(list.map((g) => tf.sum(tf.square(g))))).dataSync()[0] as number;
    const scale = norm > clipNorm ? clipNorm / norm : 1;
    const out: tf.NamedTensorMap = {};
    for (const [name, g] of Object.entries(grads)) out[name] = scale === 1 ? g.clone() : tf.mul(g, scale);
    return out;
  });
}

export function checkCompatible(metadata: HeadMetadata, expect: Pick<BackboneInfo, 'id' | 'dim' | 'featureKind'>, where: string): void {
  const b = metadata.backbone;
  if (b.id !== expect.id || b.dim !== expect.dim || b.featureKind !== expect.featureKind) {
    throw new FramewiseError(
      'FW_ERR_MODEL_MISMATCH',
      `the head in ${where} was trained on backbone ${b.id} (${b.featureKind}, ${b.dim}-d) but the backbone in use is ${expect.id} (${expect.featureKind}, ${expect.dim}-d); use --backbone ${b.id} --feature ${b.featureKind}`,
    );
  }
}
