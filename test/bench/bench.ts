/**
 * `npm run bench`: speed of each stage on this machine, printed and written to
 * bench-results/bench.json. Clips are generated here (lavfi), so runs are comparable.
 *
 *   decode      framewise decode vs bare ffmpeg on the same 720p30 clip (frames/s, ratio)
 *   embed       frames/s per engine/backend and batch size (same frames, same weights)
 *   head        training time of the default head (fused biLSTM, src/ml/fused-lstm.ts) for 10
 *               epochs on 1,000 stored 16×1792 sequences, per epoch; predict time per clip
 *               (before/after figures: docs/training.md, "Training speed")
 *   end-to-end  clips/min for 16-frame clips, decode overlapped with embed, vs embed-only rate
 *   queue       (when available) clips/min through BullMQ with N decode workers + 1 embed worker
 *   windows     long videos (`label --windows`, default 2 s windows every 1 s, bundled head):
 *               1, 10 and 60 minutes of 160x120 lavfi video; RSS after each and peak during
 *               each (flat with length), windows/s and frames/s
 *   stream-sets end-to-end clips/s on real surv_fight clips (../shared/datasets/surv_fight),
 *               empty feature store: rgb alone (the classic extractor) beside the default
 *               stream set and rgb,motion (one decode per clip feeding every stream), with the
 *               frames/s of each stream's embedding
 *   streams     frames/s of the keypoint streams (pose: MoveNet MultiPose on surv_fight fight
 *               clips; hands: palm detector + landmarks on egogestar_dev clips; 256² letterboxed
 *               frames from ../shared/datasets) per engine, beside the rgb backbone
 *               (mobilenet_v2_mid, onnx, batch 8) measured in the same run
 *   memory      peak RSS
 *   realclips   (only with `--only realclips`, needs ../shared/datasets/surv_fight) the first 100
 *               real CCTV clips: `extract` (fresh feature store, backbone opened before the clock)
 *               vs bare `ffmpeg -threads 2 -i F -vf scale=224:-2 -f null -` over the same clips,
 *               interleaved in the same run; the ratio, clips/s and the per-stage breakdown,
 *               for the rgb-only path and the default `motion` stream path
 *
 *   archive     (only with `--only archive`) a batch of a synthetic archive of 100,000 distinct
 *               small files through the HTTP API, the ingest worker and stand-in stage workers:
 *               time to 202, ingest files/s, p50/p99 of GET /healthz and GET /v1/batches/:id
 *               during the ingest, Redis used memory at peak and after, `results export` of every
 *               row with its peak RSS (test/bench/archive-bench.ts); then a 500-clip batch through
 *               the whole pipeline (real workers) against inline `label` of the same clips, clips/s
 *   archive-ingest (only with `--only archive-ingest`) the ingest alone: 20,000 files listed,
 *               hashed, recorded and queued with no stage worker and no window to wait at
 *
 * Options: --quick (fewer repeats), --only decode,embed,head,e2e,queue,windows,streams,stream-sets,realclips,archive,archive-ingest,
 *          --windows-minutes 1,10,60 (the video lengths of the windows section),
 *          --windows-model DIR (the head the windows section labels with: default the bundled one;
 *          a head over other streams, e.g. motion,pose, measures the multi-stream pass),
 *          --realclips N (how many surv_fight clips, default 100), --reps R (realclips passes, default 2),
 *          --realclips-paths rgb,motion (which extract paths; default both; `rgb-before`, `motion-before`:
 *          the same with ffprobe per clip and one ffmpeg process per clip, as before issue 12's last changes),
 *          --archive-files N (default 100000; 5000 with --quick), --archive-clips N (default 500; 40 with
 *          --quick; 0: none), --archive-ingest-files N (default 20000; 5000 with --quick)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, PROJECT_ROOT } from '../../src/config/index.js';
import { createExtractor, runtimeFromConfig } from '../../src/jobs/runtime.js';
import { decodeFrames, probe, streamFrames } from '../../src/media/ffmpeg.js';
import { MOTIONS, makeClip, randomClipSpec, runFfmpeg } from '../../src/media/synthetic.js';
import { createBackbone } from '../../src/ml/backbone-specs.js';
import type { Backbone, BackboneId } from '../../src/ml/backbone.js';
import { fitNormalization, HEAD_OPTIONS_SCHEMA, TemporalHead, type SequenceExample } from '../../src/ml/head.js';
import { DEFAULT_TRAIN_FEATURE } from '../../src/jobs/train.js';
import { readManifest } from '../../src/features/inputs.js';
import { DEFAULT_STREAMS, formatStreams, type StreamId } from '../../src/features/streams.js';
import { createStreamExtractor } from '../../src/jobs/stream-features.js';
import type { FrameStream, LetterboxedFrames } from '../../src/ml/streams/frame-stream.js';
import { loadHandsStream } from '../../src/ml/streams/hands-stream.js';
import { loadOrt, openStreamSession, streamThreads } from '../../src/ml/streams/onnx-session.js';
import { loadPoseStream } from '../../src/ml/streams/pose-stream.js';
import { ensureOnnxModel } from '../../src/ml/onnx/onnx-cache.js';
import { makeTempDir, removeDir } from '../helpers/clips.js';
import { decodeLetterboxed } from '../helpers/letterbox.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'windows-minutes': { type: 'string' },
    'windows-model': { type: 'string' },
    realclips: { type: 'string' },
    'realclips-paths': { type: 'string' },
    reps: { type: 'string' },
    'archive-files': { type: 'string' },
    'archive-clips': { type: 'string' },
    'archive-ingest-files': { type: 'string' },
  },
});
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (s: string): boolean => !only || only.has(s);
/** Stages that run only when named in --only (they need data from outside the project). */
const wantNamed = (s: string): boolean => only?.has(s) ?? false;
const quick = values.quick ?? false;

