/**
 * One decode of a clip for several per-frame streams: one ffmpeg process whose filter graph
 * `split`s the video into the geometries the streams need, each written to its own pipe
 * (stdout and extra file descriptors):
 *
 * - `rgb`: the sampled frames, short side to `size` + centre crop (or squash): the same filters
 *   as `decodeFrames`, so the pixels (and the stored rgb features) are the same.
 * - `motion`: |frame_t − frame_t−1| of consecutive source frames (`MOTION_FILTERS` in
 *   ffmpeg-args.ts, after the same geometry), at the same sampled times; the first frame of a
 *   video has no predecessor and gives a black (all-zero) difference.
 * - `letterbox`: the sampled frames letterboxed into an S×S square (aspect kept, centred, black
 *   bars), with where the picture lies inside the square: what the keypoint streams take.
 *
 * Clips only (`uniform` / `fps` policies): the frames are collected in memory. Long videos
 * (`windows`) stream the same outputs, frame by frame, through `streamMulti` (multi-stream.ts).
 */
import { spawn } from 'node:child_process';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { groupInputArgs, runGrouped } from './batch-decode.js';
import { buildGeometryFilters, buildInputGuardArgs, buildMotionFilters, buildPolicySelect, demuxerOf, isAllowedContainer, parseShowinfoTime, ZERO_CLOCK_FILTER } from './ffmpeg-args.js';
import { DEFAULT_MEDIA_TOOLS, refusedContainer, type FrameBatch, type MediaTools, type VideoInfo } from './ffmpeg.js';
import { targetTimes, type DecodePolicy, type FrameGeometry, type SamplingPolicy } from './sampling.js';

/** Where the picture lies inside a letterboxed square, in [0,1] units of the square. */
export interface ContentBox {
  x0: number;
  y0: number;
  w: number;
  h: number;
}

/** Letterboxed square frames (rgb24) and where the picture lies in them. */
export interface LetterboxBatch {
  data: Uint8Array;
  count: number;
  size: number;
  content: ContentBox;
}

/** What to decode: any non-empty subset of the three geometries. */
export interface MultiDecodeRequest {
  rgb?: FrameGeometry;
  motion?: FrameGeometry;
  /** Sides of the letterboxed squares (one output per distinct side). */
  letterbox?: number[];
}

export interface MultiDecodeResult {
  /** Seconds from the stream start, per sampled frame (every output has this many frames). */
  times: number[];
  rgb?: FrameBatch;
  motion?: FrameBatch;
  /** One batch per side asked, in the order asked. */
  letterbox?: LetterboxBatch[];
}

/** The picture's box inside an S×S letterbox of a width×height video (ffmpeg's rounding: even sizes, centred). */
export function letterboxContent(width: number, height: number, size: number): ContentBox {
  if (width <= 0 || height <= 0) return { x0: 0, y0: 0, w: 1, h: 1 };
  const scale = Math.min(size / width, size / height);
  // scale=…:force_original_aspect_ratio=decrease keeps the side that fits, the other rounds down to even (force_divisible_by 2)
  const w = width >= height ? size : Math.max(2, 2 * Math.floor((width * scale) / 2));
  const h = height >= width ? size : Math.max(2, 2 * Math.floor((height * scale) / 2));
  const x0 = Math.floor((size - w) / 2);
  const y0 = Math.floor((size - h) / 2);
  return { x0: x0 / size, y0: y0 / size, w: w / size, h: h / size };
}

/** The letterbox filters: square pixels, fit inside S×S (aspect kept), centred on black. */
export function buildLetterboxFilters(size: number): string[] {
  return [
    "scale='trunc(iw*sar/2)*2':ih:flags=area,setsar=1",
    `scale=${size}:${size}:force_original_aspect_ratio=decrease:force_divisible_by=2:flags=area`,
    `pad=${size}:${size}:(ow-iw)/2:(oh-ih)/2:black`,
    'setsar=1',
  ];
}

export interface Branch {
  name: 'rgb' | 'motion' | 'letterbox';
  size: number;
  filters: string;
}

