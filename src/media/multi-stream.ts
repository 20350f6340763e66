/**
 * The outputs of a multi-output decode (multi-decode.ts: rgb, motion, letterboxed squares), frame
 * by frame, in one sequential ffmpeg pass: the long-video form of `decodeMulti`, as
 * `streamFrames` is of `decodeFrames`. Memory stays bounded by a few frames per output whatever
 * the length of the video: each output's pipe is paused while it is more than a few frames ahead
 * of the others (ffmpeg then waits on it), and frames come out together, one sampled time at a
 * time.
 *
 * Every output samples the same source frames, except that a `motion` output has no frame for the
 * video's very first frame (it has no predecessor): where the others sample that first frame,
 * the motion output starts one frame later and its first frame is black, as in `decodeMulti`.
 * Each output reports its own frames' times (`showinfo` on every branch) to tell that case apart.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { FramewiseError } from '../errors/index.js';
import { demuxerOf, isAllowedContainer } from './ffmpeg-args.js';
import { classifyNoFrame, DEFAULT_MEDIA_TOOLS, refusedContainer, type MediaTools, type VideoInfo } from './ffmpeg.js';
import { buildMultiDecodeArgs, type Branch, type MultiDecodeRequest } from './multi-decode.js';
import { targetTimes, type DecodePolicy } from './sampling.js';

/** One sampled time of every output asked. */
export interface MultiFrame {
  index: number;
  /** Seconds from the video stream's first frame. */
  time: number;
  /** size × size × 3 bytes each (copies, safe to keep). */
  rgb?: Uint8Array;
  motion?: Uint8Array;
  /** One square per side asked, in the order asked. */
  letterbox?: Uint8Array[];
}

export interface StreamMultiOptions {
  tools?: MediaTools;
  signal?: AbortSignal;
  /** As `streamFrames`: the time limit on the whole decode, or on ffmpeg running without output while this side waits. @defaultValue `idle` for the windows policy, else `total` */
  timeout?: 'total' | 'idle';
}

/** An output waits for the others once it is this many frames ahead. */
const AHEAD = 8;

/** `[showinfo@fwb<i> @ 0x…] n: … pts_time:<t>` (branchShowinfo) → branch i, time t. */
const BRANCH_TIME = /\[showinfo@fwb(\d+) @ [^\]]*\][^\r\n]*?\bpts_time:\s*(-?[\d.]+(?:e[-+]?\d+)?)/;

interface Lane {
  branch: Branch;
  frameBytes: number;
  stream: Readable;
  pending: Buffer[];
  pendingBytes: number;
  ready: Uint8Array[];
  /** Times of frames not yet taken (kept for the primary lane; the others only until the motion offset is known). */
  times: number[];
  paused: boolean;
}

/**
 * Decode the frames a policy asks for, every output of `request` at once, in one sequential
 * ffmpeg pass (with a `windows` policy: the whole video on the windows' grid).
 */
