/**
 * Evidence for the temporal head's defaults, on real CCTV clips:
 *   npm run eval:surv-fight -- [--data DIR] [--cache-dir DIR] [--out FILE.md] [--only NAME,...|--all] [--seeds 1,2]
 *   npm run eval:surv-fight -- --from-json FILE.json --out FILE.md   (re-render a previous run's table)
 *   npm run eval:surv-fight -- --augment jitter:1,flip ...           (train on augmented copies too)
 * and for per-frame stream sets (the default head and the mean-pooling baseline on each set):
 *   npm run eval -- --dataset surv_fight|egogestar_dev --streams rgb --streams motion --streams rgb,motion [--fusion late] [--seeds 1,2,3]
 *
 * Datasets: `surv_fight` (groups.csv, its 5 `fold` column folds, validation grouped by
 * `source_group`) and `egogestar_dev` (manifest.csv, 4 group-aware stratified folds by `serial`,
 * fixed across seeds, validation grouped by `serial`).
 *
 * Runs the 5 group-disjoint folds of `../shared/datasets/surv_fight/groups.csv` (column `fold`;
 * clips of one source video never straddle folds) for each head configuration × feature kind ×
 * temporal-difference option below. In each fold the head trains on the other four folds, minus a
 * group-aware validation share (column `source_group`) for early stopping, and is tested on the
 * fold. Prints a markdown table of mean ± sd (over folds, and over seeds when several) of top-1
 * and mean class accuracy, the default configuration first, and writes it (and JSON) to --out.
 *
 * Features come from the feature store (default `.cache/test-features`, shared with the
 * surv_fight test): the first run extracts 300 clips × 16 frames per feature kind (~1–2 min each
 * with the onnx engine), later runs only train heads.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, PROJECT_ROOT } from '../src/config/index.js';
import { getLogger } from '../src/config/log.js';
import { readManifest } from '../src/features/inputs.js';
import { createExtractor, runtimeFromConfig } from '../src/jobs/runtime.js';
import { collectFeatures, runCrossValidation, type CrossValidationResult, type LabelledFeatures } from '../src/jobs/train.js';
import type { FeatureKind } from '../src/ml/backbone.js';
import { parseHeadOptions, type HeadOptions } from '../src/ml/head.js';
import { DEFAULT_TRAIN_FEATURE } from '../src/jobs/train.js';
import { augmentArg } from '../src/cli/train-options.js';
import { DEFAULT_STREAMS, parseStreams, formatStreams, STREAM_IDS, type StreamId } from '../src/features/streams.js';
import { collectStreamFeatures, createStreamExtractor, screenKeypointStreams, withStreams } from '../src/jobs/stream-features.js';
import type { FoldSpec } from '../src/jobs/train.js';
import { FUSIONS, type Fusion } from '../src/ml/head.js';

const { values } = parseArgs({
  options: {
    dataset: { type: 'string', default: 'surv_fight' },
    data: { type: 'string' },
    streams: { type: 'string', multiple: true },
    fusion: { type: 'string', default: 'early' },
    'cache-dir': { type: 'string', default: join(PROJECT_ROOT, '.cache', 'test-features') },
    out: { type: 'string' },
    only: { type: 'string' },
    seeds: { type: 'string', default: '1' },
    all: { type: 'boolean', default: false },
    'from-json': { type: 'string' },
    augment: { type: 'string' },
    members: { type: 'string' },
    head: { type: 'string' },
    'auto-streams': { type: 'string' },
  },
});
/** `--members N`: heads per ensemble (default: the training default). `--head JSON`: head options for every configuration (over the defaults). */
const members = values.members !== undefined ? Number(values.members) : undefined;
const headOverride = values.head ? (JSON.parse(values.head) as Partial<HeadOptions>) : {};
/** `--streams auto`: the candidate streams (default every stream). */
let autoStreams: StreamId[] = values['auto-streams'] ? parseStreams(values['auto-streams']) : [...STREAM_IDS];
/** `--augment jitter:K,flip`: every configuration also trains on augmented copies of its training rows. */
const augment = values.augment ? augmentArg(values.augment) : undefined;

