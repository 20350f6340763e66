/**
 * The `framewise` command line. `main(argv)` runs a command and returns the exit code; the
 * auto-run wrapper is `bin.ts`. Errors become one line on stderr and a documented exit code:
 *   0 every input succeeded · 1 some inputs failed (the others were processed) ·
 *   2 bad usage or configuration · 3 the command could not run (model, backbone, I/O).
 */
import { createWriteStream } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Command, Option, CommanderError } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { csvHeader, resultCsvRows } from '../jobs/result-csv.js';
import { loadConfig, type Config } from '../config/index.js';
import { getLogger } from '../config/log.js';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { expandInputs, type Inputs } from '../features/inputs.js';
import { failure, labelItems, labelItemsWindowed, labelStreamItems, type LabelResult } from '../jobs/label.js';
import { createHeadStreamExtractor } from '../jobs/stream-features.js';
import type { Extractor } from '../features/extract.js';
import { createWindowsDeps } from '../jobs/windows.js';
import { createExtractor, runtimeFromConfig, type RuntimeOptions } from '../jobs/runtime.js';
import { runTraining, type AugmentOptions } from '../jobs/train.js';
import { runEvaluation } from '../jobs/evaluate.js';
import { applyUnknownThreshold, unknownThresholdOf } from '../jobs/thresholds.js';
import { resolveModel } from '../ml/registry.js';
import type { UnknownRule } from '../ml/metrics.js';
import { CROP_MODES, DEFAULT_CROP, DEFAULT_SAMPLING, parseSampling, parseWindows, formatSampling, type FrameGeometry, type CropMode } from '../media/sampling.js';
import { BACKBONE_IDS, ENGINES, FEATURE_KINDS, type BackboneId, type FeatureKind } from '../ml/backbone.js';
import { BACKBONE_SPECS } from '../ml/backbone-specs.js';
import { TemporalHead } from '../ml/head.js';
import { DEFAULT_TRAIN_FEATURE, TFJS_BACKENDS, type TfjsBackendChoice } from '../config/index.js';
import { roundTimings } from '../features/pipeline-schedule.js';
import { createProgress } from './progress.js';
import { nonNegativeNumber, positiveInt, positiveNumber, unitInterval } from './arg-parsers.js';
import { registerQueueCommands } from './queue-commands.js';
import { registerResultsCommands } from './results-commands.js';
import { EXIT } from './exit-codes.js';
import { registerModelCommands } from './models-commands.js';
import { addHeadOptions, augmentArg, headOptionsFrom, streamsArg, trainOptionsFrom, unknownRuleArg, type HeadFlags } from './train-options.js';
import { DEFAULT_STREAMS, formatStreams, type StreamId } from '../features/streams.js';

export { EXIT };

interface EmbedFlags {
  engine?: 'onnx' | 'tfjs';
  backend?: TfjsBackendChoice;
  backbone?: BackboneId;
  feature?: FeatureKind;
  cacheDir?: string;
  embedBatch?: number;
  threads?: number;
  json?: boolean;
  logLevel?: string;
}



function addEmbedOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--engine <engine>', 'backbone engine (default: FRAMEWISE_ENGINE or onnx)').choices(ENGINES))
    .addOption(new Option('--backend <backend>', 'TensorFlow.js backend for the tfjs engine and the head (default: FRAMEWISE_BACKEND or auto)').choices(TFJS_BACKENDS))
    .addOption(new Option('--backbone <id>', 'frame CNN (default: the model\'s, else FRAMEWISE_BACKBONE or mobilenet_v2_mid)').choices(BACKBONE_IDS))
    .addOption(new Option('--feature <kind>', `per-frame feature: pooled or grid (default: the model's for label/eval; for train/extract FRAMEWISE_FEATURE, else ${DEFAULT_TRAIN_FEATURE})`).choices(FEATURE_KINDS))
    .option('--cache-dir <dir>', 'feature store and converted models (default: FRAMEWISE_CACHE_DIR or ~/.cache/framewise)')
    .option('--embed-batch <n>', 'frames per backbone call (default: FRAMEWISE_BATCH_SIZE or 8)', positiveInt('--embed-batch'))
    .option('--threads <n>', 'onnx intra-op threads (default: FRAMEWISE_THREADS or the number of cores)', positiveInt('--threads'))
    .option('--json', 'machine output only: no progress bars or per-epoch lines on stderr')
    .option('--log-level <level>', 'log level on stderr (default: FRAMEWISE_LOG_LEVEL or info)');
}