export async function* streamMulti(info: VideoInfo, policy: DecodePolicy, request: MultiDecodeRequest, options: StreamMultiOptions = {}): AsyncGenerator<MultiFrame> {
  const tools = options.tools ?? DEFAULT_MEDIA_TOOLS;
  // only what a probe lets through is decoded (a VideoInfo may come from a queue payload)
  if (!isAllowedContainer(info.container)) throw refusedContainer(demuxerOf(info.container), info.path);
  const frameInterval = info.fps > 0 ? 1 / info.fps : 1 / 30;
  const targets = policy.kind === 'uniform' ? targetTimes(policy, 0, info.durationSec) : undefined;
  const plan = buildMultiDecodeArgs(`file:${info.path}`, policy, request, { demuxer: demuxerOf(info.container), frameInterval, duration: info.durationSec }, targets, { tagAll: true });
  const stdio: Array<'ignore' | 'pipe'> = ['ignore', 'pipe', 'pipe', ...plan.branches.slice(1).map(() => 'pipe' as const)];
  const child = spawn(tools.ffmpegPath, plan.args, { stdio });
  const lanes: Lane[] = plan.branches.map((branch, i) => ({
    branch,
    frameBytes: branch.size * branch.size * 3,
    stream: child.stdio[i === 0 ? 1 : i + 2] as Readable,
    pending: [],
    pendingBytes: 0,
    ready: [],
    times: [],
    paused: false,
  }));
  // the frames' times come from an output that samples the source frames themselves (not motion, when there is another)
  const primary = Math.max(0, lanes.findIndex((l) => l.branch.name !== 'motion'));
  const motion = lanes.findIndex((l, i) => l.branch.name === 'motion' && i !== primary);
  /** Whether the motion output starts one frame late (its first frame black); undefined until known. */
  let motionShift: 0 | 1 | undefined = motion < 0 ? 0 : undefined;

  let stderr = '';
  let stderrLine = '';
  let closed: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let timedOut = false;
  const idleLimit = (options.timeout ?? (policy.kind === 'windows' ? 'idle' : 'total')) === 'idle';
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, tools.decodeTimeoutMs);
  };
  const disarm = (): void => {
    clearTimeout(timer);
    timer = undefined;
  };
  // `total`: one limit on the whole decode; `idle`: the clock runs only while this side waits for a frame
  if (!idleLimit) arm();
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });

  for (const lane of lanes) {
    lane.stream.on('data', (chunk: Buffer) => {
      lane.pending.push(chunk);
      lane.pendingBytes += chunk.length;
      while (lane.pendingBytes >= lane.frameBytes) {
        const all = lane.pending.length === 1 ? (lane.pending[0] as Buffer) : Buffer.concat(lane.pending);
        lane.ready.push(new Uint8Array(all.subarray(0, lane.frameBytes)));
        const rest = all.subarray(lane.frameBytes);
        lane.pending = rest.length > 0 ? [Buffer.from(rest)] : [];
        lane.pendingBytes = rest.length;
      }
      // back-pressure: this output waits while it is ahead of what is taken
      if (lane.ready.length > AHEAD && !lane.paused) {
        lane.stream.pause();
        lane.paused = true;
      }
      notify();
    });
  }
  const onLine = (line: string): void => {
    const m = BRANCH_TIME.exec(line);
    if (m) {
      const lane = lanes[Number(m[1])];
      if (lane && (lane === lanes[primary] || motionShift === undefined)) lane.times.push(Number(m[2]));
    } else if (stderr.length < 64 * 1024) stderr += `${line}\n`;
  };
  child.stderr?.on('data', (chunk: Buffer) => {
    const lines = (stderrLine + chunk.toString('utf8')).split(/\r\n|\r|\n/);
    stderrLine = lines.pop() ?? '';
    for (const l of lines) onLine(l);
    notify();
  });
  child.on('error', (e) => {
    spawnError = e;
    notify();
  });
  child.on('close', (code, signal) => {
    onLine(stderrLine);
    stderrLine = '';
    closed = { code, signal };
    disarm(); // ffmpeg is done: a slow consumer of the last frames is not a slow decode
    notify();
  });

  /** Decide whether motion starts late: its first frame is the primary's second frame (or later), or it has none. */
  const decideShift = (): void => {
    if (motionShift !== undefined) return;
    const P = lanes[primary] as Lane;
    const M = lanes[motion] as Lane;
    const m0 = M.times[0];
    const p1 = P.times[1];
    if (m0 !== undefined && p1 !== undefined) motionShift = m0 >= p1 - 1e-6 ? 1 : 0;
    else if (closed) motionShift = m0 === undefined && M.ready.length === 0 ? 1 : 0;
    else return;
    lanes.forEach((l, i) => {
      if (i !== primary) l.times = [];
    });
  };

  let emitted = 0;
  let lastTime: number | undefined;
  const black = motion >= 0 ? new Uint8Array((lanes[motion] as Lane).frameBytes) : undefined;
  try {
    for (;;) {
      if (spawnError) throw new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `cannot run ffmpeg: ${spawnError.message}`, { cause: spawnError });
      decideShift();
      const P = lanes[primary] as Lane;
      // a frame comes out once its time is known (or ffmpeg has ended) and every output has it
      let state: 'ready' | 'wait' | 'end' = motionShift === undefined ? 'wait' : 'ready';
      if (state === 'ready') {
        for (const [k, lane] of lanes.entries()) {
          if (k === motion && emitted < (motionShift as number)) continue;
          if (lane.ready.length === 0) state = closed ? 'end' : 'wait';
          if (state !== 'ready') break;
        }
        if (state === 'ready' && P.times.length === 0 && !closed) state = 'wait';
      }
      if (state === 'end') break;
      if (state === 'wait') {
        if (closed) break;
        if (idleLimit && !timer) arm();
        await new Promise<void>((r) => {
          wake = r;
        });
        continue;
      }
      const time = P.times.shift() ?? (lastTime !== undefined ? lastTime + frameInterval : 0);
      lastTime = time;
      const frame: MultiFrame = { index: emitted, time: Math.max(0, time) };
      const squares = new Map<number, Uint8Array>();
      for (const [k, lane] of lanes.entries()) {
        const data = k === motion && emitted < (motionShift as number) ? (black as Uint8Array) : (lane.ready.shift() as Uint8Array);
        if (lane.branch.name === 'letterbox') squares.set(lane.branch.size, data);
        else frame[lane.branch.name] = data;
        if (lane.paused && lane.ready.length <= AHEAD) {
          lane.paused = false;
          lane.stream.resume();
        }
      }
      if (request.letterbox) frame.letterbox = request.letterbox.map((s) => squares.get(s) as Uint8Array);
      if (idleLimit) disarm();
      emitted++;
      yield frame;
    }
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    if (timedOut) {
      throw new FramewiseError(
        'FW_ERR_MEDIA_DECODE_FAILED',
        idleLimit ? `decode stalled: no frame for ${tools.decodeTimeoutMs} ms: ${info.path}` : `decode took longer than ${tools.decodeTimeoutMs} ms: ${info.path}`,
      );
    }
    if (emitted === 0) throw await classifyNoFrame(info, tools, targets?.[0], closed, stderr);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    if (!closed) child.kill('SIGKILL');
  }
}
