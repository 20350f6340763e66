/**
 * Training-time augmentation: jittered samplings and mirrored copies of the training rows, made
 * at extraction and stored in the feature store like any features.
 */
import { FramewiseError } from '../errors/index.js';
import type { Extractor, ExtractStats } from '../features/extract.js';
import { addTimings, createStageTimings } from '../features/pipeline-schedule.js';
import { type InputItem } from '../features/inputs.js';
import { concatFeatures, makeSplit, subset, collectFeatures, type LabelledFeatures, type SplitSpec } from './head-training.js';

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