function runtime(config: Config, f: EmbedFlags, fallback: { backbone?: BackboneId; feature?: FeatureKind } = {}): RuntimeOptions {
  return runtimeFromConfig(config, {
    ...(f.engine ? { engine: f.engine } : {}),
    ...(f.backend ? { backend: f.backend } : {}),
    ...((f.backbone ?? fallback.backbone) ? { backbone: (f.backbone ?? fallback.backbone) as BackboneId } : {}),
    ...((f.feature ?? fallback.feature) ? { featureKind: (f.feature ?? fallback.feature) as FeatureKind } : {}),
    ...(f.cacheDir ? { cacheDir: resolve(f.cacheDir) } : {}),
    ...(f.embedBatch ? { batchSize: f.embedBatch } : {}),
    ...(f.threads ? { threads: f.threads } : {}),
  });
}

function geometryFor(backbone: BackboneId, crop: CropMode): FrameGeometry {
  return { size: BACKBONE_SPECS[backbone].inputSize, crop };
}

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Write results as JSON Lines or CSV (per video, or per segment with `segments`) to a file or stdout. */
function createResultWriter(format: 'jsonl' | 'csv', out: string | undefined, io: Io, segments = false): { write: (r: LabelResult) => void; close: () => Promise<void> } {
  const stream = out ? createWriteStream(out) : io.stdout;
  let headerDone = false;
  return {
    write(r) {
      if (format === 'jsonl') {
        stream.write(`${JSON.stringify(r)}\n`);
        return;
      }
      if (!headerDone) {
        stream.write(csvHeader(segments));
        headerDone = true;
      }
      const rows = resultCsvRows(r, segments);
      if (rows.length > 0) stream.write(stringify(rows));
    },
    close: () =>
      new Promise<void>((res) => {
        if (stream === io.stdout) res();
        else (stream as NodeJS.WritableStream).end(() => res());
      }),
  };
}

interface LabelFlags extends EmbedFlags {
  model?: string;
  topK: number;
  format: 'jsonl' | 'csv';
  out?: string;
  windows?: string;
  threshold?: number;
  hysteresis?: number;
  minSegment?: number;
}

async function cmdLabel(inputs: string[], o: LabelFlags, config: Config, io: Io): Promise<number> {
  if (o.windows === undefined && (o.threshold !== undefined || o.hysteresis !== undefined || o.minSegment !== undefined)) {
    throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--threshold, --hysteresis and --min-segment apply to segments: use them with --windows');
  }
  const modelDir = await resolveModel(o.model, config);
  const rtProbe = runtime(config, o);
  const head = await TemporalHead.load(modelDir, undefined, rtProbe.backend);
  const meta = head.metadata;
  const rt = runtime(config, o, { backbone: meta.backbone.id as BackboneId, feature: meta.backbone.featureKind });
  // windows compute exactly the model's streams too, from one decode pass per video
  if (o.windows !== undefined) return labelWindowsCommand(inputs, o, rt, head, modelDir, io);
  // exactly the streams the model reads: the backbone's rgb features alone, or several streams from one decode
  const streamExtractor = await createHeadStreamExtractor(rt, head);
  const extractor = streamExtractor ?? (await createExtractor(rt, meta.sampling.policy, { size: meta.sampling.size, crop: meta.sampling.crop }));
  const { checkCompatible } = await import('../ml/head.js');
  checkCompatible(meta, extractor.identity, modelDir);

  const expanded = await expandInputs(inputs);
  const threshold = unknownThresholdOf(meta);
  async function* results(): AsyncGenerator<LabelResult> {
    const all = streamExtractor ? labelStreamItems(expanded.items, streamExtractor, head, o.topK) : labelItems(expanded.items, extractor as Extractor, head, o.topK);
    for await (const r of all) yield applyUnknownThreshold(r, threshold);
  }
  try {
    return await writeLabelOutput(expanded, results(), o, io, false);
  } finally {
    await extractor.dispose();
    head.dispose();
  }
}

