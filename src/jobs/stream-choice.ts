/**
 * `--streams auto`: the stream set chosen on the training data's own validation splits.
 *
 * Candidates: each available stream alone, then the two best of those together (a greedy
 * forward step: fusing streams rarely helped on the real data, docs/training.md, and every set
 * costs a full training). Each candidate set trains the ensemble `train` would train (ensemble.ts: one member per seed,
 * each with its own validation split, group-aware when the split names a group column; a
 * separate validation manifest is used as it is) and is scored by its members' mean validation
 * top-1. The best mean wins; a tie goes to the cheaper set (fewer streams, then more frames/s).
 * The winner's trained ensemble is the model: nothing is trained again. Test data is never seen.
 * Features are cached per stream, so candidates re-embed nothing.
 */
import { FramewiseError } from '../errors/index.js';
import { formatStreams, STREAM_IDS, type StreamId } from '../features/streams.js';
import type { EpochLog, HeadOptions, TrainOptions } from '../ml/head.js';
import type { UnknownRule } from '../ml/metrics.js';
import { trainEnsemble, type TrainEnsembleResult } from './ensemble.js';
import { withStreams, type StreamScreen } from './stream-features.js';
import type { LabelledFeatures, SplitSpec, TrainHeadOptions } from './head-training.js';

export interface StreamCandidate {
  streams: StreamId[];
  /** Validation top-1 per member (seed), and their mean and sample sd. */
  valTop1: number[];
  mean: number;
  sd: number;
  /** Embedding speed of the set (frames/s of all its streams one after the other), when measured. */
  framesPerSec: number | null;
}

export interface StreamChoice {
  chosen: StreamId[];
  /** Keypoint streams screened before the candidates were made: presence in a sample of clips, and whether each was kept. */
  screened?: StreamScreen[];
  rule: string;
  seeds: number[];
  candidates: StreamCandidate[];
}

/** The first candidate sets from the streams available: each alone (the best two are then tried together, see `chooseStreams`). */
export function candidateSets(available: readonly StreamId[]): StreamId[][] {
  return available.map((s) => [s]);
}

/** The two best sets of those scored, together (canonical order), unless that set was tried already. */
export function bestPair(scored: readonly StreamCandidate[], better: (a: StreamCandidate, b: StreamCandidate) => boolean): StreamId[] | undefined {
  const ranked = [...scored].sort((a, b) => (better(a, b) ? -1 : better(b, a) ? 1 : 0));
  const [a, b] = ranked;
  if (!a || !b) return undefined;
  const union = STREAM_IDS.filter((id) => a.streams.includes(id) || b.streams.includes(id));
  return scored.some((c) => formatStreams(c.streams) === formatStreams(union)) ? undefined : union;
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
  /** Validation: a split of `data` (its seed moves with each member's), or separate rows. */
  val: SplitSpec | LabelledFeatures;
  candidates: StreamId[][];
  head: Partial<HeadOptions>;
  /** Training options; `seed` and `members` give the members' seeds (seed, seed + 1, …). */
  training: Partial<TrainOptions>;
  id: string;
  baseline?: boolean;
  unknownRule?: UnknownRule;
  /** Frames/s per stream (the cost recorded beside each candidate). */
  speeds?: Partial<Record<StreamId, number>>;
  /** After the given candidates, also try the two best of them together. @defaultValue true */
  pairBest?: boolean;
  onCandidate?: (c: StreamCandidate, index: number, total: number) => void;
  onEpoch?: (log: EpochLog) => void | Promise<void>;
  signal?: AbortSignal;
}

/** The candidates scored, and the winner's trained ensemble (the caller owns its head). */
export async function chooseStreams(o: ChooseStreamsOptions): Promise<{ choice: StreamChoice; result: TrainEnsembleResult }> {
  if (o.candidates.length === 0) throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--streams auto has no candidate stream set');
  if (!('examples' in o.val) && o.val.kind === 'none') throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--streams auto needs validation data (a split or --val-manifest)');
  const scored: StreamCandidate[] = [];
  let best: { c: StreamCandidate; r: TrainEnsembleResult } | undefined;
  const better = (a: StreamCandidate, b: StreamCandidate): boolean => a.mean > b.mean || (a.mean === b.mean && (a.streams.length < b.streams.length || (a.streams.length === b.streams.length && (a.framesPerSec ?? 0) > (b.framesPerSec ?? 0))));
  const queue = o.candidates.map((c) => [...c]);
  let paired = false;
  try {
    for (let i = 0; i < queue.length; i++) {
      const streams = queue[i] as StreamId[];
      // cancelled: the best candidate so far is kept (a cancelled candidate keeps its best epoch)
      if (o.signal?.aborted) {
        if (best) break;
        throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
      }
      const r = await trainEnsemble({
        extractor: o.extractor,
        train: withStreams(o.data, streams),
        val: 'examples' in o.val ? withStreams(o.val, streams) : o.val,
        id: o.id,
        head: o.head,
        training: o.training,
        label: formatStreams(streams),
        ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
        ...(o.unknownRule ? { unknownRule: o.unknownRule } : {}),
        ...(o.onEpoch ? { onEpoch: o.onEpoch } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
      const valTop1 = r.members.map((m) => m.valTop1 ?? 0);
      const mean = valTop1.reduce((a, b) => a + b, 0) / valTop1.length;
      const sd = valTop1.length > 1 ? Math.sqrt(valTop1.reduce((a, x) => a + (x - mean) ** 2, 0) / (valTop1.length - 1)) : 0;
      const c: StreamCandidate = { streams, valTop1, mean, sd, framesPerSec: setSpeed(streams, o.speeds ?? {}) };
      scored.push(c);
      // greedy forward step: once the given sets are scored, the two best together
      if (i === queue.length - 1 && !paired && o.pairBest !== false) {
        paired = true;
        const pair = bestPair(scored, better);
        if (pair) queue.push(pair);
      }
      o.onCandidate?.(c, i, queue.length);
      if (!best || better(c, best.c)) {
        best?.r.head.dispose();
        best = { c, r };
      } else r.head.dispose();
    }
  } catch (err) {
    best?.r.head.dispose();
    throw err;
  }
  const winner = best as { c: StreamCandidate; r: TrainEnsembleResult };
  const seeds = winner.r.members.map((m) => m.seed);
  return {
    choice: { chosen: winner.c.streams, rule: `highest mean validation top-1 of the members (seeds ${seeds.join(',')}, each its own validation split); ties: fewer streams, then faster`, seeds, candidates: scored },
    result: winner.r,
  };
}