const results: Record<string, unknown> = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
  date: new Date().toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
};
let peakRss = 0;
const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 100);

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const fmt = (x: number, d = 1): string => x.toFixed(d);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

function timeCommand(bin: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(bin, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${bin} exited ${code}`))));
  });
}

async function benchDecode(dir: string): Promise<void> {
  const clip = join(dir, 'hd.mp4');
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', '10', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', clip]);
  const info = await probe(clip);
  const frames = Math.round(info.durationSec * info.fps);
  const reps = quick ? 1 : 3;
  const bare: number[] = [];
  const ours: number[] = [];
  const uniform: number[] = [];
  for (let r = 0; r < reps; r++) {
    const ms = await timeCommand('ffmpeg', ['-v', 'error', '-threads', '0', '-i', clip, '-vf', 'scale=224:224:force_original_aspect_ratio=increase:flags=area,crop=224:224', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-y', '/dev/null']);
    bare.push((frames / ms) * 1000);
    let t0 = performance.now();
    let n = 0;
    for await (const _ of streamFrames(info, { kind: 'fps', fps: 30, maxFrames: 100_000 }, { size: 224, crop: 'center' })) n++;
    ours.push((n / (performance.now() - t0)) * 1000);
    t0 = performance.now();
    await decodeFrames(info, { kind: 'uniform', frames: 16 }, { size: 224, crop: 'center' });
    uniform.push(performance.now() - t0);
  }
  const r = { clip: '1280x720 30 fps H.264, 10 s', bareFfmpegFps: median(bare), framewiseFps: median(ours), ratio: median(ours) / median(bare), uniform16Ms: median(uniform) };
  results.decode = r;
  log(`decode     bare ffmpeg ${fmt(r.bareFfmpegFps)} f/s · framewise ${fmt(r.framewiseFps)} f/s (ratio ${fmt(r.ratio, 2)}) · uniform:16 of the 10 s clip ${fmt(r.uniform16Ms, 0)} ms`);
}

async function makeFrames(dir: string, n: number): Promise<Uint8Array> {
  const clip = join(dir, 'frames.mp4');
  await makeClip(randomClipSpec('zoom_in', 7), clip);
  const b = await decodeFrames(await probe(clip), { kind: 'uniform', frames: n }, { size: 224, crop: 'center' });
  if (b.count < n) throw new Error(`expected ${n} frames, got ${b.count}`);
  return b.data;
}

async function embedRate(b: Backbone, frames: Uint8Array, count: number, reps: number): Promise<number> {
  const rates: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await b.embed(frames, count);
    rates.push((count / (performance.now() - t0)) * 1000);
  }
  return median(rates);
}

async function benchEmbed(dir: string, cacheDir: string): Promise<number> {
  const frames = await makeFrames(dir, 32);
  const rows: Array<{ engine: string; backend: string; backbone: string; batch: number; fps: number }> = [];
  const reps = quick ? 2 : 4;
  for (const backbone of ['mobilenet_v2_mid', 'mobilenet_v2'] as const) {
    for (const batch of [1, 4, 8]) {
      const b = await createBackbone({ id: backbone, engine: 'onnx', featureKind: 'pooled', cacheDir, batchSize: batch });
      rows.push({ engine: 'onnx', backend: b.info.backend, backbone, batch, fps: await embedRate(b, frames, 32, reps) });
      await b.dispose();
    }
  }
  for (const batch of [1, 8]) {
    const b = await createBackbone({ id: 'mobilenet_v2_mid', engine: 'tfjs', featureKind: 'pooled', cacheDir, backend: 'auto', batchSize: batch });
    rows.push({ engine: 'tfjs', backend: b.info.backend, backbone: 'mobilenet_v2_mid', batch, fps: await embedRate(b, frames, 16, 2) });
    await b.dispose();
  }
  results.embed = rows;
  for (const r of rows) log(`embed      ${r.engine.padEnd(4)} ${r.backend.padEnd(8)} ${r.backbone.padEnd(16)} batch ${r.batch}: ${fmt(r.fps)} frames/s`);
  const onnxMid = Math.max(...rows.filter((r) => r.engine === 'onnx' && r.backbone === 'mobilenet_v2_mid').map((r) => r.fps));
  const wasmMid = Math.max(...rows.filter((r) => r.engine === 'tfjs').map((r) => r.fps));
  results.embedSummary = { onnxMidFps: onnxMid, tfjsMidFps: wasmMid, speedup: onnxMid / wasmMid };
  log(`embed      onnx vs tfjs (mobilenet_v2_mid): ${fmt(onnxMid / wasmMid, 2)}×`);
  return onnxMid;
}

/** The default head in words, e.g. `projection 64 → lstm 128, dropout 0.3, pooling last, temporal diff none`. */
function describeHead(): string {
  const h = HEAD_OPTIONS_SCHEMA.parse({});
  return `projection ${h.projection} → ${h.bidirectional ? 'bi' : ''}${h.cell} ${h.units}${h.layers > 1 ? ` ×${h.layers}` : ''}, dropout ${h.dropout}, pooling ${h.pooling}, temporal diff ${h.temporalDiff}`;
}

async function benchHead(): Promise<void> {
  const T = 16;
  const dim = 1792;
  const n = 1000;
  const examples: SequenceExample[] = Array.from({ length: n }, (_, i) => ({ data: Float32Array.from({ length: T * dim }, (_, k) => Math.abs(Math.sin(i * 31 + k))), count: T }));
  const labels = examples.map((_, i) => i % 4);
  const head = await TemporalHead.create({
    labels: ['a', 'b', 'c', 'd'],
    backbone: { id: 'mobilenet_v2_mid', version: 'bench', dim, featureKind: DEFAULT_TRAIN_FEATURE },
    sampling: { policy: { kind: 'uniform', frames: T }, size: 224, crop: 'center' },
    sequenceLength: T,
    // the default head of `framewise train` (HEAD_OPTIONS_SCHEMA defaults)
    normalization: fitNormalization(examples.slice(0, 100), dim, {}),
  });
  const epochs = quick ? 2 : 10;
  const t0 = performance.now();
  const res = await head.train({ examples, labels }, undefined, { epochs, patience: 1000 });
  const trainMs = performance.now() - t0;
  const one = examples.slice(0, 1);
  await head.predict(one);
  const p0 = performance.now();
  const reps = 50;
  for (let i = 0; i < reps; i++) await head.predict(one);
  const predictMs = (performance.now() - p0) / reps;
  head.dispose();
  const r = { sequences: n, sequenceLength: T, dim, epochs: res.epochsRun, totalMs: trainMs, msPerEpoch: trainMs / res.epochsRun, predictMsPerClip: predictMs, head: describeHead(), feature: DEFAULT_TRAIN_FEATURE };
  results.head = r;
  log(`head       train ${r.epochs} epochs on ${n} sequences (16×1792, default head: ${r.head}): ${fmt(r.totalMs / 1000)} s (${fmt(r.msPerEpoch, 0)} ms/epoch) · predict ${fmt(r.predictMsPerClip, 1)} ms/clip`);
}

async function makeClips(dir: string, n: number, seed: number): Promise<string[]> {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = join(dir, `clip-${seed}-${i}.mp4`);
    await makeClip({ ...randomClipSpec(MOTIONS[i % 4] as (typeof MOTIONS)[number], seed + i), width: 640, height: 360, seconds: 2 }, p);
    paths.push(p);
  }
  return paths;
}

async function benchEndToEnd(dir: string, embedOnlyFps: number): Promise<void> {
  const n = quick ? 12 : 40;
  const clips = await makeClips(dir, n, 500);
  const rt = runtimeFromConfig(loadConfig({}), { cacheDir: join(dir, 'e2e-cache') });
  const extractor = await createExtractor(rt, { kind: 'uniform', frames: 16 }, { size: 224, crop: 'center' });
  // open the backbone before the clock starts (model load is not throughput)
  for await (const _ of extractor.extractMany([{ path: clips[0] as string }])) void _;
  const t0 = performance.now();
  let ok = 0;
  for await (const o of extractor.extractMany(clips.slice(1).map((path) => ({ path })))) if (o.ok) ok++;
  const ms = performance.now() - t0;
  await extractor.dispose();
  const clipsPerMin = (ok / ms) * 60_000;
  const embedOnlyClipsPerMin = (embedOnlyFps / 16) * 60;
  const r = { clips: ok, framesPerClip: 16, clipSize: '640x360 H.264, 2 s', clipsPerMin, embedOnlyClipsPerMin, ratio: clipsPerMin / embedOnlyClipsPerMin };
  results.endToEnd = r;
  log(`end-to-end ${ok} clips, 16 frames each: ${fmt(clipsPerMin)} clips/min (${fmt((clipsPerMin * 16) / 60)} frames/s) · embed-only ${fmt(embedOnlyClipsPerMin)} clips/min · ratio ${fmt(r.ratio, 2)}`);
}

/** End-to-end clips/s of stream sets on real CCTV clips, each from an empty store. */
async function benchStreamSets(dir: string): Promise<void> {
  const data = join(PROJECT_ROOT, '..', 'shared', 'datasets', 'surv_fight');
  if (!existsSync(join(data, 'groups.csv'))) {
    log(`stream-sets skipped: ${data} not found`);
    return;
  }
  const all = (await readManifest(join(data, 'groups.csv'), { requireLabel: true })).items;
  const items = all.filter((_, i) => i % 10 === 0).slice(0, quick ? 8 : 24);
  const warmItem = all[1] as (typeof all)[number]; // not among the measured clips
  const policy = { kind: 'uniform' as const, frames: 16 };
  const geometry = { size: 224, crop: 'center' as const };
  const sets: StreamId[][] = ([['rgb'], [...DEFAULT_STREAMS], ['rgb', 'motion']] as StreamId[][]).filter((s, i, all) => all.findIndex((t) => t.join() === s.join()) === i);
  const out: Array<Record<string, unknown>> = [];
  for (const [k, streams] of sets.entries()) {
    const rt = runtimeFromConfig(loadConfig({}), { cacheDir: join(dir, `sets-cache-${k}`) });
    const classic = streams.length === 1 && streams[0] === 'rgb';
    const x = classic ? await createExtractor(rt, policy, geometry) : await createStreamExtractor(rt, policy, geometry, streams);
    // open (and convert) the models before the clock starts: loading is not throughput
    for await (const _ of x.extractMany([warmItem])) void _;
    const before = 'cost' in x ? Object.fromEntries(Object.entries(x.cost).map(([id, c]) => [id, { ...c }])) : {};
    const t0 = performance.now();
    let ok = 0;
    for await (const o of x.extractMany(items)) if (o.ok) ok++;
    const sec = (performance.now() - t0) / 1000;
    const perStream = 'cost' in x ? Object.fromEntries(Object.entries(x.cost).map(([id, c]) => [id, ((c.frames - (before[id]?.frames ?? 0)) * 1000) / Math.max(1, c.ms - (before[id]?.ms ?? 0))])) : {};
    await x.dispose();
    const r = { streams: streams.join(','), default: formatStreams(streams) === formatStreams(DEFAULT_STREAMS), clips: ok, clipsPerSec: ok / sec, framesPerSecPerStream: perStream };
    out.push(r);
    log(`stream-sets ${r.streams.padEnd(18)}${r.default ? ' (default)' : '          '} ${ok} surv_fight clips: ${fmt(r.clipsPerSec, 2)} clips/s end to end${Object.keys(perStream).length ? ` · embedding ${Object.entries(perStream).map(([id, f]) => `${id} ${fmt(f)} frames/s`).join(', ')}` : ''}`);
  }
  results.streamSets = out;
}

async function benchQueue(dir: string): Promise<void> {
  let mod: { benchQueue?: (o: { clips: string[]; decodeWorkers: number }) => Promise<Record<string, unknown>> };
  try {
    const path = '../../src/jobs/queue/bench.js'; // optional module: resolved at run time
    mod = (await import(path)) as typeof mod;
  } catch {
    log('queue      (queue mode not built)');
    return;
  }
  if (!mod.benchQueue) return;
  const clips = await makeClips(dir, quick ? 8 : 24, 700);
  for (const decodeWorkers of [1, 2]) {
    const r = await mod.benchQueue({ clips, decodeWorkers });
    (results.queue as unknown[] | undefined) ? (results.queue as unknown[]).push(r) : (results.queue = [r]);
    log(`queue      ${decodeWorkers} decode worker(s) + 1 embed worker: ${fmt(Number(r.clipsPerMin))} clips/min (inline in the same run: ${fmt(Number(r.inlineClipsPerMin))})`);
  }
}

/**
 * Long videos: generate `minutes` of low-resolution lavfi video (fast to encode), label it window
 * by window with the bundled head, and record RSS after the run and its peak during the run.
 * Memory must not grow with the video's length (one decode pass, frames embedded in batches,
 * windows formed and classified as they complete).
 */
async function benchWindows(dir: string): Promise<void> {
  const { labelWindowed } = await import('../../src/jobs/label.js');
  const { createWindowsDeps } = await import('../../src/jobs/windows.js');
  const { buildWindowsPolicy } = await import('../../src/media/sampling.js');
  const { DEFAULT_MODEL_DIR } = await import('../../src/config/index.js');
  const minutes = (values['windows-minutes'] ?? (quick ? '1,5' : '1,10,60')).split(',').map(Number).filter((m) => m > 0);
  const head = await TemporalHead.load(values['windows-model'] ?? DEFAULT_MODEL_DIR);
  const meta = head.metadata;
  const streams = head.streams.map((s) => s.id);
  const frames = meta.sampling.policy.kind === 'uniform' ? meta.sampling.policy.frames : 16;
  const policy = buildWindowsPolicy(frames);
  const rt = runtimeFromConfig(loadConfig({}), { cacheDir: join(dir, 'windows-cache'), backbone: meta.backbone.id as BackboneId, featureKind: meta.backbone.featureKind });
  const deps = await createWindowsDeps(rt);
  const rows: Array<Record<string, number | string | boolean>> = [];
  try {
    // model loads are not throughput, nor part of the growth
    if (streams.some((s) => s === 'rgb' || s === 'motion')) await deps.backbone();
    for (const s of streams) if (s === 'pose' || s === 'hands') await deps.keypointStream?.(s);
    for (const m of minutes) {
      const video = join(dir, `long-${m}min.mp4`);
      const g0 = performance.now();
      await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=12', '-t', String(m * 60), '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', video]);
      const genMs = performance.now() - g0;
      global.gc?.();
      const rssBefore = process.memoryUsage.rss();
      let peak = rssBefore;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
      const t0 = performance.now();
      let result: Awaited<ReturnType<typeof labelWindowed>>;
      try {
        result = await labelWindowed(video, video, head, deps, { policy, geometry: { size: meta.sampling.size, crop: meta.sampling.crop } }, 3);
      } finally {
        clearInterval(sampler);
      }
      const ms = performance.now() - t0;
      const rssAfter = process.memoryUsage.rss();
      peak = Math.max(peak, rssAfter);
      const windows = result.windows?.length ?? 0;
      const row = {
        minutes: m,
        streams: streams.join(','),
        video: '160x120 12 fps H.264 (testsrc2, ultrafast)',
        generateSec: genMs / 1000,
        windows,
        framesEmbedded: result.frames,
        segments: result.segments?.length ?? 0,
        seconds: ms / 1000,
        windowsPerSec: (windows / ms) * 1000,
        framesPerSec: (result.frames / ms) * 1000,
        rssBeforeMiB: rssBefore / 2 ** 20,
        rssAfterMiB: rssAfter / 2 ** 20,
        peakRssMiB: peak / 2 ** 20,
        heapUsedMiB: process.memoryUsage().heapUsed / 2 ** 20,
        resultJsonKiB: JSON.stringify(result).length / 1024,
      };
      rows.push(row);
      log(
        `windows    ${streams.join(',')} ${String(m).padStart(3)} min: ${windows} windows, ${result.frames} frames in ${fmt(row.seconds, 0)} s (${fmt(row.windowsPerSec)} windows/s, ${fmt(row.framesPerSec)} frames/s) · RSS after ${fmt(row.rssAfterMiB, 0)} MiB, peak ${fmt(row.peakRssMiB, 0)} MiB (before ${fmt(row.rssBeforeMiB, 0)} MiB)`,
      );
      await removeDir(video).catch(() => undefined);
    }
  } finally {
    await deps.dispose();
    head.dispose();
  }
  results.windows = { policy: `W ${policy.windowSec} s, S ${policy.strideSec} s, ${policy.frames} frames per window`, engine: rt.engine, runs: rows };
}

/** Frames of several clips in one batch (all share the content rectangle of the first: same-size sources). */
async function letterboxedSet(paths: string[], frames: number, fps: number): Promise<LetterboxedFrames> {
  const parts = [];
  for (const p of paths) parts.push(await decodeLetterboxed(p, 256, frames, fps));
  const count = parts.reduce((n, p) => n + p.count, 0);
  const data = new Uint8Array(count * 256 * 256 * 3);
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { data, count, size: 256, content: parts[0]?.content ?? { x0: 0, y0: 0, w: 1, h: 1 } };
}

/** Wall-clock frames/s (median of reps) and frames per CPU-second of this process (all its threads): the latter barely moves with other load. */
async function streamRate(s: FrameStream, frames: LetterboxedFrames, reps: number): Promise<{ fps: number; cpuFps: number; present: number }> {
  const rates: number[] = [];
  const cpuRates: number[] = [];
  let present = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const out = await s.embed(frames);
    const cpu = process.cpuUsage(c0);
    rates.push((frames.count / (performance.now() - t0)) * 1000);
    cpuRates.push(frames.count / ((cpu.user + cpu.system) / 1e6));
    present = out.present.reduce((a, b) => a + b, 0) / frames.count;
  }
  return { fps: median(rates), cpuFps: median(cpuRates), present };
}

async function benchStreams(dir: string, cacheDir: string): Promise<void> {
  const data = join(PROJECT_ROOT, '..', 'shared', 'datasets');
  const fights = [1, 2, 3, 4].map((i) => join(data, 'surv_fight', 'fight', `fi00${i}.mp4`));
  const gestures = ['carret', 'circlecc', 'down', 'left'].map((g) => join(data, 'egogestar_dev', 'testvideo', `testvideo_${g}_1.mp4`));
  let poseFrames: LetterboxedFrames;
  let handFrames: LetterboxedFrames;
  try {
    poseFrames = await letterboxedSet(fights, 8, 8);
    handFrames = await letterboxedSet(gestures, 8, 4);
  } catch (err) {
    log(`streams    skipped: ${data} not readable (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
    return;
  }
  const reps = quick ? 2 : 3;
  const rows: Array<{ stream: string; engine: string; frames: number; batch: number; fps: number; cpuFps?: number; present: number }> = [];
  const rgbFrames = await makeFrames(dir, 32);
  const rgb = await createBackbone({ id: 'mobilenet_v2_mid', engine: 'onnx', featureKind: 'pooled', cacheDir, batchSize: 8 });
  const rgbFps = await embedRate(rgb, rgbFrames, 32, reps);
  await rgb.dispose();
  rows.push({ stream: 'rgb (mobilenet_v2_mid)', engine: 'onnx', frames: 32, batch: 8, fps: rgbFps, present: 1 });
  // the same backbone with the streams' session options (idle threads sleep): the fair yardstick
  const ort = await loadOrt();
  const model = await ensureOnnxModel('mobilenet_v2_mid', cacheDir);
  const session = await openStreamSession(ort, model.path, streamThreads(undefined));
  const runRgb = (): Promise<unknown> => session.run({ frames: new ort.Tensor('uint8', rgbFrames.subarray(0, 8 * 224 * 224 * 3), [8, 224, 224, 3]) });
  await runRgb();
  const sameRates: number[] = [];
  const sameCpu: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let b = 0; b < 4; b++) await runRgb();
    const cpu = process.cpuUsage(c0);
    sameRates.push((32 / (performance.now() - t0)) * 1000);
    sameCpu.push(32 / ((cpu.user + cpu.system) / 1e6));
  }
  await session.release();
  const rgbSame = median(sameRates);
  const rgbSameCpu = median(sameCpu);
  rows.push({ stream: 'rgb, streams options', engine: 'onnx', frames: 32, batch: 8, fps: rgbSame, cpuFps: rgbSameCpu, present: 1 });
  for (const engine of ['onnx', 'tfjs'] as const) {
    const pose = await loadPoseStream({ cacheDir, engine });
    rows.push({ stream: 'pose', engine, frames: poseFrames.count, batch: 1, ...(await streamRate(pose, poseFrames, engine === 'onnx' ? reps : 1)) });
    await pose.dispose();
    const hands = await loadHandsStream({ cacheDir, engine });
    rows.push({ stream: 'hands', engine, frames: handFrames.count, batch: 1, ...(await streamRate(hands, handFrames, engine === 'onnx' ? reps : 1)) });
    await hands.dispose();
  }
  results.streams = rows;
  for (const r of rows) {
    const keypoints = r.stream === 'hands' || r.stream === 'pose';
    const cpu = r.cpuFps === undefined ? '' : ` · ${fmt(r.cpuFps)} frames per CPU-second`;
    log(`streams    ${r.stream.padEnd(22)} ${r.engine.padEnd(4)} batch ${r.batch}: ${fmt(r.fps)} frames/s${cpu} on ${r.frames} frames${keypoints ? ` (present in ${fmt(100 * r.present, 0)} %; ${fmt(r.fps / rgbSame, 2)}× rgb)` : ''}`);
  }
}