/**
 * Write label results (inputs that could not be listed first, then one per file), with a
 * progress bar; the exit code: 0 all ok, 1 some failed, 2 no inputs.
 */
async function writeLabelOutput(expanded: Inputs, results: AsyncIterable<LabelResult>, o: LabelFlags, io: Io, segments: boolean): Promise<number> {
  const writer = createResultWriter(o.format, o.out, io, segments);
  const total = expanded.items.length + expanded.errors.length;
  const bar = createProgress('label', total, Boolean(o.json));
  let done = 0;
  let failed = 0;
  try {
    for (const e of expanded.errors) {
      writer.write(failure(e.source, e.error));
      failed++;
      bar.update(++done);
    }
    for await (const r of results) {
      writer.write(r);
      if (!r.ok) failed++;
      bar.update(++done, { status: basename(r.path) });
    }
  } finally {
    bar.stop();
    await writer.close();
  }
  if (total === 0) {
    io.stderr.write('framewise: no inputs\n');
    return EXIT.USAGE;
  }
  return failed > 0 ? EXIT.PARTIAL : EXIT.OK;
}

/** `label --windows`: each input window by window; one result per input with windows and segments. */
async function labelWindowsCommand(inputs: string[], o: LabelFlags, rt: RuntimeOptions, head: TemporalHead, modelDir: string, io: Io): Promise<number> {
  const meta = head.metadata;
  const deps = await createWindowsDeps(rt);
  try {
    const { checkCompatible } = await import('../ml/head.js');
    checkCompatible(meta, deps.identity, modelDir);
    if (meta.sampling.policy.kind !== 'uniform') throw new FramewiseError('FW_ERR_CONFIG_INVALID', `--windows needs a head trained with uniform:N sampling (this one: ${formatSampling(meta.sampling.policy)})`);
    const policy = parseWindows(o.windows as string, meta.sampling.policy.frames);
    const options = {
      policy,
      geometry: { size: meta.sampling.size, crop: meta.sampling.crop },
      ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
      ...(o.hysteresis !== undefined ? { hysteresis: o.hysteresis } : {}),
      ...(o.minSegment !== undefined ? { minSegmentSec: o.minSegment } : {}),
      embedBatch: Math.max(rt.batchSize, 16),
    };
    const expanded = await expandInputs(inputs);
    return await writeLabelOutput(expanded, labelItemsWindowed(expanded.items, head, deps, options, o.topK), o, io, true);
  } finally {
    await deps.dispose();
    head.dispose();
  }
}

async function cmdExtract(o: EmbedFlags & { manifest: string; sampling?: string; crop: CropMode }, config: Config, io: Io): Promise<number> {
  // the feature `train` uses by default, so that a later train finds everything in the store
  const rt = runtime(config, o, { feature: config.trainFeatureKind });
  const policy = o.sampling ? parseSampling(o.sampling) : DEFAULT_SAMPLING;
  const extractor = await createExtractor(rt, policy, geometryFor(rt.backbone, o.crop));
  const data = await readInputsForExtract(o.manifest);
  const bar = createProgress('extract', data.items.length, Boolean(o.json));
  const failures = data.errors.map((e) => ({ path: e.source, code: e.error.code, message: e.error.message }));
  let done = 0;
  const t0 = performance.now();
  try {
    for await (const r of extractor.extractMany(data.items)) {
      if (!r.ok) failures.push({ path: r.item.source, code: r.error.code, message: r.error.message });
      bar.update(++done, { status: basename(r.item.source) });
    }
  } finally {
    bar.stop();
    await extractor.dispose();
  }
  const wallMs = Math.round(performance.now() - t0);
  const timings = { wallMs, ...roundTimings(extractor.stats.timings) };
  const summary = { ...extractor.stats, timings, total: data.items.length + data.errors.length, store: rt.cacheDir, sampling: formatSampling(policy), backbone: extractor.identity, failures };
  io.stdout.write(`${JSON.stringify(summary)}\n`);
  return failures.length > 0 ? EXIT.PARTIAL : EXIT.OK;
}

