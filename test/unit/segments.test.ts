/**
 * Windows and segments, pure parts: the windows policy (grid, stride rounding, parsing, keys),
 * the window plan, the streaming window former (which frames, bounded memory), merging window
 * scores into segments (hysteresis, unknown, minimum duration) and the result schema v1.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';
import { isFramewiseError } from '../../src/errors/index.js';
import { segmentationFor, toWindowedResult } from '../../src/jobs/label.js';
import { assertValidResult, validateResult } from '../../src/jobs/result-schema.js';
import { DEFAULT_THRESHOLD, UNKNOWN_LABEL, meanScores, mergeSegments, resolveThreshold, toPieces, type ScoredSpan } from '../../src/jobs/segments.js';
import { WindowFormer, type FormedWindow, type WindowsOutcome } from '../../src/jobs/windows.js';
import { buildDecodeArgs, buildGridSelectExpr } from '../../src/media/ffmpeg-args.js';
import { buildWindowsPolicy, formatWindows, parseWindows, planWindows, samplingKey, windowGrid } from '../../src/media/sampling.js';
import type { TemporalHead } from '../../src/ml/head.js';

const geometry = { size: 224, crop: 'center' as const };
const failsWith = (fn: () => unknown, text: string): void => {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isFramewiseError(err, 'FW_ERR_CONFIG_INVALID'), String(err)).toBe(true);
  expect(String((err as Error).message)).toContain(text);
};

describe('windows policy', () => {
  it('defaults to 2 s windows every 1 s; frames on one grid every W/N seconds at the segment centres', () => {
    const p = buildWindowsPolicy(16);
    expect(p).toEqual({ kind: 'windows', windowSec: 2, strideSec: 1, frames: 16 });
    expect(windowGrid(p)).toEqual({ interval: 0.125, offset: 0.0625, rate: 8, strideSteps: 8 });
    expect(formatWindows(p)).toBe('windows:2,1:uniform:16');
  });

  it('rounds the stride to whole grid steps (so overlapping windows share frames), at least one step', () => {
    expect(buildWindowsPolicy(16, 3, 1).strideSec).toBe(0.9375); // 5 steps of 0.1875 s
    expect(buildWindowsPolicy(16, 2, 0.01).strideSec).toBe(0.125);
    expect(buildWindowsPolicy(8, 4, 4).strideSec).toBe(4);
  });

  it('parses W,S, W alone and auto; refuses the rest, saying what is allowed', () => {
    expect(parseWindows('4,2', 16)).toMatchObject({ windowSec: 4, strideSec: 2 });
    expect(parseWindows('3', 16)).toMatchObject({ windowSec: 3, strideSec: 1.5 });
    expect(parseWindows('auto', 16)).toMatchObject({ windowSec: 2, strideSec: 1 });
    failsWith(() => parseWindows('two', 16), 'W,S');
    failsWith(() => parseWindows('2,3', 16), 'S ≤ W');
    failsWith(() => parseWindows('0.01', 16), 'W ≤');
    failsWith(() => parseWindows('9999', 16), 'W ≤');
  });

  it('keys the feature store by the grid only, leaving the other policies\' keys as they were', () => {
    const a = samplingKey(buildWindowsPolicy(16, 2, 1), geometry);
    expect(a).toBe('windowsgrid0.125-224-center');
    expect(samplingKey(buildWindowsPolicy(16, 2, 0.5), geometry)).toBe(a); // same frames, other stride
    expect(samplingKey(buildWindowsPolicy(32, 4, 1), geometry)).toBe(a); // same grid
    expect(samplingKey(buildWindowsPolicy(16, 4, 1), geometry)).not.toBe(a);
    expect(samplingKey({ kind: 'uniform', frames: 16 }, geometry)).toBe('uniform16-224-center');
    expect(samplingKey({ kind: 'fps', fps: 2, maxFrames: 64 }, geometry)).toBe('fps2x64-224-center');
  });

  it('decodes in one pass at the grid rate: the first frame at or after each grid point, capped by the duration', () => {
    expect(buildGridSelectExpr(0.125, 0, 0.0625, 0.02)).toBe('gte(t\\,0.0425)*(isnan(prev_selected_t)+gt(floor((t-0.0425)*8)\\,floor((prev_selected_t-0.0425)*8)))');
    const plan = buildDecodeArgs('file:/x.mp4', buildWindowsPolicy(16), geometry, { demuxer: 'mov', duration: 3600, frameInterval: 0.04 }, undefined);
    const vf = plan.args[plan.args.indexOf('-vf') + 1] as string;
    expect(vf).toContain('floor((t-0.0425)*8)');
    expect(vf).toContain('crop=224:224');
    expect(plan.maxFrames).toBe(28_802);
    expect(plan.args.filter((a) => a === '-i')).toHaveLength(1);
  });
});

describe('window plan', () => {
  const p = buildWindowsPolicy(16); // 2 s every 1 s

  it('covers the video with W-second windows every S seconds', () => {
    const w = planWindows(p, 12);
    expect(w).toHaveLength(11);
    expect(w[0]).toEqual({ start: 0, end: 2 });
    expect(w[10]).toEqual({ start: 10, end: 12 });
  });

  it('adds one window aligned to the end when the last stride does not reach it', () => {
    const w = planWindows(p, 12.5);
    expect(w).toHaveLength(12);
    expect(w[11]).toEqual({ start: 10.5, end: 12.5 });
  });

  it('a video shorter than one window is one window', () => {
    expect(planWindows(p, 1.2)).toEqual([{ start: 0, end: 1.2 }]);
    expect(planWindows(p, 2)).toEqual([{ start: 0, end: 2 }]);
  });
});

/** Frames on the grid of `p` over `seconds`; each embedding holds its frame index (dim 2: [index, time]). */
function gridFrames(seconds: number, interval: number): Array<{ time: number; emb: Float32Array }> {
  const out: Array<{ time: number; emb: Float32Array }> = [];
  for (let j = 0; (j + 0.5) * interval < seconds; j++) out.push({ time: (j + 0.5) * interval, emb: Float32Array.from([j, (j + 0.5) * interval]) });
  return out;
}