interface Dataset {
  manifest: string;
  folds: FoldSpec;
  foldNote: string;
  groupColumn: string;
  classes: string;
  chance: number;
}
const DATASETS: Record<string, Dataset> = {
  surv_fight: { manifest: 'groups.csv', folds: { kind: 'column', column: 'fold' }, foldNote: '5 group-disjoint folds (column `fold`)', groupColumn: 'source_group', classes: 'fight/noFight', chance: 0.5 },
  egogestar_dev: { manifest: 'manifest.csv', folds: { kind: 'k', k: 4, groupColumn: 'serial', seed: 1 }, foldNote: '4 serial-disjoint stratified folds (column `serial`, fold seed 1)', groupColumn: 'serial', classes: '11 gestures', chance: 1 / 11 },
};
const datasetName = values.dataset as string;
const dataset = DATASETS[datasetName];
if (!dataset) {
  process.stderr.write(`eval: unknown --dataset ${datasetName} (expected ${Object.keys(DATASETS).join(', ')})\n`);
  process.exit(2);
}
const fusion = values.fusion as Fusion;
if (!FUSIONS.includes(fusion)) {
  process.stderr.write(`eval: --fusion early or late\n`);
  process.exit(2);
}
type SetArg = StreamId[] | 'auto';
const streamSets: SetArg[] | undefined = values.streams?.map((t) => (t.trim() === 'auto' ? 'auto' : parseStreams(t)));
const setName = (set: SetArg): string => (set === 'auto' ? 'auto' : formatStreams(set));

interface Config {
  name: string;
  feature: FeatureKind;
  head: Partial<HeadOptions>;
  /** Per-frame streams (stream mode; `auto`: chosen inside every fold), else the backbone's rgb features. */
  streams?: SetArg;
}

const HEADS: Array<{ name: string; head: Partial<HeadOptions>; diffs: Array<HeadOptions['temporalDiff']>; features?: FeatureKind[] }> = [
  { name: 'mean', head: { cell: 'mean' }, diffs: ['none'] },
  { name: 'lstm', head: { cell: 'lstm', bidirectional: false, pooling: 'last' }, diffs: ['none', 'append', 'only'] },
  { name: 'gru', head: { cell: 'gru', bidirectional: false, pooling: 'last' }, diffs: ['none', 'only'] },
  { name: 'bilstm', head: { cell: 'lstm', bidirectional: true, pooling: 'last' }, diffs: ['none', 'only'] },
  { name: 'attention', head: { cell: 'lstm', bidirectional: false, pooling: 'attention' }, diffs: ['none', 'only'] },
];

const configs: Config[] = [];
if (streamSets) {
  // stream mode: the default head (with --fusion) and the mean-pooling baseline on each stream set
  for (const set of streamSets) {
    const name = setName(set);
    configs.push({ name: `${name} ${DEFAULT_TRAIN_FEATURE}`, feature: DEFAULT_TRAIN_FEATURE, head: { ...headOverride, ...(set === 'auto' || set.length > 1 ? { fusion } : {}) }, streams: set });
    // auto: its baseline is trained in every fold on the chosen set (below)
    if (set !== 'auto') configs.push({ name: `mean:${name} ${DEFAULT_TRAIN_FEATURE}`, feature: DEFAULT_TRAIN_FEATURE, head: { cell: 'mean' }, streams: set });
  }
} else {
  for (const feature of ['pooled', 'grid'] as const) {
    for (const h of HEADS) {
      if (h.features && !h.features.includes(feature)) continue;
      for (const diff of h.diffs) configs.push({ name: `${h.name}${diff === 'none' ? '' : `+diff-${diff}`} ${feature}`, feature, head: { ...h.head, temporalDiff: diff } });
    }
  }
}