async function readInputsForExtract(source: string): ReturnType<typeof expandInputs> {
  if (source.toLowerCase().endsWith('.csv')) {
    const { readManifest } = await import('../features/inputs.js');
    return readManifest(source, { requireLabel: false });
  }
  return expandInputs([source]);
}

interface TrainFlags extends EmbedFlags, HeadFlags {
  manifest: string;
  out?: string;
  register?: string;
  promote?: boolean;
  valManifest?: string;
  splitColumn?: string;
  valValues?: string;
  groupColumn?: string;
  valFraction: number;
  sampling?: string;
  crop: CropMode;
  baseline: boolean;
  report: boolean;
  unknownRule?: UnknownRule;
  augment?: AugmentOptions;
  id?: string;
  streams?: StreamId[] | 'auto';
}

async function cmdTrain(o: TrainFlags, config: Config, io: Io): Promise<number> {
  if (!o.out && !o.register) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'train needs --out DIR or --register NAME (or both)');
  const quiet = Boolean(o.json);
  const rt = runtime(config, o, { feature: config.trainFeatureKind });
  let bar: ReturnType<typeof createProgress> | undefined;
  // Ctrl-C: stop after the current batch and keep the best epoch so far; a second one quits
  const stop = new AbortController();
  const onSigint = (): void => {
    if (stop.signal.aborted) process.exit(130);
    io.stderr.write('framewise: stopping after this batch; the best epoch so far is kept (Ctrl-C again to quit now)\n');
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  const result = await runTraining(
    {
      config,
      manifest: o.manifest,
      ...(o.valManifest ? { valManifest: o.valManifest } : {}),
      split: {
        fraction: o.valFraction,
        ...(o.splitColumn ? { column: o.splitColumn, valValues: (o.valValues ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '') } : {}),
        ...(o.groupColumn ? { groupColumn: o.groupColumn } : {}),
      },
      sampling: o.sampling ? parseSampling(o.sampling) : DEFAULT_SAMPLING,
      crop: o.crop,
      runtime: rt,
      head: headOptionsFrom(o),
      training: trainOptionsFrom(o),
      ...(o.id ? { id: o.id } : {}),
      ...(o.out ? { out: o.out } : {}),
      ...(o.register ? { register: o.register } : {}),
      ...(o.promote ? { promote: true } : {}),
      baseline: o.baseline,
      report: o.report,
      ...(o.unknownRule ? { unknownRule: o.unknownRule } : {}),
      ...(o.augment ? { augment: o.augment } : {}),
      ...(o.streams ? { streams: o.streams } : {}),
    },
    {
      onItem: (done, total, item) => {
        bar ??= createProgress('extract', total, quiet);
        bar.update(done, { status: basename(item.source) });
        if (done === total) {
          bar.stop();
          bar = undefined;
        }
      },
      onEpoch: (l) => {
        if (!quiet) {
          const val = l.valLoss !== undefined ? ` val_loss ${l.valLoss.toFixed(4)} val_acc ${(l.valAcc ?? 0).toFixed(3)}` : '';
          const who = l.member ? `[${l.member.label ? `${l.member.label} ` : ''}${l.member.index + 1}/${l.member.of}] ` : '';
          io.stderr.write(`${who}epoch ${String(l.epoch).padStart(3)} loss ${l.loss.toFixed(4)} acc ${l.acc.toFixed(3)}${val} (${l.ms} ms)\n`);
        }
      },
      signal: stop.signal,
    },
  ).finally(() => process.off('SIGINT', onSigint));
  bar?.stop();
  for (const f of result.skipped) io.stderr.write(`framewise: skipped ${f.source}: ${f.error.code}: ${f.error.message}\n`);
  const summary = {
    model: result.modelDir,
    id: result.id,
    version: result.version,
    labels: result.labels,
    trainN: result.trainN,
    valN: result.valN,
    epochs: result.epochs,
    bestEpoch: result.bestEpoch,
    validation: result.metrics.validation,
    baseline: result.metrics.baseline,
    unknownThreshold: result.metrics.unknownThreshold,
    registered: result.registered,
    copies: result.copies,
    skipped: result.skipped.map((f) => ({ path: f.source, code: f.error.code })),
    cancelled: result.cancelled,
    features: result.features,
    ...(result.augmented ? { augmented: result.augmented } : {}),
    streams: result.streams,
    ...(result.streamChoice ? { streamChoice: result.streamChoice } : {}),
  };
  if (result.streamChoice && !quiet) {
    for (const c of result.streamChoice.candidates) io.stderr.write(`streams ${formatStreams(c.streams).padEnd(24)} validation top-1 ${(c.mean * 100).toFixed(1)} ± ${(c.sd * 100).toFixed(1)} %${c.framesPerSec !== null ? `, ${c.framesPerSec.toFixed(1)} frames/s` : ''}\n`);
    io.stderr.write(`streams auto: chose ${formatStreams(result.streamChoice.chosen)}\n`);
  }
  io.stdout.write(`${JSON.stringify(summary)}\n`);
  return result.skipped.length > 0 || result.cancelled ? EXIT.PARTIAL : EXIT.OK;
}