/** The instance name of branch i's `showinfo` when every branch reports its frames' times (`tagAll`). */
export const branchShowinfo = (i: number): string => `showinfo@fwb${i}`;

/**
 * The ffmpeg arguments of one multi-output decode (pure). Branch i writes to fd 1 (i = 0) or fd
 * i + 2. The sampling is any decode policy (`windows`: the whole video on the windows' grid, for
 * `streamMulti`); `showinfo` (the frames' times on stderr) runs on the first branch, or with
 * `tagAll` on every branch, each named `branchShowinfo(i)`.
 */
export function buildMultiDecodeArgs(
  path: string,
  policy: DecodePolicy,
  request: MultiDecodeRequest,
  clip: { demuxer: string; frameInterval: number; duration?: number },
  targets: number[] | undefined,
  options: { tagAll?: boolean } = {},
): { args: string[]; branches: Branch[]; maxFrames: number } {
  // targets and rates are on the zero clock (ZERO_CLOCK_FILTER, before the split), as in buildDecodeArgs
  const { select, maxFrames } = buildPolicySelect(policy, targets, clip);
  const branches: Branch[] = [];
  const info = (): string[] => (options.tagAll ? [branchShowinfo(branches.length)] : branches.length === 0 ? ['showinfo'] : []);
  if (request.rgb) branches.push({ name: 'rgb', size: request.rgb.size, filters: [`select='${select}'`, ...buildGeometryFilters(request.rgb), ...info()].join(',') });
  if (request.motion) {
    // the difference of consecutive source frames, made small first (the geometry), then sampled like rgb
    const f = [...buildMotionFilters(request.motion), `select='${select}'`, 'format=rgb24', ...info()];
    branches.push({ name: 'motion', size: request.motion.size, filters: f.join(',') });
  }
  for (const size of new Set(request.letterbox ?? [])) branches.push({ name: 'letterbox', size, filters: [`select='${select}'`, ...buildLetterboxFilters(size), ...info()].join(',') });
  if (branches.length === 0) throw new FramewiseError('FW_ERR_INTERNAL', 'a multi-output decode needs at least one output');
  const labels = branches.map((_, i) => `o${i}`);
  const graph = [`[0:v:0]${ZERO_CLOCK_FILTER},split=${branches.length}${labels.map((l) => `[s${l}]`).join('')}`, ...branches.map((b, i) => `[s${labels[i]}]${b.filters}[${labels[i]}]`)].join(';');
  // the same guards as every other decode: the file protocol only, allowed demuxers only, the probed one pinned
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'info', '-threads', '0', ...buildInputGuardArgs(), '-f', clip.demuxer, '-i', path, '-an', '-sn', '-dn', '-filter_complex', graph];
  branches.forEach((_, i) => {
    args.push('-map', `[${labels[i]}]`, '-fps_mode', 'passthrough', '-frames:v', String(maxFrames), '-f', 'rawvideo', '-pix_fmt', 'rgb24', i === 0 ? 'pipe:1' : `pipe:${i + 2}`);
  });
  return { args, branches, maxFrames };
}

/**
 * Decode a clip once for every geometry asked. Every output comes back with the same frame
 * count as the first (a motion output one frame short, at the very start of a video, gets a
 * black first difference).
 */
