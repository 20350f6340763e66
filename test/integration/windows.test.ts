/**
 * Long-video labelling with the real ffmpeg, the real backbone and the bundled motion4 head:
 * a generated video whose content changes at known times gives the right segments, within one
 * stride of the true boundaries; one decode pass (one ffmpeg process), each frame embedded once;
 * the feature store on a second run; `label --windows` output (JSON Lines, CSV per segment);
 * plain `label` unchanged; every result valid against schemas/result-v1.schema.json.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_DIR, loadConfig } from '../../src/config/index.js';
import { labelWindowed, type LabelSuccess, type WindowsLabelOptions } from '../../src/jobs/label.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';
import { runtimeFromConfig } from '../../src/jobs/runtime.js';
import { createWindowsDeps } from '../../src/jobs/windows.js';
import { buildWindowsPolicy } from '../../src/media/sampling.js';
import { makeClip, randomClipSpec } from '../../src/media/synthetic.js';
import { TemporalHead } from '../../src/ml/head.js';
import { makeTempDir, makeTestsrc, removeDir } from '../helpers/clips.js';
import { freshCacheDir, TEST_ENGINE } from '../helpers/queue-fixtures.js';
import { resultLines, runCliInProcess } from '../helpers/cli-run.js';
import { makeChangingVideo } from '../helpers/windows-clips.js';

let dir: string;
let cacheDir: string;
let video: string;
let truth: { boundaries: number[]; labels: string[]; durationSec: number };
let head: TemporalHead;
let ffmpegLog: string;
let countingFfmpeg: string;

const policy = buildWindowsPolicy(16, 2, 1);
const options: WindowsLabelOptions = { policy, geometry: { size: 224, crop: 'center' } };

async function ffmpegRuns(): Promise<number> {
  const text = await readFile(ffmpegLog, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

/** Run the CLI in this process; every JSON line it prints is checked against the schema (jsonLines). */
const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => runCliInProcess(args, ['--cache-dir', cacheDir, '--engine', TEST_ENGINE]);
const jsonLines = resultLines;

beforeAll(async () => {
  dir = await makeTempDir('fw-windows-');
  cacheDir = await freshCacheDir(dir);
  video = join(dir, 'changing.mp4');
  truth = await makeChangingVideo(video);
  await makeClip({ ...randomClipSpec('zoom_in', 6078), seconds: 1.5, fps: 25 }, join(dir, 'short.mp4'));
  // an ffmpeg that notes each run, to count decode passes
  ffmpegLog = join(dir, 'ffmpeg-runs.log');
  countingFfmpeg = join(dir, 'ffmpeg-counting.sh');
  await writeFile(countingFfmpeg, `#!/bin/sh\necho run >> '${ffmpegLog}'\nexec ffmpeg "$@"\n`);
  await chmod(countingFfmpeg, 0o755);
  head = await TemporalHead.load(DEFAULT_MODEL_DIR);
});

afterAll(async () => {
  head?.dispose();
  await removeDir(dir);
});

function modelThreshold(): number {
  const t = head.metadata.unknownThreshold;
  if (t === undefined) throw new Error('the bundled head has no unknown threshold');
  return t;
}