interface EvalFlags extends EmbedFlags {
  model?: string;
  manifest: string;
  format: 'json' | 'text';
  report?: string;
  baseline?: boolean;
  trainManifest?: string;
}

async function cmdEval(o: EvalFlags, config: Config, io: Io): Promise<number> {
  const quiet = Boolean(o.json) || o.format === 'json';
  let bar: ReturnType<typeof createProgress> | undefined;
  const { backbone, featureKind, ...rest } = runtime(config, o);
  const { report: m, reportDirs } = await runEvaluation({
    config,
    ...(o.model ? { model: o.model } : {}),
    manifest: o.manifest,
    // backbone and feature: the model's unless given
    runtime: { ...rest, ...(o.backbone ? { backbone } : {}), ...(o.feature ? { featureKind } : {}) },
    ...(o.report ? { reportDir: o.report } : {}),
    ...(o.baseline ? { baseline: true } : {}),
    ...(o.trainManifest ? { trainManifest: o.trainManifest } : {}),
    onItem: (done, total, item) => {
      bar ??= createProgress('eval', total, quiet);
      bar.update(done, { status: basename(item.source) });
    },
  });
  bar?.stop();
  const failed = m.failed;
  if (o.format === 'json') {
    const { top1, top5, meanClassAccuracy, perClass, confusionMatrix, labels, n, model } = m;
    io.stdout.write(`${JSON.stringify({ top1, top5, meanClassAccuracy, perClass, confusionMatrix, labels, n, model, failed, ece: m.calibration.ece, unknownThreshold: m.unknown.threshold, ...(m.baseline ? { baseline: m.baseline } : {}), ...(reportDirs.length > 0 ? { reports: reportDirs } : {}) })}\n`);
  } else {
    io.stdout.write(`model ${m.model.id} ${m.model.version}  n=${m.n}  top1 ${(m.top1 * 100).toFixed(1)}%  top5 ${(m.top5 * 100).toFixed(1)}%  mean class acc ${(m.meanClassAccuracy * 100).toFixed(1)}%  ECE ${m.calibration.ece.toFixed(3)}\n`);
    if (m.baseline) io.stdout.write(`  mean-pooling baseline: top1 ${(m.baseline.top1 * 100).toFixed(1)}%  mean class acc ${(m.baseline.meanClassAccuracy * 100).toFixed(1)}%\n`);
    for (const c of m.perClass) io.stdout.write(`  ${c.label.padEnd(16)} n=${String(c.support).padStart(4)}  precision ${c.precision.toFixed(3)}  recall ${c.recall.toFixed(3)}  f1 ${c.f1.toFixed(3)}\n`);
    io.stdout.write(`confusion (rows true, cols predicted: ${m.labels.join(', ')})\n`);
    for (const [i, row] of m.confusionMatrix.entries()) io.stdout.write(`  ${(m.labels[i] ?? '').padEnd(16)} ${row.map((v) => String(v).padStart(5)).join('')}\n`);
    for (const f of failed) io.stdout.write(`  skipped ${f.path}: ${f.code}\n`);
    for (const d of reportDirs) io.stdout.write(`report: ${d}/report.html\n`);
  }
  return failed.length > 0 ? EXIT.PARTIAL : EXIT.OK;
}