export async function decodeMulti(info: VideoInfo, policy: SamplingPolicy, request: MultiDecodeRequest, options: { tools?: MediaTools; signal?: AbortSignal } = {}): Promise<MultiDecodeResult> {
  const tools = options.tools ?? DEFAULT_MEDIA_TOOLS;
  const frameInterval = info.fps > 0 ? 1 / info.fps : 1 / 30;
  if (!isAllowedContainer(info.container)) throw refusedContainer(demuxerOf(info.container), info.path);
  const targets = policy.kind === 'uniform' ? targetTimes(policy, 0, info.durationSec) : undefined;
  const plan = buildMultiDecodeArgs(`file:${info.path}`, policy, request, { demuxer: demuxerOf(info.container), frameInterval }, targets);
  const stdio: Array<'ignore' | 'pipe'> = ['ignore', 'pipe', 'pipe', ...plan.branches.slice(1).map(() => 'pipe' as const)];
  const child = spawn(tools.ffmpegPath, plan.args, { stdio });
  const chunks: Buffer[][] = plan.branches.map(() => []);
  plan.branches.forEach((_, i) => {
    const stream = child.stdio[i === 0 ? 1 : i + 2] as NodeJS.ReadableStream;
    stream.on('data', (c: Buffer) => (chunks[i] as Buffer[]).push(c));
  });
  const times: number[] = [];
  let stderr = '';
  let line = '';
  (child.stdio[2] as NodeJS.ReadableStream).on('data', (c: Buffer) => {
    const text = line + c.toString('utf8');
    const lines = text.split('\n');
    line = lines.pop() ?? '';
    for (const l of lines) {
      const t = parseShowinfoTime(l);
      if (t !== undefined) times.push(t);
      else if (stderr.length < 64 * 1024) stderr += `${l}\n`;
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), tools.decodeTimeoutMs);
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let closed: { code: number | null; signal: NodeJS.Signals | null };
  try {
    closed = await new Promise((res, rej) => {
      child.on('error', (e) => rej(new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `cannot run ffmpeg: ${e.message}`, { cause: e })));
      child.on('close', (code, signal) => res({ code, signal }));
    });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
  const t = parseShowinfoTime(line);
  if (t !== undefined) times.push(t);
  if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
  const outputs = plan.branches.map((_, i) => Buffer.concat(chunks[i] as Buffer[]));
  if (countOf(plan.branches, outputs) === 0) {
    const tail = stderr.trim().split('\n').slice(-3).join(' | ');
    if (closed.signal) throw new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `ffmpeg killed by ${closed.signal}: ${info.path}`);
    if (/Decoder \(codec [^)]*\) not found|Unsupported codec|no decoder/i.test(stderr)) throw new FramewiseError('FW_ERR_MEDIA_UNSUPPORTED_CODEC', `no decoder for this video's codec: ${info.path}: ${tail}`);
    throw new FramewiseError('FW_ERR_MEDIA_CORRUPT', `no frame could be decoded (corrupt or truncated video): ${info.path}${tail ? `: ${tail}` : ''}`);
  }
  return assembleMulti(info, request, plan.branches, outputs, times, frameInterval);
}

/** Frames of the first output (every output is given this many). */
function countOf(branches: readonly Branch[], outputs: readonly Buffer[]): number {
  const b = branches[0];
  return b ? Math.floor((outputs[0]?.length ?? 0) / (b.size * b.size * 3)) : 0;
}

/** The result of one clip's multi-output decode from its outputs' bytes and its showinfo times. */
function assembleMulti(info: VideoInfo, request: MultiDecodeRequest, branches: readonly Branch[], outputs: readonly Buffer[], times: readonly number[], frameInterval: number): MultiDecodeResult {
  const frames = branches.map((b, i) => {
    const bytes = outputs[i] as Buffer;
    const frameBytes = b.size * b.size * 3;
    return { branch: b, count: Math.floor(bytes.length / frameBytes), bytes, frameBytes };
  });
  const count = frames[0]?.count ?? 0;
  // showinfo times are already seconds from the first frame (the zero clock)
  const frameTimes = Array.from({ length: count }, (_, k) => Math.max(0, times[k] ?? (times[times.length - 1] ?? 0) + frameInterval * (k - times.length + 1)));
  const out: MultiDecodeResult = { times: frameTimes };
  const letterboxes = new Map<number, LetterboxBatch>();
  for (const f of frames) {
    // the same count everywhere: missing frames at the front (motion at a video's first frame) are black
    const data = new Uint8Array(count * f.frameBytes);
    const have = Math.min(f.count, count);
    data.set(f.bytes.subarray(0, have * f.frameBytes), (count - have) * f.frameBytes);
    if (f.branch.name === 'letterbox') letterboxes.set(f.branch.size, { data, count, size: f.branch.size, content: letterboxContent(info.width, info.height, f.branch.size) });
    else out[f.branch.name] = { size: f.branch.size, count, data, times: frameTimes };
  }
  if (request.letterbox) out.letterbox = request.letterbox.map((s) => letterboxes.get(s) as LetterboxBatch);
  return out;
}