describe('windows over a video whose content changes', () => {
  let first: LabelSuccess;

  it('finds zoom_in, pan_left, zoom_out with boundaries within one stride, in one decode pass', async () => {
    const rt = runtimeFromConfig(loadConfig({ FRAMEWISE_CACHE_DIR: cacheDir, FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' }), { featureKind: head.metadata.backbone.featureKind });
    const deps = await createWindowsDeps(rt);
    deps.tools = { ...deps.tools, ffmpegPath: countingFfmpeg };
    try {
      first = await labelWindowed(video, 'changing.mp4', head, deps, options, 3);
    } finally {
      await deps.dispose();
    }
    assertValidResult(first);
    expect(await ffmpegRuns()).toBe(1); // one sequential decode, never one ffmpeg per window
    // 12 s at the 8 frames/s grid: 96 frames embedded once, though 11 windows × 16 frames = 176 are classified
    expect(first.frames).toBe(96);
    expect(first.windows).toHaveLength(11);
    expect(first.windows?.every((w) => w.frames === 16)).toBe(true);
    expect(first.windows?.[0]).toMatchObject({ start: 0, end: 2 });
    expect(first.windows?.[10]).toMatchObject({ start: 10, end: 12 });

    const segs = first.segments ?? [];
    expect(segs.map((s) => s.label)).toEqual(truth.labels);
    expect(segs[0]?.start).toBe(0);
    expect(segs[segs.length - 1]?.end).toBeCloseTo(truth.durationSec, 1);
    for (const [i, b] of truth.boundaries.entries()) {
      expect(Math.abs((segs[i + 1]?.start ?? -99) - b), `boundary ${b} s found at ${segs[i + 1]?.start} s`).toBeLessThanOrEqual(policy.strideSec);
      expect(segs[i]?.end).toBe(segs[i + 1]?.start);
    }
    expect(first).toMatchObject({
      cached: false,
      aggregate: 'mean-of-windows',
      labels: head.labels,
      sampling: { policy: 'windows:2,1:uniform:16', size: 224, crop: 'center', windowSec: 2, strideSec: 1, framesPerWindow: 16 },
      // the bundled head carries the unknown threshold its training chose on validation data
      segmentation: { threshold: modelThreshold(), thresholdSource: 'model', hysteresis: 0.1, minSegmentSec: 2, unknownLabel: 'unknown' },
      model: { id: 'motion4' },
      backbone: { id: 'mobilenet_v2_mid', engine: TEST_ENGINE },
    });
    expect(first.video).toMatchObject({ width: 320, height: 240, fps: 25 });
    expect(first.topK.map((t) => t.label)).toEqual(expect.arrayContaining(['zoom_in', 'pan_left', 'zoom_out']));
    // three actions: no one label describes the whole video (its mean top probability is below the threshold)
    expect(first.label).toBe('unknown');
    expect(first.thresholds).toEqual({ unknown: modelThreshold() });
  });

  it('a second run reads the pass from the feature store: no decode, no backbone, the same windows', async () => {
    const rt = runtimeFromConfig(loadConfig({ FRAMEWISE_CACHE_DIR: cacheDir, FRAMEWISE_ENGINE: TEST_ENGINE, FRAMEWISE_LOG_LEVEL: 'warn' }), { featureKind: head.metadata.backbone.featureKind });
    const deps = await createWindowsDeps(rt);
    deps.tools = { ...deps.tools, ffmpegPath: countingFfmpeg };
    const runsBefore = await ffmpegRuns();
    let again: LabelSuccess;
    try {
      // another stride on the same grid uses the same stored frames
      again = await labelWindowed(video, 'changing.mp4', head, deps, options, 3);
      const half = await labelWindowed(video, 'changing.mp4', head, deps, { ...options, policy: buildWindowsPolicy(16, 2, 0.5) }, 3);
      assertValidResult(half);
      expect(half.cached).toBe(true);
      expect(half.windows).toHaveLength(21);
      expect(half.segments?.map((s) => s.label)).toEqual(truth.labels);
    } finally {
      expect(deps.loaded()).toBeUndefined(); // the backbone was never opened
      await deps.dispose();
    }
    assertValidResult(again);
    expect(await ffmpegRuns()).toBe(runsBefore);
    expect(again.cached).toBe(true);
    expect(again.backbone.engine).toBe('none (features from the store)');
    expect(again.windows?.map((w) => w.scores.map((p) => p.toFixed(3)))).toEqual(first.windows?.map((w) => w.scores.map((p) => p.toFixed(3))));
    expect(again.segments).toEqual(first.segments);
  });
});

describe('label --windows (CLI)', () => {
  it('prints one JSON line per input with windows and segments; failures are lines too', async () => {
    const r = await cli(['label', video, join(dir, 'short.mp4'), join(dir, 'missing.mp4'), '--windows', '2,1']);
    expect(r.code).toBe(1);
    const [missing, long, short] = jsonLines(r.stdout);
    expect(missing).toMatchObject({ ok: false, error: { code: 'FW_ERR_INPUT_NOT_FOUND' } });
    expect((long?.segments as Array<{ label: string }>).map((s) => s.label)).toEqual(truth.labels);
    // a video shorter than a window: one window over what there is, one segment
    expect(short?.windows).toHaveLength(1);
    const [only] = short?.windows as Array<{ start: number; end: number; frames: number }>;
    expect(only?.start).toBe(0);
    expect(only?.end).toBeCloseTo(1.5, 1);
    expect(only?.frames).toBe(12); // the grid frames of 1.5 s (the head pads and masks to 16)
    expect(short?.segments).toHaveLength(1);
  });

  it('--format csv: one row per segment (path,label,start,end,confidence), a failed input one row with its error', async () => {
    const r = await cli(['label', video, join(dir, 'missing.mp4'), '--windows', '2,1', '--format', 'csv']);
    const rows = parse(r.stdout, { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(rows[0] ?? {})).toEqual(['path', 'label', 'start', 'end', 'confidence', 'error_code', 'error_message']);
    const segs = rows.filter((x) => x.error_code === '');
    expect(segs.map((x) => x.label)).toEqual(truth.labels);
    expect(segs.every((x) => x.path === video && Number(x.confidence) > 0 && Number(x.end) > Number(x.start))).toBe(true);
    expect(rows.find((x) => x.error_code !== '')).toMatchObject({ error_code: 'FW_ERR_INPUT_NOT_FOUND', label: '' });
  });

  it('--threshold turns low-scoring time into unknown, and says where the threshold came from', async () => {
    const r = await cli(['label', video, '--windows', '2,1', '--threshold', '0.999', '--min-segment', '0']);
    const [res] = jsonLines(r.stdout);
    expect(res?.segmentation).toMatchObject({ threshold: 0.999, thresholdSource: 'option', minSegmentSec: 0 });
    expect((res?.segments as Array<{ label: string }>).map((s) => s.label)).toContain('unknown');
    expect(res?.cached).toBe(true);
  });

  it('bad windows settings are usage errors (exit 2), listing what is allowed', async () => {
    const bad = await cli(['label', video, '--windows', '2,5']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('FW_ERR_CONFIG_INVALID');
    expect(bad.stderr).toContain('S ≤ W');
    const noWindows = await cli(['label', video, '--threshold', '0.6']);
    expect(noWindows.code).toBe(2);
    expect(noWindows.stderr).toContain('--windows');
  });

  it('a truncated video fails with its documented code; the result is still schema-valid', async () => {
    const whole = await readFile(video);
    const cut = join(dir, 'cut.mp4');
    await writeFile(cut, whole.subarray(0, Math.floor(whole.length * 0.3)));
    const r = await cli(['label', cut, '--windows', '2,1']);
    const [res] = jsonLines(r.stdout);
    expect(res?.ok).toBe(false);
    expect((res?.error as { code: string }).code).toMatch(/^FW_ERR_MEDIA_(TRUNCATED|CORRUPT)$/);
  });
});

describe('decode time limit on a long pass', () => {
  it('a slow consumer does not count against the windows decode (an idle limit), while a clip decode keeps its total limit', async () => {
    const { probe, streamFrames } = await import('../../src/media/ffmpeg.js');
    const info = await probe(video);
    const tools = { ffmpegPath: 'ffmpeg', ffprobePath: 'ffprobe', maxPixels: 1e8, decodeTimeoutMs: 1000 };
    const slowly = async (p: Parameters<typeof streamFrames>[1]): Promise<number> => {
      let n = 0;
      for await (const _ of streamFrames(info, p, { size: 224, crop: 'center' }, { tools })) {
        n++;
        await new Promise((r) => setTimeout(r, 40)); // 96 frames ≈ 4 s: longer than the limit
      }
      return n;
    };
    await expect(slowly(policy)).resolves.toBe(96);
    await expect(slowly({ kind: 'fps', fps: 8, maxFrames: 1000 })).rejects.toMatchObject({ code: 'FW_ERR_MEDIA_DECODE_FAILED', message: expect.stringContaining('longer than 1000 ms') });
  });
});

describe('plain label is unchanged', () => {
  it('a short clip gives the clip-level result of README "Label output", exactly its fields, valid v1', async () => {
    const clip = join(dir, 'plain.mp4');
    await makeTestsrc(clip, { seconds: 2 });
    const r = await cli(['label', clip]);
    expect(r.code).toBe(0);
    const [res] = jsonLines(r.stdout);
    // the README contract's fields, in order (`thresholds` may follow: a model's unknown threshold, added by training)
    expect(Object.keys(res ?? {}).filter((k) => k !== 'thresholds')).toEqual(['path', 'ok', 'label', 'confidence', 'topK', 'model', 'backbone', 'sampling', 'frames', 'durationSec', 'cached']);
    for (const k of ['video', 'windows', 'segments', 'segmentation', 'labels', 'aggregate']) expect(res).not.toHaveProperty(k);
    expect(res?.sampling).toEqual({ policy: 'uniform:16', size: 224, crop: 'center' });
    expect(res?.frames).toBe(16);
  });
});
