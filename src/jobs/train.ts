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
import { readLabelledData, type InputError, type InputItem } from '../features/inputs.js';
import { DEFAULT_CROP, DEFAULT_SAMPLING, formatSampling, type CropMode, type SamplingPolicy } from '../media/sampling.js';
import { BACKBONE_SPECS } from '../ml/backbone-specs.js';
import { MODEL_NAME_PATTERN, ModelRegistry } from '../ml/registry.js';
import { createExtractor, runtimeFromConfig, type RuntimeOptions } from './runtime.js';
import { type EpochLog, type HeadOptions, type TrainOptions } from '../ml/head.js';
import { type UnknownRule } from '../ml/metrics.js';
import { DEFAULT_STREAMS, type StreamId } from '../features/streams.js';
import type { StreamExtractor } from '../features/stream-extract.js';
import type { StreamScreen } from './stream-features.js';
import type { StreamChoice } from './stream-choice.js';
import { augmentTrainingRows, type AugmentOptions } from './augment.js';
import { trainEnsemble, type TrainEnsembleResult } from './ensemble.js';
import { collectFeatures, dataHash, summarize, type LabelledFeatures, type SplitSpec } from './head-training.js';

export { DEFAULT_TRAIN_FEATURE } from '../config/index.js';
// the training use case's parts, re-exported for the modules and tests that import them from here
export * from './head-training.js';
export * from './augment.js';
export * from './cross-validation.js';

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
  /** The ensemble's heads: each one's seed, validation top-1 and best epoch (`epochs`/`bestEpoch` above are the first's). */
  members: Array<{ seed: number; valTop1: number | undefined; bestEpoch: number }>;
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
  let screened: StreamScreen[] | undefined;
  const trainInputs = await readLabelledData(o.manifest, undefined, o.manifestBaseDir);
  if (requested === 'auto' || !sf.isRgbOnly(requested)) {
    if (o.augment && ((o.augment.jitter ?? 0) > 0 || o.augment.flip)) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `--augment works with --streams rgb only (the streams here: ${requested === 'auto' ? 'auto' : requested.join(',')})`);
    // auto: every stream this build can load is a candidate, keypoint streams that see something in the data
    let streams: StreamId[] = requested === 'auto' ? [] : [...requested];
    if (requested === 'auto') ({ kept: streams, screened } = await sf.screenKeypointStreams(rt, policy, geometry, trainInputs.items, o.autoStreams, hooks.signal));
    streamExtractor = await sf.createStreamExtractor(rt, policy, geometry, streams);
  }
  const extractor = streamExtractor ?? (await createExtractor(rt, policy, geometry));
  try {
    const read = async (inputs: Awaited<ReturnType<typeof readLabelledData>>): Promise<LabelledFeatures> => {
      const feats = streamExtractor ? await sf.collectStreamFeatures(inputs.items, streamExtractor, hooks.onItem, hooks.signal) : await collectFeatures(inputs.items, extractor as Extractor, hooks.onItem, hooks.signal);
      feats.failed.unshift(...inputs.errors);
      return feats;
    };
    let train = await read(trainInputs);
    const seed = o.training?.seed ?? 42;
    const val: SplitSpec | LabelledFeatures = o.valManifest
      ? await read(await readLabelledData(o.valManifest))
      : o.split?.column
        ? { kind: 'column', column: o.split.column, valValues: o.split.valValues ?? [] }
        : o.split?.groupColumn
          ? { kind: 'group', column: o.split.groupColumn, fraction: o.split.fraction ?? 0.2, seed }
          : { kind: 'stratified', fraction: o.split?.fraction ?? 0.2, seed };
    const skipped = [...train.failed, ...('failed' in val ? val.failed : [])];
    if (hooks.signal?.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
    let streamChoice: StreamChoice | undefined;
    const id = o.id ?? o.register ?? basename(resolve(o.out as string));
    let result: TrainEnsembleResult;
    let augmented: { data: LabelledFeatures; stats: ExtractStats } | undefined;
    if (requested === 'auto' && streamExtractor) {
      // every candidate set trains the ensemble train would; the best one's is the model
      const { chooseStreams } = await import('./stream-choice.js');
      const first = train.items[0];
      const speeds = first ? await streamExtractor.measureSpeeds(first.path) : {};
      const chosen = await chooseStreams({
        extractor,
        data: train,
        val,
        id,
        head: o.head ?? {},
        training: o.training ?? {},
        speeds,
        ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
        ...(o.unknownRule ? { unknownRule: o.unknownRule } : {}),
        ...(hooks.onEpoch ? { onEpoch: hooks.onEpoch } : {}),
        ...(hooks.signal ? { signal: hooks.signal } : {}),
      });
      streamChoice = { ...chosen.choice, ...(screened ? { screened } : {}) };
      result = chosen.result;
      train = sf.withStreams(train, streamChoice.chosen);
    } else {
      // augmentation: copies of the training rows only (split first, so validation stays real clips)
      let trainRows = train;
      let valRows = val;
      if (o.augment && ((o.augment.jitter ?? 0) > 0 || o.augment.flip)) {
        ({ train: trainRows, val: valRows, augmented } = await augmentTrainingRows(train, val, extractor as Extractor, o.augment, hooks.onItem, hooks.signal));
        if (hooks.signal?.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
      }
      result = await trainEnsemble({
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
    }
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
        members: result.members,
      };
    } finally {
      head.dispose();
    }
  } finally {
    await extractor.dispose();
  }
}
