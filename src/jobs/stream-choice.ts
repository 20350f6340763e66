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
import { meanSd, type UnknownRule } from '../ml/metrics.js';
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

/** Higher mean validation top-1; ties: fewer streams, then faster. */
const better = (a: StreamCandidate, b: StreamCandidate): boolean => a.mean > b.mean || (a.mean === b.mean && (a.streams.length < b.streams.length || (a.streams.length === b.streams.length && (a.framesPerSec ?? 0) > (b.framesPerSec ?? 0))));

/** The two best sets of those scored, together (canonical order), unless that set was tried already. */
function bestPair(scored: readonly StreamCandidate[]): StreamId[] | undefined {
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
  /** Training rows holding every candidate's streams: each of them alone is a candidate. */
  data: LabelledFeatures;
  /** Validation: a split of `data` (its seed moves with each member's), or separate rows. */
  val: SplitSpec | LabelledFeatures;
  head: Partial<HeadOptions>;
  /** Training options; `seed` and `members` give the members' seeds (seed, seed + 1, …). */
  training: Partial<TrainOptions>;
  id: string;
  baseline?: boolean;
  unknownRule?: UnknownRule;
  /** Frames/s per stream (the cost recorded beside each candidate). */
  speeds?: Partial<Record<StreamId, number>>;
  onEpoch?: (log: EpochLog) => void | Promise<void>;
  signal?: AbortSignal;
}

/** The candidates scored, and the winner's trained ensemble (the caller owns its head). */
export async function chooseStreams(o: ChooseStreamsOptions): Promise<{ choice: StreamChoice; result: TrainEnsembleResult }> {
  if (!('examples' in o.val) && o.val.kind === 'none') throw new FramewiseError('FW_ERR_CONFIG_INVALID', '--streams auto needs validation data (a split or --val-manifest)');
  const singles: StreamId[][] = (o.data.layout?.map((b) => b.id) ?? ['rgb']).map((id) => [id]);
  const scored: StreamCandidate[] = [];
  let best: { c: StreamCandidate; r: TrainEnsembleResult } | undefined;
  // each set trains the ensemble `train` would; only the best one's heads are kept
  const tryCandidate = async (streams: StreamId[]): Promise<void> => {
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
    const c: StreamCandidate = { streams, valTop1, ...meanSd(valTop1), framesPerSec: setSpeed(streams, o.speeds ?? {}) };
    scored.push(c);
    if (!best || better(c, best.c)) {
      best?.r.head.dispose();
      best = { c, r };
    } else r.head.dispose();
  };
  // cancelled: the best candidate so far is kept (a cancelled candidate keeps its best epoch)
  const stop = (): boolean => {
    if (!o.signal?.aborted) return false;
    if (best) return true;
    throw new FramewiseError('FW_ERR_JOB_CANCELLED', 'training was cancelled');
  };
  try {
    for (const streams of singles) {
      if (stop()) break;
      await tryCandidate(streams);
    }
    // greedy forward step: the two best together
    const pair = bestPair(scored);
    if (pair && !stop()) await tryCandidate(pair);
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
