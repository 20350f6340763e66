/**
 * Several clips in one ffmpeg process. Starting ffmpeg costs ≈ 70 ms of CPU on its own (this
 * distribution's build loads 215 shared libraries) against ≈ 130 ms for decoding a short clip, so
 * decoding clips together saves a third of the decode CPU on real CCTV clips.
 *
 * Each clip keeps its own input (the same guards and pinned demuxer as `decodeFrames`) and its own
 * filter chain — the same filters as `decodeFrames` (`buildDecodeArgs`), in one `-filter_complex`
 * — and its own output pipe, so its frames and times are those `decodeFrames` gives, byte for
 * byte. Failures are never attributed from a shared stderr: when the process fails, times out, or
 * a clip gives no frame or an incomplete timestamp list, those clips are decoded again one by one
 * with `decodeFrames`, which gives their frames or their documented error.
 */
import { spawn } from 'node:child_process';
import { FramewiseError, toFramewiseError } from '../errors/index.js';
import { buildDecodeArgs, demuxerOf, isAllowedContainer } from './ffmpeg-args.js';
import { checkClipCoverage, decodeFrames, DEFAULT_MEDIA_TOOLS, refusedContainer, type FrameBatch, type MediaTools, type VideoInfo } from './ffmpeg.js';
import { targetTimes, type FrameGeometry, type SamplingPolicy } from './sampling.js';

export interface ClipDecode {
  info: VideoInfo;
  policy: SamplingPolicy;
  geometry: FrameGeometry;
}

/** `[showinfo@cK @ 0x…] n: … pts_time:T …`: clip K's frame time. */
const SHOWINFO = /^\[showinfo@c(\d+) @ [^\]]*\] n:\s*\d+ .*?\bpts_time:\s*(-?[\d.]+(?:e[-+]?\d+)?)/;

/**
 * A single decode's input options (threads, guards, pinned demuxer, the file) for a group: its
 * decoder single-threaded. Groups run side by side (the extract pipeline keeps more than one in
 * flight), and frame threads cost CPU: 13 % more decode CPU with `-threads 0` on surv_fight clips
 * in interleaved runs; the decoded frames are the same whatever the thread count.
 */
export function groupInputArgs(single: readonly string[]): string[] {
  const from = single.indexOf('-threads');
  const input = single.slice(from, single.indexOf('-i') + 2);
  input[1] = '1';
  return input;
}

/** The ffmpeg arguments of one process decoding several clips (pure). Clip k writes to fd 1 (k = 0) or fd k + 2. */
export function buildBatchDecodeArgs(clips: readonly ClipDecode[]): { args: string[]; frameBytes: number[] } {
  const inputs: string[] = [];
  const chains: string[] = [];
  const outputs: string[] = [];
  clips.forEach((c, k) => {
    const targets = c.policy.kind === 'uniform' ? targetTimes(c.policy, 0, c.info.durationSec) : undefined;
    const frameInterval = c.info.fps > 0 ? 1 / c.info.fps : 1 / 30;
    const one = buildDecodeArgs(`file:${c.info.path}`, c.policy, c.geometry, { demuxer: demuxerOf(c.info.container), duration: c.info.durationSec, frameInterval }, targets).args;
    // the single decode's input options (threads, guards, pinned demuxer, the file) and its -vf chain
    inputs.push(...groupInputArgs(one));
    const vf = one[one.indexOf('-vf') + 1] as string;
    chains.push(`[${k}:v:0]${vf.replace(/,showinfo$/, `,showinfo@c${k}`)}[o${k}]`);
    const frames = one[one.indexOf('-frames:v') + 1] as string;
    outputs.push('-map', `[o${k}]`, '-fps_mode', 'passthrough', '-frames:v', frames, '-f', 'rawvideo', '-pix_fmt', 'rgb24', k === 0 ? 'pipe:1' : `pipe:${k + 2}`);
  });
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'info', ...inputs, '-filter_complex', chains.join(';'), ...outputs];
  return { args, frameBytes: clips.map((c) => c.geometry.size * c.geometry.size * 3) };
}