/** One clip of a grouped multi-output decode. */
export interface MultiClip {
  info: VideoInfo;
  policy: SamplingPolicy;
  request: MultiDecodeRequest;
}

/**
 * Several clips' multi-output decodes in one ffmpeg process (see media/batch-decode.ts: ffmpeg's
 * start-up paid once): each clip keeps its own input, its own `buildMultiDecodeArgs` graph (its
 * labels renamed) and its own pipes, so each result is what `decodeMulti` gives, byte for byte.
 * When the process fails, or a clip gives no frame or an incomplete timestamp list, those clips
 * are decoded again alone with `decodeMulti`, which gives their frames or their error.
 */
export async function decodeMultiClips(clips: readonly MultiClip[], options: { tools?: MediaTools; signal?: AbortSignal } = {}): Promise<Array<MultiDecodeResult | FramewiseError>> {
  const tools = options.tools ?? DEFAULT_MEDIA_TOOLS;
  const alone = (c: MultiClip): Promise<MultiDecodeResult | FramewiseError> =>
    decodeMulti(c.info, c.policy, c.request, { tools, ...(options.signal ? { signal: options.signal } : {}) }).catch((e: unknown) => {
      if (options.signal?.aborted) throw e;
      return toFramewiseError(e);
    });
  if (clips.length <= 1) return Promise.all(clips.map(alone));
  const refused = clips.find((c) => !isAllowedContainer(c.info.container));
  if (refused) throw refusedContainer(demuxerOf(refused.info.container), refused.info.path);
  const inputs: string[] = [];
  const graphs: string[] = [];
  const outputs: string[] = [];
  const plans: Array<{ branches: Branch[]; first: number; frameInterval: number }> = [];
  let fd = 0;
  clips.forEach((c, k) => {
    const frameInterval = c.info.fps > 0 ? 1 / c.info.fps : 1 / 30;
    const targets = c.policy.kind === 'uniform' ? targetTimes(c.policy, 0, c.info.durationSec) : undefined;
    const plan = buildMultiDecodeArgs(`file:${c.info.path}`, c.policy, c.request, { demuxer: demuxerOf(c.info.container), frameInterval }, targets);
    inputs.push(...groupInputArgs(plan.args));
    const graph = plan.args[plan.args.indexOf('-filter_complex') + 1] as string;
    // this clip's input, labels and showinfo instance
    graphs.push(graph.replace('[0:v:0]', `[${k}:v:0]`).replace(/\[(s?o\d+)\]/g, `[c${k}$1]`).replace(/,showinfo\[/, `,showinfo@c${k}[`));
    plans.push({ branches: plan.branches, first: fd, frameInterval });
    plan.branches.forEach((_, b) => {
      outputs.push('-map', `[c${k}o${b}]`, '-fps_mode', 'passthrough', '-frames:v', String(plan.maxFrames), '-f', 'rawvideo', '-pix_fmt', 'rgb24', fd === 0 ? 'pipe:1' : `pipe:${fd + 2}`);
      fd++;
    });
  });
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'info', ...inputs, '-filter_complex', graphs.join(';'), ...outputs];
  const run = await runGrouped(args, fd, clips.length, tools, options.signal);
  if (!run.ok) return Promise.all(clips.map(alone));
  return Promise.all(
    clips.map(async (c, k): Promise<MultiDecodeResult | FramewiseError> => {
      const plan = plans[k] as (typeof plans)[number];
      const mine = run.outputs.slice(plan.first, plan.first + plan.branches.length);
      const times = run.times[k] as number[];
      const count = countOf(plan.branches, mine);
      if (count === 0 || times.length !== count) return alone(c);
      return assembleMulti(c.info, c.request, plan.branches, mine, times, plan.frameInterval);
    }),
  );
}