function runFormer(former: WindowFormer, frames: Array<{ time: number; emb: Float32Array }>): { windows: FormedWindow[]; maxHeld: number } {
  const windows: FormedWindow[] = [];
  let maxHeld = 0;
  for (const f of frames) {
    windows.push(...former.push(f.time, f.emb));
    maxHeld = Math.max(maxHeld, former.heldFrames);
  }
  windows.push(...former.finish());
  return { windows, maxHeld };
}

describe('window former (streaming)', () => {
  const p = buildWindowsPolicy(16);

  it('forms the planned windows, each from its N grid frames, sharing frames between overlapping windows', () => {
    const { windows } = runFormer(new WindowFormer(p, 12, 2), gridFrames(12, 0.125));
    expect(windows.map((w) => ({ start: w.start, end: w.end }))).toEqual(planWindows(p, 12));
    for (const [k, w] of windows.entries()) {
      expect(w.count).toBe(16);
      const indices = Array.from({ length: w.count }, (_, i) => w.data[i * 2]);
      expect(indices).toEqual(Array.from({ length: 16 }, (_, i) => 8 * k + i)); // window k = grid frames 8k … 8k+15
    }
  });

  it('forms the end-aligned window from the last W seconds, and works without a declared duration', () => {
    const known = runFormer(new WindowFormer(p, 12.5, 2), gridFrames(12.5, 0.125)).windows;
    const last = known[known.length - 1] as FormedWindow;
    expect([last.start, last.end, last.count]).toEqual([10.5, 12.5, 16]);
    const unknown = runFormer(new WindowFormer(p, 0, 2), gridFrames(12.5, 0.125)).windows;
    expect(unknown.map((w) => [w.start, w.end, w.count])).toEqual(known.map((w) => [w.start, w.end, w.count]));
  });

  it('holds a bounded number of frames however long the video (one hour: 28,800 frames)', () => {
    const { windows, maxHeld } = runFormer(new WindowFormer(p, 3600, 2), gridFrames(3600, 0.125));
    expect(windows).toHaveLength(3599);
    expect(maxHeld).toBeLessThanOrEqual(16 + 8 + 2);
  });

  it('a short video is one window with the frames it has (the head pads and masks)', () => {
    const { windows } = runFormer(new WindowFormer(p, 1.2, 2), gridFrames(1.2, 0.125));
    expect(windows.map((w) => [w.start, w.end, w.count])).toEqual([[0, 1.2, 10]]);
  });

  it('a slow source gives windows with fewer frames, never duplicates', () => {
    const slow = gridFrames(6, 0.2); // 5 frames/s source under an 8 frames/s grid
    const { windows } = runFormer(new WindowFormer(p, 6, 2), slow);
    expect(windows).toHaveLength(5);
    for (const w of windows) expect(w.count).toBe(10);
  });
});

const LABELS = ['a', 'b', 'c'];
/** Windows of 2 s every 1 s over `classes.length + 1` seconds: window k scores `classes[k]` (or given rows). */
function windowsOf(rows: number[][]): ScoredSpan[] {
  return rows.map((scores, k) => ({ start: k, end: k + 2, scores }));
}
const hot = (c: number, p = 0.9): number[] => LABELS.map((_, i) => (i === c ? p : (1 - p) / (LABELS.length - 1)));
const opts = { threshold: 0.5, hysteresis: 0.1, minSegmentSec: 2 };