/** The configuration `framewise train` uses with no options. */
const defaults = parseHeadOptions({});
const defaultSet = formatStreams(DEFAULT_STREAMS);
const isDefault = (c: Config): boolean => c.feature === DEFAULT_TRAIN_FEATURE && JSON.stringify(parseHeadOptions(c.head)) === JSON.stringify(defaults) && (c.streams ? setName(c.streams) === defaultSet : defaultSet === 'rgb');

/** The default set (about 15 minutes on 2 idle cores); `--all` runs every combination above, `--only` picks by name. */
const STANDARD = [
  'mean pooled', 'lstm pooled', 'lstm+diff-only pooled', 'attention pooled',
  'mean grid', 'lstm grid', 'lstm+diff-append grid', 'lstm+diff-only grid', 'gru+diff-only grid', 'bilstm+diff-only grid', 'attention grid', 'attention+diff-only grid',
];
const only = values.only?.split(',').map((s) => s.trim());
const selected = streamSets ? configs : configs.filter((c) => (only ? only.some((o) => c.name === o || c.name.startsWith(`${o} `)) : values.all || STANDARD.includes(c.name)));
const seeds = (values.seeds as string).split(',').map(Number);

interface Row {
  config: Config;
  default: boolean;
  top1: { mean: number; sd: number };
  mca: { mean: number; sd: number };
  /** Mean top-1 over the folds, per seed. */
  seedTop1: number[];
  folds: CrossValidationResult['folds'][];
  seconds: number;
}

const stats = (xs: number[]): { mean: number; sd: number } => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, sd: xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1)) : 0 };
};

