/**
 * `framewise models list|show|promote|rm` (the model registry) and `framewise cv` (k-fold
 * cross-validation of a head configuration on stored features).
 */
import { readdir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Option, InvalidArgumentError, type Command } from 'commander';
import type { Config } from '../config/index.js';
import { FramewiseError } from '../errors/index.js';
import { readLabelledData } from '../features/inputs.js';
import { createExtractor, runtimeFromConfig } from '../jobs/runtime.js';
import { collectFeatures, runCrossValidation, type AugmentOptions, type FoldSpec } from '../jobs/train.js';
import { CROP_MODES, DEFAULT_CROP, DEFAULT_SAMPLING, parseSampling, type CropMode } from '../media/sampling.js';
import { BACKBONE_IDS, ENGINES, FEATURE_KINDS, type BackboneId, type Engine, type FeatureKind } from '../ml/backbone.js';
import { BACKBONE_SPECS } from '../ml/backbone-specs.js';
import { ModelRegistry, parseModelRef, type VersionInfo } from '../ml/registry.js';
import { DEFAULT_TRAIN_FEATURE, TFJS_BACKENDS, type TfjsBackendChoice } from '../config/index.js';
import { createProgress } from './progress.js';
import { addHeadOptions, augmentArg, headOptionsFrom, streamsArg, trainOptionsFrom, type HeadFlags } from './train-options.js';
import type { Extractor } from '../features/extract.js';
import { DEFAULT_STREAMS, formatStreams, type StreamId } from '../features/streams.js';
import { collectStreamFeatures, createStreamExtractor, isRgbOnly, screenKeypointStreams } from '../jobs/stream-features.js';

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}
type Run = (fn: (config: Config) => Promise<number>) => Promise<void>;

const pct = (x: unknown): string => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : '-');

function validationOf(v: VersionInfo): { top1?: number; meanClassAccuracy?: number } {
  const m = v.metadata.metrics.validation as { top1?: number; meanClassAccuracy?: number } | undefined;
  return m ?? {};
}

function summaryOf(v: VersionInfo): Record<string, unknown> {
  const m = v.metadata;
  return {
    name: v.name,
    version: v.version,
    promoted: v.promoted,
    created: v.created,
    dir: v.dir,
    labels: m.labels,
    backbone: m.backbone,
    sampling: m.sampling,
    head: m.head,
    validation: m.metrics.validation ?? null,
    baseline: (m.metrics.baseline as { validation?: unknown } | undefined)?.validation ?? null,
    unknownThreshold: m.unknownThreshold ?? 0,
    data: { manifest: m.training.manifest ?? null, manifestSha256: m.training.manifestSha256 ?? null, dataHash: m.training.dataHash ?? null, trainN: m.training.trainN ?? null, valN: m.training.valN ?? null },
  };
}

async function cmdList(o: { json?: boolean }, config: Config, io: Io): Promise<number> {
  const reg = ModelRegistry.fromConfig(config);
  const all: VersionInfo[] = [];
  for (const name of await reg.names()) all.push(...(await reg.versions(name)));
  if (o.json) {
    io.stdout.write(`${JSON.stringify({ root: reg.root, models: all.map(summaryOf) })}\n`);
    return 0;
  }
  if (all.length === 0) {
    io.stdout.write(`no models in ${reg.root}\n`);
    return 0;
  }
  io.stdout.write(`registry ${reg.root}\n`);
  for (const v of all) {
    const val = validationOf(v);
    io.stdout.write(`${v.promoted ? '*' : ' '} ${`${v.name}@${v.version}`.padEnd(44)} ${v.created.slice(0, 19)}  ${v.metadata.head.cell}${v.metadata.head.bidirectional ? '-bi' : ''}${v.metadata.head.pooling === 'attention' ? '+attn' : ''} ${v.metadata.backbone.featureKind}  val top1 ${pct(val.top1)}  classes ${v.metadata.labels.length}\n`);
  }
  return 0;
}

async function cmdShow(ref: string, config: Config, io: Io): Promise<number> {
  const reg = ModelRegistry.fromConfig(config);
  const dir = await reg.resolve(ref);
  const { name } = parseModelRef(ref);
  const v = (await reg.versions(name)).find((x) => x.dir === dir);
  if (!v) throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `no model ${ref} in ${reg.root}`);
  let reports: string[] = [];
  try {
    reports = (await readdir(join(dir, 'reports'))).sort().map((r) => join(dir, 'reports', r, 'report.html'));
  } catch {
    /* none yet */
  }
  io.stdout.write(`${JSON.stringify({ ...summaryOf(v), training: v.metadata.training, metrics: v.metadata.metrics, unknownRule: v.metadata.unknownRule ?? null, reports })}\n`);
  return 0;
}