describe('merging window scores into segments', () => {
  it('pieces between window edges get the mean of the windows covering them', () => {
    const pieces = toPieces(windowsOf([hot(0, 1), hot(1, 1)]), 3);
    expect(pieces.map((p) => [p.start, p.end, Array.from(p.scores)])).toEqual([
      [0, 1, [1, 0, 0]],
      [1, 2, [0.5, 0.5, 0]],
      [2, 3, [0, 1, 0]],
    ]);
  });

  it('finds the segments of a video whose content changes, boundaries within one stride', () => {
    // 4 s of a, 4 s of b, 4 s of c; windows straddling a change score both
    const rows = [hot(0), hot(0), hot(0), [0.5, 0.45, 0.05], hot(1), hot(1), hot(1), [0.05, 0.45, 0.5], hot(2), hot(2), hot(2)];
    const segs = mergeSegments(windowsOf(rows), LABELS, opts);
    expect(segs.map((s) => s.label)).toEqual(['a', 'b', 'c']);
    expect(segs[0]?.start).toBe(0);
    expect(segs[2]?.end).toBe(12);
    expect(Math.abs((segs[1]?.start ?? 0) - 4)).toBeLessThanOrEqual(1);
    expect(Math.abs((segs[2]?.start ?? 0) - 8)).toBeLessThanOrEqual(1);
    for (let i = 1; i < segs.length; i++) expect(segs[i]?.start).toBe(segs[i - 1]?.end); // no gaps
    expect(segs[0]?.confidence).toBeGreaterThan(0.8);
  });

  it('says unknown where no class reaches the threshold (confidence: the best class\'s mean score there)', () => {
    const flat = [0.3, 0.35, 0.35];
    const segs = mergeSegments(windowsOf([hot(0), hot(0), hot(0), flat, flat, flat, flat, hot(2), hot(2), hot(2)]), LABELS, opts);
    expect(segs.map((s) => s.label)).toEqual(['a', UNKNOWN_LABEL, 'c']);
    const u = segs[1]!;
    expect(u.end - u.start).toBeGreaterThanOrEqual(2);
    expect(u.confidence).toBeLessThan(0.5);
    expect(mergeSegments(windowsOf([hot(0), hot(0)]), LABELS, { ...opts, threshold: 0.95 }).map((s) => s.label)).toEqual([UNKNOWN_LABEL]);
    // threshold 0: never unknown, every piece takes its most probable class
    expect(mergeSegments(windowsOf([hot(0), hot(0), flat, flat, flat, hot(2), hot(2)]), LABELS, { threshold: 0, hysteresis: 0, minSegmentSec: 2 }).map((s) => s.label)).not.toContain(UNKNOWN_LABEL);
  });

  it('hysteresis: a class holds while its score stays above threshold − hysteresis (no flicker around the threshold)', () => {
    const wobble = [hot(0, 0.9), hot(0, 0.45), hot(0, 0.55), hot(0, 0.42), hot(0, 0.56), hot(0, 0.44), hot(0, 0.9)];
    expect(mergeSegments(windowsOf(wobble), LABELS, { ...opts, minSegmentSec: 0 }).map((s) => s.label)).toEqual(['a']);
    const noHysteresis = mergeSegments(windowsOf(wobble), LABELS, { ...opts, hysteresis: 0, minSegmentSec: 0 }).map((s) => s.label);
    expect(noHysteresis).toContain(UNKNOWN_LABEL);
    // another class that reaches the threshold still takes over
    expect(mergeSegments(windowsOf([hot(0), hot(0), hot(1), hot(1), hot(1)]), LABELS, { ...opts, minSegmentSec: 0 }).map((s) => s.label)).toEqual(['a', 'b']);
  });

  it('minimum duration: a short blip is absorbed by the neighbour that scored higher over it', () => {
    const rows = [hot(0), hot(0), hot(0), hot(0), hot(1, 1), hot(0, 1), hot(0), hot(0)];
    expect(mergeSegments(windowsOf(rows), LABELS, { ...opts, minSegmentSec: 0 }).map((s) => [s.label, s.start, s.end])).toEqual([
      ['a', 0, 4],
      ['b', 4, 5],
      ['a', 5, 9],
    ]);
    const merged = mergeSegments(windowsOf(rows), LABELS, opts);
    expect(merged.map((s) => [s.label, s.start, s.end])).toEqual([['a', 0, 9]]);
    // a video shorter than the minimum keeps its one segment
    expect(mergeSegments(windowsOf([hot(1)]), LABELS, { ...opts, minSegmentSec: 10 }).map((s) => s.label)).toEqual(['b']);
  });

  it('threshold: --threshold, else the model\'s unknownThreshold, else the default', () => {
    expect(resolveThreshold(0.7, { unknownThreshold: 0.6 })).toEqual({ threshold: 0.7, source: 'option' });
    expect(resolveThreshold(undefined, { unknownThreshold: 0.6 })).toEqual({ threshold: 0.6, source: 'model' });
    expect(resolveThreshold(undefined, { id: 'x' })).toEqual({ threshold: DEFAULT_THRESHOLD, source: 'default' });
    expect(resolveThreshold(undefined, { unknownThreshold: 0 })).toEqual({ threshold: 0, source: 'model' }); // the model says: never unknown
    failsWith(() => resolveThreshold(1.5, undefined), '[0, 1]');
    failsWith(() => mergeSegments([], LABELS, { threshold: 0.5, hysteresis: 0.6, minSegmentSec: 0 }), 'hysteresis');
  });

  it('clip-level scores of a windowed result: the mean of the windows', () => {
    expect(Array.from(meanScores(windowsOf([[1, 0, 0], [0, 1, 0]]), 3))).toEqual([0.5, 0.5, 0]);
  });
});