async function cmdExport(o: { onnx?: boolean; backbone?: BackboneId; out: string; cacheDir?: string }, config: Config, io: Io): Promise<number> {
  if (!o.onnx) throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'export needs a format: --onnx');
  const id = o.backbone ?? config.backbone;
  if (id === 'tfhub_mobilenet_v2') throw new FramewiseError('FW_ERR_CONFIG_INVALID', 'the ONNX converter supports mobilenet_v2_mid and mobilenet_v2');
  const { exportOnnx } = await import('../ml/onnx/onnx-cache.js');
  const res = await exportOnnx(id, resolve(o.out), o.cacheDir ? resolve(o.cacheDir) : config.cacheDir);
  io.stdout.write(`${JSON.stringify(res)}\n`);
  return EXIT.OK;
}

export function buildProgram(io: Io, run: (fn: (config: Config) => Promise<number>) => Promise<void>): Command {
  const program = new Command('framewise')
    .description('Action recognition in video: ffmpeg decode → MobileNet frame features → LSTM head')
    .version('0.1.0')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride();

  addEmbedOptions(
    program
      .command('label')
      .description('label videos (files, folders, globs or a manifest.csv) with a trained head; one result per input')
      .argument('<inputs...>', 'video files, folders, globs or manifest CSVs')
      .option('--model <dir|name[@version]>', 'a head directory, or a registered model: NAME (its promoted version) or NAME@VERSION (default: FRAMEWISE_MODEL_DIR or the bundled pretrained/heads/motion4)')
      .option('--top-k <k>', 'how many classes to list per video', positiveInt('--top-k'), 3)
      .addOption(new Option('--format <format>', 'output format (with --windows, csv is one row per segment)').choices(['jsonl', 'csv']).default('jsonl'))
      .option('--out <file>', 'write results to a file instead of stdout')
      .option('--windows <W,S>', 'long videos: W-second windows every S seconds (e.g. 2,1; W alone: S = W/2; auto: 2,1), per-window scores merged into segments')
      .option('--threshold <p>', 'with --windows: a segment is unknown where no class reaches p, 0 never (default: the model\'s unknownThreshold, else 0.5)', unitInterval('--threshold'))
      .option('--hysteresis <h>', 'with --windows: the current class holds down to threshold - h (default 0.1)', nonNegativeNumber('--hysteresis'))
      .option('--min-segment <sec>', 'with --windows: shorter segments are absorbed by a neighbour (default: the window length)', nonNegativeNumber('--min-segment')),
  ).action(async (inputs: string[], o) => run((c) => cmdLabel(inputs, o, c, io)));

  addEmbedOptions(
    program
      .command('extract')
      .description('embed videos into the feature store (a manifest, folder or file)')
      .requiredOption('--manifest <csv|dir>', 'manifest CSV (path[,label]) or a folder of videos')
      .option('--sampling <policy>', 'uniform:N or fps:RATE[:MAX] (default uniform:16)')
      .addOption(new Option('--crop <mode>', 'make frames square by centre crop or squash').choices(CROP_MODES).default(DEFAULT_CROP)),
  ).action(async (o) => run((c) => cmdExtract(o, c, io)));

  addEmbedOptions(
    addHeadOptions(
      program
        .command('train')
        .description('train the temporal head on a labelled manifest (path,label) or class folders; save it to --out and/or the registry (--register)')
        .requiredOption('--manifest <csv|dir>', 'training data: CSV with path,label (relative to the CSV) or a folder of class folders')
        .option('--out <dir>', 'save the trained head in this folder')
        .option('--register <name>', 'save the trained head as a new version of NAME in the model registry (FRAMEWISE_MODELS_DIR)')
        .option('--promote', 'promote the new registry version (the first version of a name always is)')
        .option('--val-manifest <csv|dir>', 'separate validation data')
        .option('--split-column <col>', 'manifest column that decides the validation rows (e.g. fold)')
        .option('--val-values <v1,v2>', 'values of --split-column that go to validation')
        .option('--group-column <col>', 'group-aware stratified validation split: all rows with one value of COL (e.g. the source video) stay on one side')
        .option('--val-fraction <f>', 'validation share of a stratified or group-aware split', positiveNumber('--val-fraction'), 0.2)
        .option('--sampling <policy>', 'uniform:N or fps:RATE[:MAX] (default uniform:16)')
        .addOption(new Option('--crop <mode>', 'make frames square by centre crop or squash').choices(CROP_MODES).default(DEFAULT_CROP))
        .option('--no-baseline', 'do not train the mean-pooling baseline (its validation top-1 is recorded in metadata by default)')
        .option('--unknown-rule <rule>', 'how the unknown threshold is chosen on validation data: macro-f1, precision:P or none (default macro-f1)', unknownRuleArg)
        .option('--no-report', 'do not write the validation report (report.json, report.html) beside the model')
        .option('--augment <what>', 'augmented copies of the training rows, made at extraction and stored: jitter[:K] (K copies with jittered frame positions, default 2) and/or flip (mirrored; left/right labels swap)', augmentArg)
        .option('--id <name>', 'model id recorded in metadata (default: the --register name, else the --out folder name)')
        .option('--streams <set>', `per-frame streams the head reads: a comma-separated subset of rgb, motion, pose, hands, or auto (each stream alone, then the best two, each as the --members ensemble on the training rows' validation splits; the best pooled validation top-1 wins; every candidate's score and cost is recorded) (default ${formatStreams(DEFAULT_STREAMS)})`, streamsArg(true)),
    ),
  ).action(async (o) => run((c) => cmdTrain(o as TrainFlags, c, io)));

  addEmbedOptions(
    program
      .command('eval')
      .description('evaluate a trained head on a labelled manifest: top-1, top-5, mean class accuracy, confusion matrix')
      .requiredOption('--manifest <csv|dir>', 'labelled data (labels must be the model\'s)')
      .option('--model <dir|name[@version]>', 'a head directory, or a registered model: NAME (its promoted version) or NAME@VERSION (default: FRAMEWISE_MODEL_DIR or the bundled model)')
      .addOption(new Option('--format <format>', 'output format').choices(['json', 'text']).default('text'))
      .option('--report <dir>', 'write report.json and a self-contained report.html (metrics, confusion matrix, calibration, hardest mistakes with their frames) here')
      .option('--baseline', 'also train the mean-pooling baseline on the model\'s training data and report its top-1 beside the model\'s')
      .option('--train-manifest <csv|dir>', 'training data for --baseline when the model does not record it'),
  ).action(async (o) => run((c) => cmdEval(o as EvalFlags, c, io)));

  program
    .command('export')
    .description('export the backbone as an ONNX model (uint8 NHWC input, outputs pooled and map)')
    .option('--onnx', 'ONNX format')
    .addOption(new Option('--backbone <id>', 'backbone to export (default mobilenet_v2_mid)').choices(['mobilenet_v2_mid', 'mobilenet_v2']))
    .requiredOption('--out <file>', 'output .onnx file')
    .option('--cache-dir <dir>', 'cache of converted models')
    .action(async (o) => run((c) => cmdExport(o, c, io)));

  registerQueueCommands(program, io, run);
  registerResultsCommands(program, io, run);
  registerModelCommands(program, io, run);
  return program;
}

/** Run the CLI with `argv` (as process.argv); returns the exit code. */
export async function main(argv: readonly string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let code: number = EXIT.OK;
  const run = async (fn: (config: Config) => Promise<number>): Promise<void> => {
    const flags = program.commands.find((c) => c.name() === argv[2])?.opts() as EmbedFlags | undefined;
    const config = loadConfig();
    getLogger(flags?.logLevel ?? config.logLevel);
    code = await fn(config);
  };
  const program = buildProgram(io, run);
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    const e = toFramewiseError(err);
    io.stderr.write(`framewise: ${e.code}: ${e.message}\n`);
    if (e.code === 'FW_ERR_INTERNAL' && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return e.code === 'FW_ERR_CONFIG_INVALID' ? EXIT.USAGE : EXIT.FAILED;
  }
  return code;
}


