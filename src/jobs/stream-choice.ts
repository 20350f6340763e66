/**
 * `--streams auto`: the stream set chosen on the training data's own validation split.
 *
 * Each candidate set trains the head on the training rows over several seeds, each seed with its
 * own validation split (group-aware when the split names a group column; a separate validation
 * manifest is used as it is), and is scored by its mean validation top-1. The best mean wins; a
 * tie goes to the cheaper set (fewer streams, then more frames/s). Test data is never seen.
 * Features are cached per stream, so candidates re-embed nothing.
 */
import { FramewiseError } from '../errors/index.js';
import type { StreamId } from '../features/streams.js';
import { formatStreams } from '../features/streams.js';
import type { HeadOptions, TrainOptions } from '../ml/head.js';
import { withStreams } from './stream-features.js';
import { trainHead, type LabelledFeatures, type SplitSpec, type TrainHeadOptions } from './train.js';

export interface StreamCandidate {
  streams: StreamId[];
  /** Validation top-1 per seed, and their mean and sample sd. */
  valTop1: number[];
  mean: number;
  sd: number;
  /** Embedding speed of the set (frames/s of all its streams one after the other), when measured. */
  framesPerSec: number | null;
}

export interface StreamChoice {
  chosen: StreamId[];
  rule: string;
  seeds: number[];
  candidates: StreamCandidate[];
}

/** Candidate sets from the streams available: each alone, rgb with each other, and all together. */
export function candidateSets(available: readonly StreamId[]): StreamId[][] {
  const sets: StreamId[][] = available.map((s) => [s]);
  if (available.includes('rgb')) for (const s of available) if (s !== 'rgb') sets.push(['rgb', s]);
  if (available.length > 2) sets.push([...available]);
  return sets;
}

/** Frames/s of a set's embedding from per-stream speeds (the streams run one after another on a frame). */
export function setSpeed(streams: readonly StreamId[], perStream: Partial<Record<StreamId, number>>): number | null {
  let secPerFrame = 0;
  for (const s of streams) {
    const fps = perStream[s];
    if (fps === undefined || !(fps > 0)) return null;
    secPerFrame += 1 / fps;
  }
  return secPerFrame > 0 ? 1 / secPerFrame : null;
}

export interface ChooseStreamsOptions {
  extractor: TrainHeadOptions['extractor'];
  /** Training rows holding every candidate's streams. */
  data: LabelledFeatures;
  /** Validation: a split of `data` (its seed is replaced by each seed's), or separate rows. */
  val: SplitSpec | LabelledFeatures;
  candidates: StreamId[][];
  seeds: number[];
  head: Partial<HeadOptions>;
  training: Partial<TrainOptions>;
  /** Frames/s per stream (the cost recorded beside each candidate). */
  speeds?: Partial<Record<StreamId, number>>;
  onCandidate?: (c: StreamCandidate, index: number, total: number) => void;
  signal?: AbortSignal;
}

export async function chooseStreams(o: ChooseStreamsOptions): Promise<StreamChoice> {
  if (o.candidates.length === 0) throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--streams auto has no candidate stream set');
  const results: StreamCandidate[] = [];
  for (const [i, streams] of o.candidates.entries()) {
    const train = withStreams(o.data, streams);
    const val = 'examples' in o.val ? withStreams(o.val, streams) : undefined;
    const valTop1: number[] = [];
    for (const seed of o.seeds) {
      if (o.signal?.aborted) throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
      const split: SplitSpec | LabelledFeatures = val ?? ('seed' in o.val ? { ...o.val, seed } : (o.val as SplitSpec));
      if (!('examples' in split) && split.kind === 'none') throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--streams auto needs validation data (a split or --val-manifest)');
      const r = await trainHead({ extractor: o.extractor, train, val: split, id: `auto-${formatStreams(streams)}`, head: o.head, training: { ...o.training, seed }, baseline: false, unknownRule: { kind: 'none' }, ...(o.signal ? { signal: o.signal } : {}) });
      r.head.dispose();
      valTop1.push(r.valMetrics?.top1 ?? 0);
    }
    const mean = valTop1.reduce((a, b) => a + b, 0) / valTop1.length;
    const sd = valTop1.length > 1 ? Math.sqrt(valTop1.reduce((a, x) => a + (x - mean) ** 2, 0) / (valTop1.length - 1)) : 0;
    const c: StreamCandidate = { streams, valTop1, mean, sd, framesPerSec: setSpeed(streams, o.speeds ?? {}) };
    results.push(c);
    o.onCandidate?.(c, i, o.candidates.length);
  }
  const best = [...results].sort((a, b) => b.mean - a.mean || a.streams.length - b.streams.length || (b.framesPerSec ?? 0) - (a.framesPerSec ?? 0))[0] as StreamCandidate;
  return { chosen: best.streams, rule: `highest mean validation top-1 over seeds ${o.seeds.join(',')}; ties: fewer streams, then faster`, seeds: o.seeds, candidates: results };
}
