/**
 * The head's input when it fuses several per-frame streams. Pure.
 *
 * A raw multi-stream example has, per time step, each stream's vector in the layout's order, each
 * keypoint stream's vector followed by its presence value (1 seen, 0 nothing seen: the vector is
 * then zero). The head transforms each stream's block on its own: the head's temporal-difference
 * option for the appearance streams (rgb, motion); for keypoint streams their positions with
 * their frame-to-frame velocities appended (`append`), the presence value kept as it is.
 */
import type { FeatureSequence } from '../features/feature-store.js';
import { isKeypointStream, type StreamId } from '../features/streams.js';

/** Frame-to-frame differences (local copy of head.ts's type, to keep this module free of tfjs). */
type TemporalDiff = 'none' | 'append' | 'only';

export interface StreamLayoutEntry {
  id: StreamId;
  /** Model and weights (and feature kind) of the stream, as recorded with a head. */
  version: string;
  /** Length of one frame's vector. */
  dim: number;
  /** A presence value follows the vector (keypoint streams). */
  masked: boolean;
}
export type StreamLayout = StreamLayoutEntry[];

/** Values per raw step. */
export const layoutRawDim = (layout: readonly StreamLayoutEntry[]): number => layout.reduce((n, s) => n + s.dim + (s.masked ? 1 : 0), 0);

/** The temporal-difference mode of a stream's block for a head option. */
export const streamDiff = (id: StreamId, headDiff: TemporalDiff): TemporalDiff => (isKeypointStream(id) ? 'append' : headDiff);

/** Where one stream's (transformed) block lies in the head's input step. */
export interface InputSpan {
  id: StreamId;
  offset: number;
  /** Values of the block, presence value included. */
  width: number;
  /** Index of the presence value in the step (masked streams). */
  maskAt?: number;
}

export function inputSpans(layout: StreamLayout, headDiff: TemporalDiff): InputSpan[] {
  let offset = 0;
  return layout.map((s) => {
    const d = streamDiff(s.id, headDiff) === 'append' ? 2 * s.dim : s.dim;
    const span: InputSpan = { id: s.id, offset, width: d + (s.masked ? 1 : 0), ...(s.masked ? { maskAt: offset + d } : {}) };
    offset += span.width;
    return span;
  });
}

export const layoutInputDim = (layout: StreamLayout, headDiff: TemporalDiff): number => inputSpans(layout, headDiff).reduce((n, s) => n + s.width, 0);

/**
 * One raw example from the streams' sequences of a clip (in layout order). Streams decoded
 * together have the same frame count; should they differ, the shortest count is kept.
 */
export function combineSequences(seqs: readonly FeatureSequence[], layout: StreamLayout): { data: Float32Array; count: number } {
  const count = Math.min(...seqs.map((s) => s.count));
  const raw = layoutRawDim(layout);
  const data = new Float32Array(count * raw);
  for (let t = 0; t < count; t++) {
    let o = t * raw;
    layout.forEach((s, i) => {
      const seq = seqs[i] as FeatureSequence;
      data.set(seq.data.subarray(t * s.dim, (t + 1) * s.dim), o);
      o += s.dim;
      if (s.masked) data[o++] = seq.present ? (seq.present[t] as number) : 1;
    });
  }
  return { data, count };
}

/**
 * Raw steps from each stream's block of `count` frames (in layout order; a keypoint stream's
 * `present` gives its presence values, 1 where absent): what `combineSequences` makes of whole
 * sequences, for frames that arrive a batch at a time (windows). A single unmasked stream is its
 * own raw step (returned as it is).
 */
export function combineBlocks(blocks: ReadonlyArray<{ data: Float32Array; present?: Uint8Array | undefined }>, layout: readonly StreamLayoutEntry[], count: number): Float32Array {
  if (layout.length === 1 && !(layout[0] as StreamLayoutEntry).masked) return (blocks[0] as { data: Float32Array }).data.subarray(0, count * (layout[0] as StreamLayoutEntry).dim);
  const raw = layoutRawDim(layout);
  const data = new Float32Array(count * raw);
  for (let t = 0; t < count; t++) {
    let o = t * raw;
    layout.forEach((s, i) => {
      const b = blocks[i] as { data: Float32Array; present?: Uint8Array | undefined };
      data.set(b.data.subarray(t * s.dim, (t + 1) * s.dim), o);
      o += s.dim;
      if (s.masked) data[o++] = b.present ? (b.present[t] as number) : 1;
    });
  }
  return data;
}

/** The head's input of one raw example: each stream's block transformed (see the file header). */
export function transformLayout(ex: { data: Float32Array; count: number }, layout: StreamLayout, headDiff: TemporalDiff): { data: Float32Array; count: number } {
  const raw = layoutRawDim(layout);
  const spans = inputSpans(layout, headDiff);
  const width = spans.reduce((n, s) => n + s.width, 0);
  const data = new Float32Array(ex.count * width);
  for (let t = 0; t < ex.count; t++) {
    let src = t * raw;
    layout.forEach((s, i) => {
      const span = spans[i] as InputSpan;
      const mode = streamDiff(s.id, headDiff);
      const dst = t * width + span.offset;
      if (mode !== 'only') data.set(ex.data.subarray(src, src + s.dim), dst);
      const diffAt = mode === 'append' ? dst + s.dim : dst;
      if (mode !== 'none' && t > 0) {
        // a keypoint stream's velocity is zero where either frame saw nothing
        const seen = !s.masked || ((ex.data[src + s.dim] as number) > 0 && (ex.data[src - raw + s.dim] as number) > 0);
        if (seen) for (let d = 0; d < s.dim; d++) data[diffAt + d] = (ex.data[src + d] as number) - (ex.data[src - raw + d] as number);
      }
      if (s.masked) data[t * width + (span.maskAt as number)] = ex.data[src + s.dim] as number;
      src += s.dim + (s.masked ? 1 : 0);
    });
  }
  return { data, count: ex.count };
}

/** The raw examples of a subset of the layout's streams (a candidate stream set; no re-embedding). */
export function selectStreams(examples: ReadonlyArray<{ data: Float32Array; count: number }>, layout: StreamLayout, ids: readonly StreamId[]): { examples: Array<{ data: Float32Array; count: number }>; layout: StreamLayout } {
  const raw = layoutRawDim(layout);
  const blocks: Array<{ from: number; to: number }> = [];
  let o = 0;
  for (const s of layout) {
    const w = s.dim + (s.masked ? 1 : 0);
    if (ids.includes(s.id)) blocks.push({ from: o, to: o + w });
    o += w;
  }
  const sub = layout.filter((s) => ids.includes(s.id));
  const out = layoutRawDim(sub);
  return {
    layout: sub,
    examples: examples.map((ex) => {
      const data = new Float32Array(ex.count * out);
      for (let t = 0; t < ex.count; t++) {
        let d = t * out;
        for (const b of blocks) {
          data.set(ex.data.subarray(t * raw + b.from, t * raw + b.to), d);
          d += b.to - b.from;
        }
      }
      return { data, count: ex.count };
    }),
  };
}