async function cmdPromote(ref: string, config: Config, io: Io): Promise<number> {
  const { name, version } = parseModelRef(ref);
  if (!version) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'promote needs NAME@VERSION');
  await ModelRegistry.fromConfig(config).promote(name, version);
  io.stdout.write(`${JSON.stringify({ name, promoted: version })}\n`);
  return 0;
}

async function cmdRemove(ref: string, o: { force?: boolean }, config: Config, io: Io): Promise<number> {
  const { name, version } = parseModelRef(ref);
  if (!version) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'rm needs NAME@VERSION');
  const r = await ModelRegistry.fromConfig(config).remove(name, version, { force: Boolean(o.force) });
  io.stdout.write(`${JSON.stringify({ name, removed: version, wasPromoted: r.wasPromoted })}\n`);
  return 0;
}

interface CvFlags extends HeadFlags {
  manifest: string;
  folds?: number;
  foldColumn?: string;
  groupColumn?: string;
  valFraction: number;
  sampling?: string;
  crop: CropMode;
  baseline?: boolean;
  engine?: Engine;
  backend?: TfjsBackendChoice;
  backbone?: BackboneId;
  feature?: FeatureKind;
  cacheDir?: string;
  threads?: number;
  json?: boolean;
  augment?: AugmentOptions;
  streams?: StreamId[] | 'auto';
}

async function cmdCv(o: CvFlags, config: Config, io: Io): Promise<number> {
  const rt = runtimeFromConfig(config, {
    featureKind: config.trainFeatureKind,
    ...(o.engine ? { engine: o.engine } : {}),
    ...(o.backend ? { backend: o.backend } : {}),
    ...(o.backbone ? { backbone: o.backbone } : {}),
    ...(o.feature ? { featureKind: o.feature } : {}),
    ...(o.cacheDir ? { cacheDir: resolve(o.cacheDir) } : {}),
    ...(o.threads ? { threads: o.threads } : {}),
  });
  const policy = o.sampling ? parseSampling(o.sampling) : DEFAULT_SAMPLING;
  const geometry = { size: BACKBONE_SPECS[rt.backbone].inputSize, crop: o.crop };
  const requested = o.streams ?? DEFAULT_STREAMS;
  const inputs = await readLabelledData(o.manifest);
  // auto: every loadable stream embedded (keypoint streams that see something in the data), the set chosen inside each fold
  const streams = requested === 'auto' ? (await screenKeypointStreams(rt, policy, geometry, inputs.items)).kept : requested;
  const multi = !isRgbOnly(streams);
  if (multi && o.augment) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `--augment works with --streams rgb only (the streams here: ${formatStreams(requested)})`);
  const streamExtractor = multi ? await createStreamExtractor(rt, policy, geometry, streams) : undefined;
  const extractor = streamExtractor ?? (await createExtractor(rt, policy, geometry));
  const quiet = Boolean(o.json);
  try {
    const bar = createProgress('extract', inputs.items.length, quiet);
    const onItem = (done: number, _t: number, item: { source: string }): void => bar.update(done, { status: basename(item.source) });
    const data = streamExtractor ? await collectStreamFeatures(inputs.items, streamExtractor, onItem) : await collectFeatures(inputs.items, extractor as Extractor, onItem);
    bar.stop();
    data.failed.unshift(...inputs.errors);
    for (const f of data.failed) io.stderr.write(`framewise: skipped ${f.source}: ${f.error.code}: ${f.error.message}\n`);
    // folds: a fold column when given (or when the manifest has a `fold` column and no --folds), else K group-aware stratified folds
    const hasFoldColumn = data.items.length > 0 && data.items.every((it) => it.extra.fold !== undefined);
    const foldColumn = o.foldColumn ?? (o.folds === undefined && hasFoldColumn ? 'fold' : undefined);
    const folds: FoldSpec = foldColumn ? { kind: 'column', column: foldColumn } : { kind: 'k', k: o.folds ?? 5, seed: o.seed ?? 42, ...(o.groupColumn ? { groupColumn: o.groupColumn } : {}) };
    const result = await runCrossValidation({
      extractor,
      data,
      folds,
      valFraction: o.valFraction,
      ...(o.groupColumn ? { groupColumn: o.groupColumn } : {}),
      head: headOptionsFrom(o),
      training: trainOptionsFrom(o),
      baseline: Boolean(o.baseline),
      ...(o.augment ? { augment: { options: o.augment, extractor: extractor as Extractor } } : {}),
      ...(requested === 'auto' ? { auto: {} } : {}),
      onFold: (r, i, total) => {
        if (!quiet) io.stderr.write(`fold ${r.fold} (${i + 1}/${total})${r.streams ? ` [${formatStreams(r.streams)}]` : ''}: top-1 ${pct(r.top1)}, mean class accuracy ${pct(r.meanClassAccuracy)} (train ${r.trainN}, val ${r.valN}, test ${r.testN}, ${r.epochs} epochs)${r.baseline ? `; baseline top-1 ${pct(r.baseline.top1)}` : ''}\n`);
      },
    });
    io.stdout.write(`${JSON.stringify({ ...result, streams: (data.layout ?? [{ id: 'rgb' }]).map((s) => s.id), folds: result.folds, foldSource: foldColumn ? `column ${foldColumn}` : `${o.folds ?? 5} group-aware stratified folds${o.groupColumn ? ` by ${o.groupColumn}` : ''}`, skipped: data.failed.map((f) => ({ path: f.source, code: f.error.code })) })}\n`);
    io.stderr.write(`cv: ${result.summary}\n`);
    return data.failed.length > 0 ? 1 : 0;
  } finally {
    await extractor.dispose();
  }
}