const rows: Row[] = [];
let n = 0;
let seedList = seeds;
const costs: Record<string, { frames: number; ms: number }> = {};
if (values['from-json']) {
  // re-render a previous run's table (the default is marked by the current defaults)
  const saved = JSON.parse(await readFile(resolve(values['from-json']), 'utf8')) as Array<{ name: string; feature: FeatureKind; head: HeadOptions; streams?: StreamId[]; n?: number; top1: Row['top1']; meanClassAccuracy: Row['mca']; seconds: number; folds: CrossValidationResult['folds'][] }>;
  for (const r of saved) {
    const c: Config = { name: r.name, feature: r.feature, head: r.head, ...(r.streams ? { streams: r.streams } : {}) };
    n = r.n ?? 300;
    rows.push({ config: c, default: isDefault(c), top1: r.top1, mca: r.meanClassAccuracy, seedTop1: r.folds.map((f) => f.reduce((a, x) => a + x.top1, 0) / f.length), folds: r.folds, seconds: r.seconds });
  }
  seedList = Array.from({ length: saved[0]?.folds.length ?? 1 }, (_, i) => i + 1);
} else {
  const data = resolve(values.data ?? join(PROJECT_ROOT, '..', 'shared', 'datasets', datasetName));
  if (!existsSync(join(data, dataset.manifest))) {
    process.stderr.write(`eval: ${join(data, dataset.manifest)} not found\n`);
    process.exit(2);
  }
  getLogger('warn');
  const config = loadConfig();
  const manifest = await readManifest(join(data, dataset.manifest), { requireLabel: true });
  n = manifest.items.length;
  const features = new Map<FeatureKind, { data: LabelledFeatures; extractor: { identity: Awaited<ReturnType<typeof createExtractor>>['identity']; sampling: Awaited<ReturnType<typeof createExtractor>>['sampling'] } }>();
  const policy = { kind: 'uniform' as const, frames: 16 };
  const geometry = { size: 224, crop: 'center' as const };
  for (const kind of [...new Set(selected.map((c) => c.feature))]) {
    const t0 = Date.now();
    const rt = runtimeFromConfig(config, { cacheDir: resolve(values['cache-dir'] as string), featureKind: kind });
    let feats: LabelledFeatures;
    let stats: { cached: number; embedded: number };
    let extractor: { identity: Awaited<ReturnType<typeof createExtractor>>['identity']; sampling: Awaited<ReturnType<typeof createExtractor>>['sampling'] };
    if (streamSets) {
      // every stream any set needs, extracted once (each cached in the store on its own)
      if (streamSets.includes('auto')) {
        // as train does: keypoint streams that see their subject in too few frames are not candidates
        const screen = await screenKeypointStreams(rt, policy, geometry, manifest.items, autoStreams);
        for (const x of screen.screened) process.stderr.write(`auto: ${x.stream} seen in ${(x.presence * 100).toFixed(0)} % of the frames of ${x.clips} clips: ${x.kept ? 'a candidate' : 'left out'}\n`);
        autoStreams = screen.kept;
      }
      const all = parseStreams(streamSets.map((set) => (set === 'auto' ? formatStreams(autoStreams) : formatStreams(set))).join(','));
      const sx = await createStreamExtractor(rt, policy, geometry, all);
      feats = await collectStreamFeatures(manifest.items, sx);
      await sx.dispose();
      for (const [id, c] of Object.entries(sx.cost)) costs[id] = c;
      stats = sx.stats;
      extractor = { identity: sx.identity, sampling: sx.sampling };
    } else {
      const x = await createExtractor(rt, policy, geometry);
      feats = await collectFeatures(manifest.items, x);
      await x.dispose();
      stats = x.stats;
      extractor = x;
    }
    if (feats.failed.length > 0) process.stderr.write(`${kind}: ${feats.failed.length} clips failed: ${feats.failed.map((f) => f.source).join(', ')}\n`);
    process.stderr.write(`${kind}: ${feats.examples.length} clips (${stats.cached} from the store, ${stats.embedded} embedded) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    features.set(kind, { data: feats, extractor });
  }
  for (const c of selected) {
    const f = features.get(c.feature);
    if (!f) continue;
    const data = c.streams && c.streams !== 'auto' ? withStreams(f.data, c.streams) : c.streams === 'auto' ? withStreams(f.data, autoStreams) : f.data;
    const t0 = Date.now();
    const perSeed: CrossValidationResult[] = [];
    for (const seed of seeds) {
      perSeed.push(
        await runCrossValidation({
          extractor: f.extractor,
          data,
          folds: dataset.folds,
          groupColumn: dataset.groupColumn,
          head: c.head,
          training: { seed, ...(members !== undefined ? { members } : {}) },
          ...(c.streams === 'auto' ? { auto: {}, baseline: true } : {}),
          ...(augment ? { augment: { options: augment, extractor: f.extractor as Awaited<ReturnType<typeof createExtractor>> } } : {}),
        }),
      );
    }
    // sd over every (seed, fold) result: the spread a user sees from one run on one fold
    const top1 = stats(perSeed.flatMap((r) => r.folds.map((x) => x.top1)));
    const mca = stats(perSeed.flatMap((r) => r.folds.map((x) => x.meanClassAccuracy)));
    const row: Row = { config: c, default: isDefault(c), top1, mca, seedTop1: perSeed.map((r) => r.mean.top1), folds: perSeed.map((p) => p.folds), seconds: (Date.now() - t0) / 1000 };
    rows.push(row);
    process.stderr.write(`${c.name.padEnd(34)} top-1 ${(top1.mean * 100).toFixed(1)} ± ${(top1.sd * 100).toFixed(1)}  mean class ${(mca.mean * 100).toFixed(1)} ± ${(mca.sd * 100).toFixed(1)}  (${row.seconds.toFixed(0)} s)\n`);
  }
}

const pct = (x: { mean: number; sd: number }): string => `${(x.mean * 100).toFixed(1)} ± ${(x.sd * 100).toFixed(1)}`;
const describe = (c: Config): string => {
  const h = parseHeadOptions(c.head);
  if (h.cell === 'mean') return `mean-pool → softmax${h.temporalDiff !== 'none' ? ` (diff ${h.temporalDiff})` : ''}`;
  const fused = c.streams && c.streams.length > 1 ? `${h.fusion} fusion: ` : '';
  return `${fused}proj ${h.projection} → ${h.bidirectional ? 'bi' : ''}${h.cell.toUpperCase()} ${h.units}${h.pooling === 'attention' ? ' → attention' : ''}, dropout ${h.dropout}${h.temporalDiff !== 'none' ? `, diff ${h.temporalDiff}` : ''}${h.summary === 'mean' ? ', + mean summary' : ''}`;
};
const several = seedList.length > 1;
const sorted = [...rows.filter((r) => r.default), ...rows.filter((r) => !r.default).sort((a, b) => b.top1.mean - a.top1.mean)];
const foldCount = sorted[0]?.folds[0]?.length ?? 0;
const lines = [
  `${datasetName}, ${dataset.foldNote} (n=${n}, ${dataset.classes}; chance ${(dataset.chance * 100).toFixed(1)} %), seed${several ? 's' : ''} ${seedList.join(',')}; mean ± sd over ${seedList.length * foldCount} fold results${augment ? `; training rows augmented (--augment ${values.augment})` : ''}`,
  '',
  `| configuration | ${rows.some((r) => r.config.streams) ? 'streams' : 'features'} | head | top-1 % | mean class acc. % |${several ? ' top-1 per seed |' : ''}`,
  `|---|---|---|---|---|${several ? '---|' : ''}`,
  ...sorted.map((r) => `| ${r.default ? '**default** ' : ''}${r.config.name.split(' ')[0]} | ${r.config.streams ? `${formatStreams(r.config.streams)} (${r.config.feature})` : r.config.feature} | ${describe(r.config)} | ${pct(r.top1)} | ${pct(r.mca)} |${several ? ` ${r.seedTop1.map((x) => (x * 100).toFixed(1)).join(' / ')} |` : ''}`),
];
for (const r of rows.filter((x) => x.config.streams === 'auto')) {
  // what auto chose in each (seed, fold), on that fold's training rows only
  const picks = new Map<string, number>();
  for (const f of r.folds.flat()) {
    const k = f.streams ? f.streams.join(',') : '?';
    picks.set(k, (picks.get(k) ?? 0) + 1);
  }
  const total = r.folds.flat().length;
  const base = r.folds.flat().filter((f) => f.baseline);
  lines.push('', `auto chose (inside each fold, on its training rows): ${[...picks.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}/${total}`).join(', ')}${base.length === total ? `; mean-pooling baseline on the chosen streams: ${pct(stats(base.map((f) => (f.baseline as { top1: number }).top1)))} top-1` : ''}`);
}
if (Object.keys(costs).length > 0) lines.push('', `embedding cost this run: ${Object.entries(costs).map(([id, c]) => `${id} ${((c.frames * 1000) / Math.max(1, c.ms)).toFixed(1)} frames/s`).join(', ')}`);
const table = `${lines.join('\n')}\n`;
process.stdout.write(`\n${table}`);
const out = resolve(values.out ?? join(PROJECT_ROOT, 'bench-results', `eval-${datasetName.replace(/_/g, '-')}${streamSets ? '-streams' : ''}.md`));
await mkdir(dirname(out), { recursive: true });
await writeFile(out, table);
if (!values['from-json']) await writeFile(out.replace(/\.md$/, '.json'), `${JSON.stringify(rows.map((r) => ({ name: r.config.name, feature: r.config.feature, head: parseHeadOptions(r.config.head), ...(r.config.streams ? { streams: r.config.streams } : {}), n, default: r.default, top1: r.top1, meanClassAccuracy: r.mca, seconds: r.seconds, folds: r.folds })), null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