describe('result schema v1', () => {
  const fakeHead = { labels: LABELS, metadata: { id: 'h', version: 'v1', labels: LABELS, sampling: { policy: { kind: 'uniform', frames: 16 } } } } as unknown as TemporalHead;
  const identity = { id: 'mobilenet_v2_mid' as const, version: 'nsfwjs@4.4.0', featureKind: 'pooled' as const, dim: 1792 };

  it('is a draft 2020-12 schema, published under schemas/', async () => {
    const doc = JSON.parse(await readFile(join(PROJECT_ROOT, 'schemas', 'result-v1.schema.json'), 'utf8')) as Record<string, unknown>;
    expect(doc.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('accepts the clip-level result of README "Label output" unchanged, and failures', async () => {
    const readme = await readFile(join(PROJECT_ROOT, 'README.md'), 'utf8');
    const line = /```json\n(\{"path".*\})\n```/.exec(readme)?.[1];
    expect(line).toBeDefined();
    assertValidResult(JSON.parse(line as string));
    assertValidResult({ path: 'x.mp4', ok: false, error: { code: 'FW_ERR_MEDIA_NOT_VIDEO', message: 'not a video' } });
  });

  it('accepts a windowed result, and refuses broken ones with the reason', () => {
    const policy = buildWindowsPolicy(16);
    const rows = [hot(0), hot(0), hot(0), hot(1), hot(1)];
    const outcome: WindowsOutcome = {
      windows: windowsOf(rows).map((w) => ({ start: w.start, end: w.end, frames: 16, scores: Float32Array.from(w.scores as number[]) })),
      video: { durationSec: 6, width: 320, height: 240, fps: 25 },
      frames: 40,
      cached: false,
      stored: true,
      backbone: { id: 'mobilenet_v2_mid', version: 'nsfwjs@4.4.0', featureKind: 'pooled', dim: 1792, inputSize: 224, engine: 'onnx', backend: 'onnx-cpu' },
      timings: { totalMs: 1, embedMs: 1, classifyMs: 1 },
    };
    const seg = segmentationFor(fakeHead, { policy });
    expect(seg).toEqual({ threshold: 0.5, thresholdSource: 'default', hysteresis: 0.1, minSegmentSec: 2, unknownLabel: 'unknown' });
    const r = toWindowedResult('long.mp4', outcome, fakeHead, identity, { policy, geometry }, seg, 2);
    assertValidResult(r);
    expect(r).toMatchObject({ label: 'a', aggregate: 'mean-of-windows', labels: LABELS, thresholds: { unknown: 0.5 }, sampling: { policy: 'windows:2,1:uniform:16', windowSec: 2, strideSec: 1, framesPerWindow: 16 } });
    // as for clip-level results: below the threshold, the top-level label is unknown (top-k unchanged)
    const mixed = toWindowedResult('mixed.mp4', outcome, fakeHead, identity, { policy, geometry }, { ...seg, threshold: 0.6 }, 2);
    expect([mixed.label, mixed.topK[0]?.label]).toEqual(['unknown', 'a']);
    assertValidResult(mixed);
    expect(r.segments?.map((s) => s.label)).toEqual(['a', 'b']);

    const broken = JSON.parse(JSON.stringify(r)) as Record<string, unknown>;
    (broken.segments as Array<Record<string, unknown>>)[0]!.confidence = 1.5;
    const v = validateResult(broken);
    expect(v.valid).toBe(false);
    expect(v.errors.join('\n')).toContain('/segments/0/confidence');
    const noLabels = { ...r, labels: undefined };
    expect(validateResult(JSON.parse(JSON.stringify(noLabels))).valid).toBe(false);
    expect(validateResult({ ...r, extra: 1 }).valid).toBe(false);
  });
});
