/**
 * Evaluating a trained head, and the evaluation report: `report.json` (the eval JSON contract
 * plus calibration, the hardest mistakes, the unknown option and the baseline) and a
 * self-contained `report.html` with contact sheets of the sampled frames of the most confident
 * wrong predictions (decoded again at 96 px and tiled into a JPEG by ffmpeg itself).
 */
import { readFile, writeFile, mkdir, rm, copyFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Extractor } from '../features/extract.js';
import { FramewiseError } from '../errors/index.js';
import { readLabelledData, type InputError, type InputItem } from '../features/inputs.js';
import { decodeFrames, probe, type MediaTools } from '../media/ffmpeg.js';
import { formatSampling, type SamplingPolicy } from '../media/sampling.js';
import { runFfmpeg } from '../media/synthetic.js';
import type { BackboneId } from '../ml/backbone.js';
import { checkCompatible, TemporalHead, type HeadMetadata } from '../ml/head.js';
import { computeCalibration, hardestMistakes, scoreWithUnknown, type EvalMetrics } from '../ml/metrics.js';
import { ModelRegistry, resolveModel } from '../ml/registry.js';
import { renderReportHtml, type EvalReport, type ReportMistake } from '../ml/report-render.js';
import { createExtractor, runtimeFromConfig, type RuntimeOptions } from './runtime.js';
import { collectFeatures, predictLabelled, trainHead, type LabelledFeatures, type SplitSpec } from './head-training.js';

export type { EvalReport } from '../ml/report-render.js';

/** How many of the hardest mistakes get a contact sheet. */
export const REPORT_MISTAKES = 8;
/** Side of a contact-sheet thumbnail, in pixels. */
export const THUMB_SIZE = 96;

/** Build the report data from predictions (pure apart from the clock). */
export function buildEvalReport(input: {
  metrics: EvalMetrics;
  probs: ArrayLike<number>[];
  truth: number[];
  items: readonly InputItem[];
  meta: HeadMetadata;
  failed: readonly InputError[];
  source: string;
  baseline?: EvalReport['baseline'];
  mistakes?: number;
}): EvalReport {
  const { metrics: m, probs, truth, items, meta } = input;
  const worst = hardestMistakes(probs, truth, input.mistakes ?? REPORT_MISTAKES);
  const hardest: ReportMistake[] = worst.map((i) => {
    const row = probs[i] as ArrayLike<number>;
    let k = 0;
    for (let j = 1; j < row.length; j++) if ((row[j] as number) > (row[k] as number)) k = j;
    const t = truth[i] as number;
    return { path: (items[i] as InputItem).source, label: meta.labels[t] as string, predicted: meta.labels[k] as string, p: row[k] as number, pTrue: row[t] as number };
  });
  return {
    top1: m.top1,
    top5: m.top5,
    meanClassAccuracy: m.meanClassAccuracy,
    perClass: m.perClass,
    confusionMatrix: m.confusionMatrix,
    labels: m.labels,
    n: m.n,
    model: { id: meta.id, version: meta.version },
    failed: input.failed.map((f) => ({ path: f.source, code: f.error.code, message: f.error.message })),
    created: new Date().toISOString(),
    data: { source: input.source },
    backbone: { id: meta.backbone.id, version: meta.backbone.version, featureKind: meta.backbone.featureKind },
    sampling: { policy: formatSampling(meta.sampling.policy), size: meta.sampling.size, crop: meta.sampling.crop },
    head: { ...meta.head },
    calibration: computeCalibration(probs, truth),
    unknown: scoreWithUnknown(probs, truth, meta.labels.length, meta.unknownThreshold ?? 0),
    hardestMistakes: hardest,
    ...(input.baseline ? { baseline: input.baseline } : {}),
    ...(meta.streams ? { streams: meta.streams.map((s) => s.id) } : {}),
    ...(meta.training.streamChoice ? { streamChoice: meta.training.streamChoice as NonNullable<EvalReport['streamChoice']> } : {}),
  };
}

/**
 * A contact sheet of the frames the model sampled from `path`: decoded again with the model's
 * policy and crop at `size` pixels, tiled (8 per row) into one JPEG by ffmpeg. Returns the times.
 */