/**
 * Decode the sampled frames of several clips in one ffmpeg process: one result per clip, in
 * order, each a `FrameBatch` equal to what `decodeFrames` gives or the error it gives.
 */
export async function decodeClips(clips: readonly ClipDecode[], options: { tools?: MediaTools; signal?: AbortSignal } = {}): Promise<Array<FrameBatch | FramewiseError>> {
  const tools = options.tools ?? DEFAULT_MEDIA_TOOLS;
  const alone = (c: ClipDecode): Promise<FrameBatch | FramewiseError> =>
    decodeFrames(c.info, c.policy, c.geometry, { tools, ...(options.signal ? { signal: options.signal } : {}) }).catch((e: unknown) => {
      if (options.signal?.aborted) throw e;
      return toFramewiseError(e);
    });
  if (clips.length <= 1) return Promise.all(clips.map(alone));
  const refused = clips.find((c) => !isAllowedContainer(c.info.container));
  if (refused) throw refusedContainer(demuxerOf(refused.info.container), refused.info.path);

  const { args, frameBytes } = buildBatchDecodeArgs(clips);
  const run = await runGrouped(args, clips.length, clips.length, tools, options.signal);
  // the process failed as a whole (a bad input, a spawn error, killed): each clip on its own says what it is
  if (!run.ok) return Promise.all(clips.map(alone));
  const chunks = run.outputs;
  const times = run.times;

  return Promise.all(
    clips.map(async (c, k): Promise<FrameBatch | FramewiseError> => {
      const bytes = chunks[k] as Buffer;
      const fb = frameBytes[k] as number;
      const count = Math.floor(bytes.length / fb);
      const t = times[k] as number[];
      // no frame, a partial frame or a timestamp missing: decoded alone, which classifies it
      if (count === 0 || bytes.length !== count * fb || t.length !== count) return alone(c);
      const frameTimes = t.map((x) => Math.max(0, x));
      try {
        checkClipCoverage(c.info, c.policy, frameTimes);
      } catch (e) {
        return toFramewiseError(e);
      }
      return { size: c.geometry.size, count, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), times: frameTimes };
    }),
  );
}

export interface GroupedRun {
  /** ffmpeg exited 0, in time, without being killed. */
  ok: boolean;
  /** Each output's bytes (output 0 on fd 1, output i on fd i + 2). */
  outputs: Buffer[];
  /** Each clip's frame times, from its `showinfo@cK` lines. */
  times: number[][];
}

/** Run one ffmpeg for several clips, collecting `outputs` pipes and the times `showinfo@cK` prints for each of `clips`. */
export async function runGrouped(args: string[], outputs: number, clips: number, tools: MediaTools, signal?: AbortSignal): Promise<GroupedRun> {
  const stdio: Array<'ignore' | 'pipe'> = ['ignore', 'pipe', 'pipe', ...Array.from({ length: outputs - 1 }, () => 'pipe' as const)];
  const child = spawn(tools.ffmpegPath, args, { stdio });
  const chunks: Buffer[][] = Array.from({ length: outputs }, () => []);
  chunks.forEach((list, i) => (child.stdio[i === 0 ? 1 : i + 2] as NodeJS.ReadableStream).on('data', (c: Buffer) => list.push(c)));
  const times: number[][] = Array.from({ length: clips }, () => []);
  let line = '';
  const onLine = (l: string): void => {
    const m = SHOWINFO.exec(l);
    if (m) times[Number(m[1])]?.push(Number(m[2]));
  };
  (child.stdio[2] as NodeJS.ReadableStream).on('data', (c: Buffer) => {
    const lines = (line + c.toString('utf8')).split('\n');
    line = lines.pop() ?? '';
    lines.forEach(onLine);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, tools.decodeTimeoutMs);
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let closed: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  try {
    closed = await new Promise((resolve) => {
      child.on('error', () => resolve(undefined));
      child.on('close', (code, sig) => resolve({ code, signal: sig }));
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
  onLine(line);
  if (signal?.aborted) throw signal.reason ?? new Error('aborted');
  return { ok: closed !== undefined && closed.code === 0 && !timedOut, outputs: chunks.map((c) => Buffer.concat(c)), times };
}
