/**
 * Head and training options shared by `framewise train` and `framewise cv`: the flags, and their
 * translation into `HeadOptions` / `TrainOptions` (only what the user gave; the schemas' defaults
 * fill the rest).
 */
import { Option, InvalidArgumentError, type Command } from 'commander';
import type { AugmentOptions } from '../jobs/train.js';
import { FUSIONS, HEAD_OPTIONS_SCHEMA, POOLINGS, SUMMARIES, TEMPORAL_DIFFS, TRAIN_OPTIONS_SCHEMA, type Fusion, type HeadOptions, type Pooling, type Summary, type TemporalDiff, type TrainOptions } from '../ml/head.js';
import { parseStreams, STREAM_IDS, type StreamId } from '../features/streams.js';
import { parseUnknownRule, type UnknownRule } from '../ml/metrics.js';
import { nonNegativeInt, positiveInt, positiveNumber, rate } from './arg-parsers.js';

export interface HeadFlags {
  cell?: HeadOptions['cell'];
  units?: number;
  layers?: number;
  bidirectional?: boolean;
  dropout?: number;
  projection?: number;
  pooling?: Pooling;
  temporalDiff?: TemporalDiff;
  fusion?: Fusion;
  summary?: Summary;
  members?: number;
  epochs?: number;
  batch?: number;
  lr?: number;
  patience?: number;
  clipNorm?: number;
  classWeights?: 'balanced' | 'none';
  balancedSampling?: boolean;
  seed?: number;
}


export const unknownRuleArg = (v: string): UnknownRule => {
  const r = parseUnknownRule(v);
  if (!r) throw new InvalidArgumentError('expected macro-f1, precision:P (0 < P ≤ 1) or none');
  return r;
};

/** `--augment jitter:K,flip` (either part alone): augmented copies of the training rows. */
export const augmentArg = (v: string): AugmentOptions => {
  const out: AugmentOptions = {};
  for (const part of v.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^jitter(?::(\d+))?$/.exec(part);
    if (m) out.jitter = m[1] === undefined ? 2 : Number(m[1]);
    else if (part === 'flip') out.flip = true;
    else throw new InvalidArgumentError(`expected jitter[:K] and/or flip, e.g. jitter:2,flip (got '${part}')`);
  }
  if (out.jitter !== undefined && (out.jitter < 1 || out.jitter > 16)) throw new InvalidArgumentError('jitter copies: 1 to 16');
  return out;
};

/** `--streams rgb,motion` (any subset of the stream ids), or `auto` where allowed. */
export const streamsArg =
  (allowAuto: boolean) =>
  (v: string): StreamId[] | 'auto' => {
    if (v.trim() === 'auto') {
      if (allowAuto) return 'auto';
      throw new InvalidArgumentError(`expected a comma-separated subset of ${STREAM_IDS.join(', ')}`);
    }
    try {
      return parseStreams(v);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
    }
  };

/** Add the head and training flags (defaults shown are the schemas'). */
export function addHeadOptions(cmd: Command): Command {
  const h = HEAD_OPTIONS_SCHEMA.parse({});
  const t = TRAIN_OPTIONS_SCHEMA.parse({});
  return cmd
    .addOption(new Option('--cell <cell>', `recurrent cell, or mean (the order-blind mean-pooling baseline) (default ${h.cell})`).choices(['lstm', 'gru', 'mean']))
    .option('--units <n>', `units per recurrent layer (default ${h.units})`, positiveInt('--units'))
    .option('--layers <n>', `stacked recurrent layers (default ${h.layers})`, positiveInt('--layers'))
    .option('--bidirectional', `bidirectional recurrent layers (default ${h.bidirectional ? 'on' : 'off'})`)
    .option('--no-bidirectional', 'one direction only')
    .addOption(new Option('--pooling <how>', `last recurrent state, or masked attention pooling over all states (default ${h.pooling})`).choices(POOLINGS))
    .addOption(new Option('--temporal-diff <mode>', `frame-to-frame feature differences: none, append ([x_t, x_t − x_t−1]) or only (default ${h.temporalDiff})`).choices(TEMPORAL_DIFFS))
    .addOption(new Option('--fusion <how>', `several streams: early (per-stream projections concatenated per step into one recurrent head) or late (a head per stream, probabilities averaged) (default ${h.fusion})`).choices(FUSIONS))
    .addOption(new Option('--summary <how>', `an order-blind summary beside the recurrent state: mean (the masked mean of the frame features, whatever --temporal-diff feeds the recurrent layers) or none (default ${h.summary})`).choices(SUMMARIES))
    .option('--dropout <rate>', `dropout after the projection and each recurrent layer (default ${h.dropout})`, rate('--dropout'))
    .option('--projection <n>', `per-frame dense projection before the recurrent layers, 0 for none (default ${h.projection})`, nonNegativeInt('--projection'))
    .option('--epochs <n>', `maximum epochs (default ${t.epochs})`, positiveInt('--epochs'))
    .option('--batch <n>', `sequences per training batch (default ${t.batchSize})`, positiveInt('--batch'))
    .option('--lr <rate>', `Adam learning rate (default ${t.learningRate})`, positiveNumber('--lr'))
    .option('--patience <n>', `early-stopping patience in epochs on validation loss (default ${t.patience})`, positiveInt('--patience'))
    .option('--clip-norm <n>', `gradient clipping by global norm (default ${t.clipNorm})`, positiveNumber('--clip-norm'))
    .addOption(new Option('--class-weights <mode>', `weigh classes for imbalance (default ${t.classWeights})`).choices(['balanced', 'none']))
    .option('--balanced-sampling', 'draw class-balanced batches (with replacement) instead of weighting the loss')
    .option('--seed <n>', `seed for initialisation, split and shuffling (default ${t.seed})`, nonNegativeInt('--seed'))
    .option('--members <n>', `heads in the ensemble, each with its own seed (seed, seed+1, …) and validation split, averaged into one model; 1 trains a single head (default ${t.members})`, positiveInt('--members'));
}

export function headOptionsFrom(o: HeadFlags): Partial<HeadOptions> {
  return {
    ...(o.cell ? { cell: o.cell } : {}),
    ...(o.units ? { units: o.units } : {}),
    ...(o.layers ? { layers: o.layers } : {}),
    ...(o.bidirectional !== undefined ? { bidirectional: o.bidirectional } : {}),
    ...(o.pooling ? { pooling: o.pooling } : {}),
    ...(o.temporalDiff ? { temporalDiff: o.temporalDiff } : {}),
    ...(o.fusion ? { fusion: o.fusion } : {}),
    ...(o.summary ? { summary: o.summary } : {}),
    ...(o.dropout !== undefined ? { dropout: o.dropout } : {}),
    ...(o.projection !== undefined ? { projection: o.projection } : {}),
  };
}

export function trainOptionsFrom(o: HeadFlags): Partial<TrainOptions> {
  return {
    ...(o.epochs ? { epochs: o.epochs } : {}),
    ...(o.batch ? { batchSize: o.batch } : {}),
    ...(o.lr ? { learningRate: o.lr } : {}),
    ...(o.patience ? { patience: o.patience } : {}),
    ...(o.clipNorm ? { clipNorm: o.clipNorm } : {}),
    ...(o.classWeights ? { classWeights: o.classWeights } : {}),
    ...(o.balancedSampling ? { balancedSampling: true } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    ...(o.members !== undefined ? { members: o.members } : {}),
  };
}