const kArg = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError('--folds must be an integer ≥ 2');
  return n;
};
const fraction = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n >= 1) throw new InvalidArgumentError('--val-fraction must be in (0, 1)');
  return n;
};

export function registerModelCommands(program: Command, io: Io, run: Run): void {
  const models = program.command('models').description('the model registry (FRAMEWISE_MODELS_DIR, default $FRAMEWISE_CACHE_DIR/models): list, show, promote, remove versions');
  models
    .command('list')
    .description('every version of every model (* = promoted)')
    .option('--json', 'one JSON object')
    .action(async (o) => run((c) => cmdList(o, c, io)));
  models
    .command('show')
    .description('metadata, metrics and reports of NAME (its promoted version) or NAME@VERSION, as JSON')
    .argument('<ref>', 'NAME or NAME@VERSION')
    .action(async (ref: string) => run((c) => cmdShow(ref, c, io)));
  models
    .command('promote')
    .description('make NAME@VERSION the version that NAME resolves to (label/eval --model NAME, queue results)')
    .argument('<ref>', 'NAME@VERSION')
    .action(async (ref: string) => run((c) => cmdPromote(ref, c, io)));
  models
    .command('rm')
    .description('remove NAME@VERSION (the promoted version only with --force)')
    .argument('<ref>', 'NAME@VERSION')
    .option('--force', 'also remove the promoted version (NAME then has no promoted version)')
    .action(async (ref: string, o) => run((c) => cmdRemove(ref, o, c, io)));

  addHeadOptions(
    program
      .command('cv')
      .description('k-fold cross-validation of a head configuration: mean ± sd of top-1 and mean class accuracy over folds (JSON on stdout, one line on stderr)')
      .requiredOption('--manifest <csv|dir>', 'labelled data: CSV with path,label (other columns allowed) or class folders')
      .option('--folds <k>', 'number of folds (group-aware stratified); default 5, or the manifest\'s fold column when it has one', kArg)
      .option('--fold-column <col>', 'use this column\'s values as the folds')
      .option('--group-column <col>', 'keep all rows of a group (e.g. source video) in one fold, and on one side of each fold\'s validation split')
      .option('--val-fraction <f>', 'validation share (for early stopping) of each fold\'s training rows', fraction, 0.2)
      .option('--baseline', 'also train the mean-pooling baseline in every fold')
      .option('--augment <what>', "train each fold on augmented copies of its training rows too: jitter[:K] and/or flip (as train's --augment)", augmentArg)
      .option('--sampling <policy>', 'uniform:N or fps:RATE[:MAX] (default uniform:16)')
      .addOption(new Option('--crop <mode>', 'make frames square by centre crop or squash').choices(CROP_MODES).default(DEFAULT_CROP))
      .addOption(new Option('--engine <engine>', 'backbone engine').choices(ENGINES))
      .addOption(new Option('--backend <backend>', 'TensorFlow.js backend').choices(TFJS_BACKENDS))
      .addOption(new Option('--backbone <id>', 'frame CNN').choices(BACKBONE_IDS))
      .addOption(new Option('--feature <kind>', `per-frame feature (default: FRAMEWISE_FEATURE or ${DEFAULT_TRAIN_FEATURE})`).choices(FEATURE_KINDS))
      .option('--cache-dir <dir>', 'feature store')
      .option('--threads <n>', 'onnx intra-op threads', (v) => Number(v))
      .option('--json', 'no progress on stderr')
      .option('--streams <set>', `per-frame streams the head reads: a comma-separated subset of rgb, motion, pose, hands or auto (chosen inside every fold on its own training rows, as train does: nested) (default ${formatStreams(DEFAULT_STREAMS)}); each is embedded once and cached`, streamsArg(true)),
  ).action(async (o) => run((c) => cmdCv(o as CvFlags, c, io)));
}