export async function makeContactSheet(path: string, sampling: { policy: SamplingPolicy; crop: HeadMetadata['sampling']['crop'] }, out: string, tools: MediaTools, size = THUMB_SIZE): Promise<number[]> {
  const info = await probe(path, tools);
  const frames = await decodeFrames(info, sampling.policy, { size, crop: sampling.crop }, { tools });
  if (frames.count === 0) throw new FramewiseError('FW_ERR_MEDIA_CORRUPT', `no frame decodes from ${path}`);
  const raw = join(tmpdir(), `fw-sheet-${process.pid}-${randomBytes(4).toString('hex')}.rgb`);
  const cols = Math.min(8, frames.count);
  const rows = Math.ceil(frames.count / cols);
  try {
    await writeFile(raw, frames.data);
    await runFfmpeg(['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${size}x${size}`, '-i', raw, '-vf', `tile=${cols}x${rows}:padding=2:color=white`, '-frames:v', '1', '-q:v', '4', out], tools.ffmpegPath);
  } finally {
    await rm(raw, { force: true });
  }
  return frames.times;
}

/**
 * Write `report.json`, the contact sheets (`mistakes/NN.jpg`, for the hardest mistakes) and the
 * self-contained `report.html` into each of `dirs`. A clip whose sheet cannot be made keeps its
 * row without a picture.
 */
export async function writeEvalReport(dirs: readonly string[], report: EvalReport, opts: { items: readonly InputItem[]; sampling: { policy: SamplingPolicy; crop: HeadMetadata['sampling']['crop'] }; tools: MediaTools; sheets?: boolean }): Promise<void> {
  if (dirs.length === 0) return;
  const first = dirs[0] as string;
  await mkdir(join(first, 'mistakes'), { recursive: true });
  const images = new Map<string, string>();
  if (opts.sheets !== false) {
    const bySource = new Map(opts.items.map((it) => [it.source, it.path]));
    for (const [k, m] of report.hardestMistakes.entries()) {
      const path = bySource.get(m.path);
      if (!path) continue;
      const name = `mistakes/${String(k + 1).padStart(2, '0')}.jpg`;
      try {
        m.times = (await makeContactSheet(path, opts.sampling, join(first, name), opts.tools)).map((t) => Math.round(t * 1000) / 1000);
        m.sheet = name;
        images.set(name, `data:image/jpeg;base64,${(await readFile(join(first, name))).toString('base64')}`);
      } catch {
        /* the report still lists the mistake */
      }
    }
  }
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const html = renderReportHtml(report, images);
  for (const dir of dirs) {
    await mkdir(join(dir, 'mistakes'), { recursive: true });
    if (dir !== first) for (const name of images.keys()) await copyFile(join(first, name), join(dir, name));
    await writeFile(join(dir, 'report.json'), json);
    await writeFile(join(dir, 'report.html'), html);
  }
}

export interface EvaluationOptions {
  config: Config;
  /** A head directory, `NAME` or `NAME@VERSION` (registry); default: the configured model. */
  model?: string;
  /** Labelled data: a CSV manifest or class folders. */
  manifest: string;
  /** Runtime overrides (engine, backend, cache dir, threads…); backbone and feature come from the model unless given. */
  runtime?: Partial<RuntimeOptions>;
  /** Write the report (json + html) here. */
  reportDir?: string;
  /** Also store the report with the model version when the model is a registry version (default true). */
  storeWithModel?: boolean;
  /** Train the mean-pooling baseline on the model's training data and report its top-1 on the same rows. */
  baseline?: boolean;
  /** Training data for the baseline when the model's metadata does not name it. */
  trainManifest?: string;
  onItem?: (done: number, total: number, item: InputItem) => void;
  signal?: AbortSignal;
}

export interface EvaluationResult {
  report: EvalReport;
  modelDir: string;
  /** Folders the report was written to. */
  reportDirs: string[];
}

/** The registry root's version folder of a head directory, if it is one. */
function registryLocation(config: Config, dir: string): { name: string; version: string } | undefined {
  const ref = new ModelRegistry(config.modelsDir).locate(dir);
  return ref?.version ? { name: ref.name, version: ref.version } : undefined;
}

/** Evaluate a model on labelled data; writes the report where asked (and with a registered model). */
export async function runEvaluation(o: EvaluationOptions): Promise<EvaluationResult> {
  const modelDir = await resolveModel(o.model, o.config);
  const rt0 = runtimeFromConfig(o.config, o.runtime ?? {});
  const head = await TemporalHead.load(modelDir, undefined, rt0.backend);
  const meta = head.metadata;
  const rt = runtimeFromConfig(o.config, { backbone: meta.backbone.id as BackboneId, featureKind: meta.backbone.featureKind, ...(o.runtime ?? {}) });
  // exactly the streams the model reads (rgb alone: the classic extractor)
  const { createHeadStreamExtractor, collectStreamFeatures } = await import('./stream-features.js');
  const streamExtractor = await createHeadStreamExtractor(rt, head);
  const extractor = streamExtractor ?? (await createExtractor(rt, meta.sampling.policy, { size: meta.sampling.size, crop: meta.sampling.crop }));
  const collect = (items: InputItem[], onItem?: (done: number, total: number, item: InputItem) => void): Promise<LabelledFeatures> =>
    streamExtractor ? collectStreamFeatures(items, streamExtractor, onItem, o.signal) : collectFeatures(items, extractor as Extractor, onItem, o.signal);
  try {
    checkCompatible(meta, extractor.identity, modelDir);
    const inputs = await readLabelledData(o.manifest, head.labels);
    const data = await collect(inputs.items, (done, total, item) => o.onItem?.(done, total, item));
    data.failed.unshift(...inputs.errors);
    if (data.examples.length === 0) throw new FramewiseError('FW_ERR_TRAIN_DATA', 'no usable videos to evaluate');
    const { metrics, probs, truth } = await predictLabelled(head, data);
    let baseline: EvalReport['baseline'];
    if (o.baseline) baseline = await evaluateBaseline(meta, data, extractor, (items) => collect(items), o);
    const report = buildEvalReport({ metrics, probs, truth, items: data.items, meta, failed: data.failed, source: o.manifest, ...(baseline ? { baseline } : {}) });
    const dirs: string[] = [];
    if (o.reportDir) dirs.push(resolve(o.reportDir));
    const loc = registryLocation(o.config, modelDir);
    if (loc && o.storeWithModel !== false) {
      const stamp = report.created.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
      dirs.push(join(modelDir, 'reports', `${stamp}-${basename(o.manifest).replace(/[^A-Za-z0-9._-]+/g, '_')}`));
    }
    await writeEvalReport(dirs, report, { items: data.items, sampling: { policy: meta.sampling.policy, crop: meta.sampling.crop }, tools: rt.tools });
    return { report, modelDir, reportDirs: dirs };
  } finally {
    head.dispose();
    await extractor.dispose();
  }
}

/** Train `cell: mean` on the model's training data (same split rule) and score it on `evalData`. */
async function evaluateBaseline(meta: HeadMetadata, evalData: LabelledFeatures, extractor: Pick<Extractor, 'identity' | 'sampling'>, collect: (items: InputItem[]) => Promise<LabelledFeatures>, o: EvaluationOptions): Promise<NonNullable<EvalReport['baseline']>> {
  const source = o.trainManifest ?? (typeof meta.training.manifest === 'string' ? meta.training.manifest : undefined);
  if (!source) throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--baseline needs the training data: the model does not record its manifest; pass --train-manifest');
  const inputs = await readLabelledData(source);
  const train = await collect(inputs.items);
  const recorded = meta.training.split as SplitSpec | { kind: 'manifest' } | undefined;
  const split: SplitSpec = recorded && recorded.kind !== 'manifest' ? recorded : { kind: 'stratified', fraction: 0.2, seed: 42 };
  const seed = typeof meta.training.seed === 'number' ? meta.training.seed : 42;
  const r = await trainHead({ extractor, train, val: split, id: `${meta.id}-baseline`, head: { cell: 'mean', dropout: meta.head.dropout }, training: { seed }, baseline: false, unknownRule: { kind: 'none' } });
  try {
    const known = evalData.labels.map((l) => r.head.labels.includes(l));
    const idx = known.flatMap((k, i) => (k ? [i] : []));
    const { metrics } = await predictLabelled(r.head, { examples: idx.map((i) => evalData.examples[i] as LabelledFeatures['examples'][number]), labels: idx.map((i) => evalData.labels[i] as string) });
    return { head: 'mean', top1: metrics.top1, meanClassAccuracy: metrics.meanClassAccuracy, trainN: r.trainN, trainSource: source };
  } finally {
    r.head.dispose();
  }
}