/**
 * CPU time of this process (all its threads) and of its finished children (ffmpeg, ffprobe), in
 * ms: `/proc/self/stat` utime+stime and cutime+cstime. NaN where there is no /proc.
 */
async function cpuMs(): Promise<{ self: number; children: number }> {
  const { readFile } = await import('node:fs/promises');
  try {
    const stat = await readFile('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // fields 14-17 of proc(5), counted from field 3 (state) here; clock ticks of 10 ms
    const tick = 10;
    return { self: ((f[11] ?? NaN) + (f[12] ?? NaN)) * tick, children: ((f[13] ?? NaN) + (f[14] ?? NaN)) * tick };
  } catch {
    return { self: NaN, children: NaN };
  }
}

/**
 * Real clips: the first N of surv_fight, `extract` with a fresh feature store vs bare ffmpeg
 * decoding of the same clips (`-threads 2 -vf scale=224:-2 -f null -`), the passes interleaved in
 * the same run (the machine's load hits them alike); for each extract path (`rgb`: the rgb-only
 * decode, `Extractor`; `motion`: the default training stream, the multi-output decode,
 * `StreamExtractor`) the ratio of its time to bare decoding, clips/s and where its time went
 * (summed per stage; parallel stages overlap). Also the CPU time of each pass (this process and
 * its ffmpeg/ffprobe children), which the load of other processes disturbs far less than the wall
 * time.
 */
async function benchRealClips(dir: string): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  const { existsSync } = await import('node:fs');
  const { Extractor } = await import('../../src/features/extract.js');
  const { StreamExtractor } = await import('../../src/features/stream-extract.js');
  const { FeatureStore } = await import('../../src/features/feature-store.js');
  const { openBackbone } = await import('../../src/jobs/runtime.js');
  const { backboneIdentity } = await import('../../src/ml/backbone-specs.js');
  const { roundTimings } = await import('../../src/features/pipeline-schedule.js');
  const data = join(PROJECT_ROOT, '..', 'shared', 'datasets', 'surv_fight');
  if (!existsSync(join(data, 'manifest.csv'))) {
    log(`realclips  ${data} not found: skipped`);
    return;
  }
  const n = Number(values.realclips ?? 100);
  const reps = Math.max(1, Number(values.reps ?? (quick ? 1 : 2)));
  // `-before`: the same path as before the in-process MP4 reader and grouped decodes (ffprobe per clip, one ffmpeg per clip)
  const paths = (values['realclips-paths'] ?? 'rgb,motion').split(',') as Array<'rgb' | 'motion' | 'rgb-before' | 'motion-before'>;
  const rows = (await readFile(join(data, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1, n + 1);
  const clips = rows.map((r) => join(data, r.split(',')[0] as string));
  const rt = runtimeFromConfig(loadConfig({}));
  const identity = await backboneIdentity(rt.backbone, rt.featureKind, rt.modelUrl);
  const backbone = await openBackbone(rt); // model load is not throughput
  const policy = { kind: 'uniform', frames: 16 } as const;
  const geometry = { size: 224, crop: 'center' } as const;
  const runs: Array<Record<string, unknown>> = [];
  try {
    await backbone.embed(new Uint8Array(4 * 224 * 224 * 3), 4); // warm-up
    for (let r = 0; r < reps; r++) {
      const c0 = await cpuMs();
      const b0 = performance.now();
      for (const clip of clips) await timeCommand('ffmpeg', ['-v', 'error', '-threads', '2', '-i', clip, '-vf', 'scale=224:-2', '-f', 'null', '-']);
      const bareMs = performance.now() - b0;
      const c1 = await cpuMs();
      const bareCpuMs = c1.children - c0.children + (c1.self - c0.self);
      log(`realclips  pass ${r + 1}: bare ffmpeg ${fmt(bareMs / 1000)} s (CPU ${fmt(bareCpuMs / 1000)} s) · load ${fmt(loadavg()[0] ?? 0, 1)}`);
      for (const path of paths) {
        const store = new FeatureStore(join(dir, `realclips-store-${path}-${r}`));
        const open = (): Promise<typeof backbone> => Promise.resolve(backbone);
        const before = path.endsWith('-before');
        const tools = before ? { ...rt.tools, probeReader: 'ffprobe' as const } : rt.tools;
        const extractor = path.startsWith('rgb')
          ? new Extractor({ tools, store, identity, sampling: policy, geometry, openBackbone: open, ...(before ? { decodeGroup: 1 } : {}) }, true)
          : new StreamExtractor({ tools, store, identity, sampling: policy, geometry, streams: ['motion'], openBackbone: open, openKeypointStream: () => Promise.reject(new Error('no keypoint stream here')), ...(before ? { decodeGroup: 1 } : {}) });
        const s0 = await cpuMs();
        const e0 = performance.now();
        let ok = 0;
        for await (const o of extractor.extractMany(clips.map((p) => ({ path: p })))) if (o.ok) ok++;
        const extractMs = performance.now() - e0;
        const s1 = await cpuMs();
        const extractCpuMs = s1.children - s0.children + (s1.self - s0.self);
        const run = {
          pass: r + 1,
          path,
          clips: clips.length,
          ok,
          bareMs: Math.round(bareMs),
          extractMs: Math.round(extractMs),
          ratio: extractMs / bareMs,
          clipsPerSec: (ok / extractMs) * 1000,
          bareCpuMs,
          extractCpuMs,
          childCpuMs: s1.children - s0.children,
          cpuRatio: extractCpuMs / bareCpuMs,
          timings: roundTimings(extractor.stats.timings),
          load: loadavg()[0] ?? 0,
        };
        runs.push(run);
        const t = run.timings;
        log(
          `realclips  pass ${r + 1} ${path.padEnd(6)}: ${ok}/${clips.length} clips · extract ${fmt(extractMs / 1000)} s (${fmt(run.clipsPerSec, 2)} clips/s) vs bare ffmpeg ${fmt(bareMs / 1000)} s · ratio ${fmt(run.ratio, 2)} · load ${fmt(run.load, 1)}`,
        );
        log(`realclips  pass ${r + 1} ${path.padEnd(6)}: CPU extract ${fmt(extractCpuMs / 1000)} s (ffmpeg/ffprobe ${fmt(run.childCpuMs / 1000)} s) vs bare ffmpeg ${fmt(bareCpuMs / 1000)} s · CPU ratio ${fmt(run.cpuRatio, 2)}`);
        log(
          `realclips  pass ${r + 1} ${path.padEnd(6)}: stages (summed ms): hash ${t.hashMs} · store read ${t.storeReadMs} · probe ${t.probeMs} · decode ${t.decodeMs} · decode wait ${t.decodeWaitMs} · embed ${t.embedMs} · store write ${t.storeWriteMs}`,
        );
      }
    }
  } finally {
    await backbone.dispose();
  }
  const summary: Record<string, unknown> = {};
  for (const path of paths) {
    const mine = runs.filter((x) => x.path === path);
    const m = { medianRatio: median(mine.map((x) => Number(x.ratio))), medianCpuRatio: median(mine.map((x) => Number(x.cpuRatio))), medianClipsPerSec: median(mine.map((x) => Number(x.clipsPerSec))) };
    summary[path] = m;
    log(`realclips  ${path}: extract / bare decode: median ratio ${fmt(m.medianRatio, 2)} (CPU ${fmt(m.medianCpuRatio, 2)}) · ${fmt(m.medianClipsPerSec, 2)} clips/s over ${mine.length} interleaved pass(es)`);
  }
  results.realclips = {
    dataset: 'surv_fight (first clips of manifest.csv)',
    sampling: 'uniform:16, 224 centre crop',
    bareCommand: 'ffmpeg -threads 2 -i F -vf scale=224:-2 -f null -',
    summary,
    runs,
  };
}

/**
 * Archives: the 100,000-file batch (ingest, status, Redis, export: archive-bench.ts), then N clips
 * through the whole pipeline with the real workers against inline `label` of the same clips.
 */
async function benchArchiveScale(dir: string): Promise<void> {
  const { benchArchive } = await import('./archive-bench.js');
  const { benchQueue } = await import('../../src/jobs/queue/bench.js');
  const { makeArchive } = await import('../helpers/archive.js');
  const files = Number(values['archive-files'] ?? (quick ? 5000 : 100_000));
  const scale = await benchArchive({ files, log });
  log(
    `archive    ${files} files: 202 in ${fmt(scale.postMs, 0)} ms · ingest ${fmt(scale.ingestFilesPerSec, 0)} files/s · GET /healthz p50 ${fmt(scale.healthz.p50Ms)} / p99 ${fmt(scale.healthz.p99Ms)} ms · GET batch p50 ${fmt(scale.batchGet.p50Ms)} / p99 ${fmt(scale.batchGet.p99Ms)} ms (n=${scale.batchGet.n}; Redis PING p50 ${fmt(scale.redisPing.p50Ms)} / p99 ${fmt(scale.redisPing.p99Ms)} ms) · Redis ${fmt(scale.redisUsedMemoryMiB.before)} → peak ${fmt(scale.redisUsedMemoryMiB.peak)} → after ${fmt(scale.redisUsedMemoryMiB.after)} MiB · export ${scale.export.rows} rows in ${fmt(scale.export.seconds)} s, peak RSS ${fmt(scale.export.maxRssMiB, 0)} MiB`,
  );
  log(`archive    GET /v1/results (a page of 1,000 of ${scale.export.rows} rows): ${Object.entries(scale.queries).map(([k, v]) => `${k} ${fmt(v)} ms`).join(' · ')}`);
  const n = Number(values['archive-clips'] ?? (quick ? 40 : 500));
  if (n === 0) {
    results.archive = { scale };
    return;
  }
  const base = join(dir, 'archive-clip.mp4');
  await makeClip({ ...randomClipSpec('zoom_in', 4242), seconds: 2, width: 160, height: 120 }, base);
  const clips = (await makeArchive(join(dir, 'archive-clips'), base, n, { perFolder: 100 })).map((f) => f.path);
  const pipeline = await benchQueue({ clips, decodeWorkers: 1 });
  log(`archive    ${n} clips through the whole pipeline: ${fmt(pipeline.clipsPerMin / 60, 2)} clips/s (failed ${pipeline.failed}) · inline label of the same clips: ${fmt(Number(pipeline.inlineClipsPerMin) / 60, 2)} clips/s`);
  results.archive = { scale, pipeline: { ...pipeline, clipsPerSec: pipeline.clipsPerMin / 60, inlineClipsPerSec: Number(pipeline.inlineClipsPerMin) / 60 } };
}

/** The ingest alone (no stage worker, no window to wait at): files/s and the status latency meanwhile. */
async function benchArchiveIngest(): Promise<void> {
  const { benchArchive } = await import('./archive-bench.js');
  const files = Number(values['archive-ingest-files'] ?? (quick ? 5000 : 20_000));
  const r = await benchArchive({ files, drain: false, log });
  log(`archive-ingest ${files} files, no stage workers: 202 in ${fmt(r.postMs, 0)} ms · ingest ${fmt(r.ingestFilesPerSec, 0)} files/s · GET batch p50 ${fmt(r.batchGet.p50Ms)} / p99 ${fmt(r.batchGet.p99Ms)} ms (Redis PING p50 ${fmt(r.redisPing.p50Ms)} / p99 ${fmt(r.redisPing.p99Ms)} ms) · Redis ${fmt(r.redisUsedMemoryMiB.before)} → ${fmt(r.redisUsedMemoryMiB.peak)} MiB`);
  results.archiveIngest = r;
}

async function main(): Promise<void> {
  const dir = await makeTempDir('fw-bench-');
  const cacheDir = join(dir, 'cache');
  try {
    log(`framewise bench · ${cpus().length} cores (${cpus()[0]?.model ?? '?'}) · node ${process.version}${quick ? ' · quick' : ''}`);
    if (want('decode')) await benchDecode(dir);
    let embedFps = 0;
    if (want('embed') || want('e2e')) embedFps = await benchEmbed(dir, cacheDir);
    if (want('head')) await benchHead();
    if (want('e2e')) await benchEndToEnd(dir, embedFps);
    if (want('queue')) await benchQueue(dir);
    if (want('windows')) await benchWindows(dir);
    if (want('stream-sets')) await benchStreamSets(dir);
    if (want('streams')) await benchStreams(dir, cacheDir);
    if (wantNamed('realclips')) await benchRealClips(dir);
    if (wantNamed('archive')) await benchArchiveScale(dir);
    if (wantNamed('archive-ingest')) await benchArchiveIngest();
  } finally {
    clearInterval(rssTimer);
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    results.peakRssMiB = peakRss / 2 ** 20;
    log(`memory     peak RSS ${fmt(peakRss / 2 ** 20, 0)} MiB`);
    const outDir = join(PROJECT_ROOT, 'bench-results');
    await mkdir(outDir, { recursive: true });
    await writeFile(join(outDir, 'bench.json'), `${JSON.stringify(results, null, 2)}\n`);
    log(`written    ${join('bench-results', 'bench.json')}`);
    await removeDir(dir);
  }
}

await main();
