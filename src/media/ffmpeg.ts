/**
 * The one module that runs ffprobe and ffmpeg (system binaries, spawned with argument arrays,
 * never through a shell). Everything else calls `probe` and `decodeFrames` / `streamFrames`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FramewiseError, toStorageError } from '../errors/index.js';
import { buildDecodeArgs, buildInputGuardArgs, buildProbeArgs, demuxerOf, isAllowedContainer, parseRefusedDemuxer, parseShowinfoTime, ZERO_CLOCK_FILTER } from './ffmpeg-args.js';
import { readMp4Probe, type ProbeJson, type ProbeStreamJson } from './mp4-probe.js';
import { targetTimes, type DecodePolicy, type FrameGeometry } from './sampling.js';

export interface MediaTools {
  ffmpegPath: string;
  ffprobePath: string;
  /** Largest width × height accepted (after rotation). */
  maxPixels: number;
  /** Kill a decode that runs longer than this. */
  decodeTimeoutMs: number;
  /** Who reads stream information (`ProbeOptions.reader`). @defaultValue `auto` */
  probeReader?: 'auto' | 'ffprobe';
}

export const DEFAULT_MEDIA_TOOLS: MediaTools = { ffmpegPath: 'ffmpeg', ffprobePath: 'ffprobe', maxPixels: 7680 * 4320, decodeTimeoutMs: 600_000 };

export interface VideoInfo {
  path: string;
  sizeBytes: number;
  container: string;
  codec: string;
  /** Displayed size: after rotation and with square pixels. */
  width: number;
  height: number;
  codedWidth: number;
  codedHeight: number;
  /** Clockwise rotation applied on display (0, 90, 180, 270). */
  rotation: number;
  /** Sample (pixel) aspect ratio. */
  sar: number;
  /** Average frame rate (frames/s); variable-rate streams report their average. */
  fps: number;
  /**
   * Start time of the video stream in seconds, as ffprobe reports it (may be far from 0: MPEG-TS,
   * offset timestamps; or below 0: edit lists). For information: decoded frame times count from
   * the stream's first frame, whatever this says.
   */
  startTime: number;
  /** Length of the video stream in seconds (0 when unknown), counted from its first frame. */
  durationSec: number;
  /** Frame count from the container, when it says. */
  frameCount: number | undefined;
  hasAudio: boolean;
}

export interface FrameBatch {
  /** Side of the square frames. */
  size: number;
  count: number;
  /** count × size × size × 3 bytes, rgb24. */
  data: Uint8Array;
  /** Presentation time of each frame: seconds from the video stream's first frame (0 there, whatever the file's timestamps). */
  times: number[];
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

function runToEnd(bin: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      if (err.length < 1 << 20) err += c.toString('utf8');
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `cannot run ${bin}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** The last few meaningful stderr lines, for error messages. */
function stderrTail(stderr: string, lines = 3): string {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.includes('Parsed_showinfo'))
    .slice(-lines)
    .join(' | ');
}

async function checkFile(path: string): Promise<number> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file: ${path}`, { cause: e });
  }
  if (!st.isFile()) throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `not a regular file: ${path}`);
  if (st.size === 0) throw new FramewiseError('FW_ERR_INPUT_EMPTY_FILE', `file is empty (0 bytes): ${path}`);
  return st.size;
}

const parseRate = (r: unknown): number => {
  if (typeof r !== 'string') return NaN;
  const [a, b] = r.split('/').map(Number);
  if (a === undefined || !Number.isFinite(a)) return NaN;
  return b === undefined ? a : b > 0 ? a / b : NaN;
};

const num = (v: unknown): number => (v === undefined || v === null || v === '' ? NaN : Number(v));

type ProbeStream = ProbeStreamJson;

/** `HH:MM:SS.fraction` (Matroska's DURATION tag) in seconds; NaN when it is not one. */
const parseClock = (v: unknown): number => {
  const m = typeof v === 'string' ? /^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(v.trim()) : null;
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : NaN;
};

/**
 * The video stream's length in seconds (NaN when unknown): the stream's own duration, else, in
 * Matroska/WebM (which declare where the stream ends, counted from time 0, not how long it
 * lasts), its DURATION tag or the segment duration less the stream's start; else the file's.
 */
function streamLength(video: ProbeStream, format: ProbeJson['format'], container: string, start: number): number {
  const own = num(video.duration);
  if (Number.isFinite(own) && own > 0) return own;
  const file = num(format?.duration);
  if (demuxerOf(container) === 'matroska') {
    const tag = parseClock(video.tags?.DURATION ?? video.tags?.duration);
    const end = Number.isFinite(tag) && tag > 0 ? tag : file;
    const len = Math.round((end - Math.max(0, start)) * 1e6) / 1e6;
    return Number.isFinite(len) && len > 0 ? len : NaN;
  }
  return Number.isFinite(file) && file > 0 ? file : NaN;
}

/** Images read through a single-picture demuxer (`png_pipe`, `gif` …); image2 reads sequences (other files) and is told apart. */
const SINGLE_IMAGE_DEMUXER = /^([a-z0-9]+_pipe|gif|apng|webp_pipe|image2pipe)$/;

/** The documented error for a file whose demuxer is not allowed (`demuxer` as ffmpeg names it). */
export function refusedContainer(demuxer: string, path: string): FramewiseError {
  if (SINGLE_IMAGE_DEMUXER.test(demuxer)) return new FramewiseError('FW_ERR_MEDIA_NOT_VIDEO', `a still image (${demuxer}), not a video: ${path}`);
  return new FramewiseError(
    'FW_ERR_MEDIA_UNSUPPORTED_CONTAINER',
    `unsupported container '${demuxer}': framewise reads single-file video containers only, never playlists, manifests, lists or image sequences that refer to other files: ${path}`,
    { details: { container: demuxer } },
  );
}

/** Does the file start like a video container (MP4/MOV, Matroska/WebM, AVI, FLV, Ogg, MPEG-PS/TS)? */
async function looksLikeContainer(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(12);
    const { bytesRead } = await fh.read(head, 0, 12, 0);
    if (bytesRead < 4) return false;
    const box = head.toString('latin1', 4, 8);
    return (
      ['ftyp', 'moov', 'mdat', 'wide', 'free', 'skip'].includes(box) ||
      head.readUInt32BE(0) === 0x1a45dfa3 ||
      head.toString('latin1', 0, 4) === 'RIFF' ||
      head.toString('latin1', 0, 3) === 'FLV' ||
      head.toString('latin1', 0, 4) === 'OggS' ||
      head.readUInt32BE(0) === 0x000001ba ||
      head.readUInt32BE(0) === 0x000001b3 ||
      head[0] === 0x47
    );
  } finally {
    await fh.close();
  }
}

export interface ProbeOptions {
  /**
   * Who reads the file's stream information: `auto` reads plain MP4/MOV files itself (their
   * `moov` box, `readMp4Probe`: the same answer as ffprobe without a process) and asks ffprobe for
   * everything else; `ffprobe` always asks ffprobe. @defaultValue `auto`
   */
  reader?: 'auto' | 'ffprobe';
}

/**
 * Probe a file: a `VideoInfo`, or a documented error for anything that is not a decodable video.
 * Plain MP4/MOV files are read in-process (`readMp4Probe`); any other file, and any MP4 that
 * reader is not sure of, goes to ffprobe.
 */
export async function probe(path: string, tools: MediaTools = DEFAULT_MEDIA_TOOLS, options: ProbeOptions = {}): Promise<VideoInfo> {
  const abs = resolve(path);
  const sizeBytes = await checkFile(abs);
  const own = (options.reader ?? tools.probeReader ?? 'auto') === 'auto' ? await readMp4Probe(abs, sizeBytes) : undefined;
  const json = own !== undefined && 'json' in own ? own.json : await runFfprobe(abs, path, tools);
  return toVideoInfo(json, abs, path, sizeBytes, tools);
}

/** ffprobe's JSON for a file, or the documented error for what it refuses. */
async function runFfprobe(abs: string, path: string, tools: MediaTools): Promise<ProbeJson> {
  const res = await runToEnd(tools.ffprobePath, buildProbeArgs(`file:${abs}`), 60_000);
  if (res.code !== 0) {
    // a demuxer outside the allow-list (hls, dash, concat, image2 …): refused when opened, before it reads anything else
    const refused = parseRefusedDemuxer(res.stderr);
    if (refused !== undefined) throw refusedContainer(refused, path);
    const tail = stderrTail(res.stderr);
    if ((await looksLikeContainer(abs)) && /moov atom not found|partial file|truncat|end of file|invalid data/i.test(res.stderr)) {
      throw new FramewiseError('FW_ERR_MEDIA_CORRUPT', `truncated or corrupt video: ${path}: ${tail}`);
    }
    if (res.signal) throw new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `ffprobe killed by ${res.signal}: ${path}`);
    throw new FramewiseError('FW_ERR_MEDIA_NOT_VIDEO', `not a video file (ffprobe: ${tail || `exit ${res.code}`}): ${path}`);
  }
  try {
    return JSON.parse(res.stdout.toString('utf8')) as ProbeJson;
  } catch (e) {
    throw new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `ffprobe printed unreadable JSON for ${path}`, { cause: e });
  }
}

/** A `VideoInfo` from ffprobe's JSON (or `readMp4Probe`'s, which has the same fields), with the checks every probe makes. */
function toVideoInfo(json: ProbeJson, abs: string, path: string, sizeBytes: number, tools: MediaTools): VideoInfo {
  const container = json.format?.format_name ?? 'unknown';
  // ffprobe applied the allow-list already; checked again in case the binary ignores it
  if (!isAllowedContainer(container)) throw refusedContainer(demuxerOf(container), path);
  const streams = json.streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
  const hasAudio = streams.some((s) => s.codec_type === 'audio');
  if (!video) {
    if (hasAudio) throw new FramewiseError('FW_ERR_MEDIA_NO_VIDEO_STREAM', `no video stream (audio only): ${path}`);
    throw new FramewiseError('FW_ERR_MEDIA_NO_VIDEO_STREAM', `no video stream: ${path}`);
  }
  if (!video.codec_name || video.codec_name === 'none' || video.codec_name === 'unknown') {
    throw new FramewiseError('FW_ERR_MEDIA_UNSUPPORTED_CODEC', `unknown video codec: ${path}`);
  }
  const codedWidth = video.width ?? 0;
  const codedHeight = video.height ?? 0;
  if (!(codedWidth > 0 && codedHeight > 0)) throw new FramewiseError('FW_ERR_MEDIA_CORRUPT', `video stream has no frame size: ${path}`);

  const rotTag = num(video.tags?.rotate);
  const rotSide = video.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  // displaymatrix rotation is counter-clockwise; the legacy tag is clockwise.
  const rotation = (((Number.isFinite(rotTag) ? rotTag : rotSide !== undefined ? -rotSide : 0) % 360) + 360) % 360;
  const sarParts = (video.sample_aspect_ratio ?? '1:1').split(':').map(Number);
  const sarRaw = (sarParts[0] ?? 1) / (sarParts[1] ?? 1);
  const sar = Number.isFinite(sarRaw) && sarRaw > 0 ? sarRaw : 1;
  const w = Math.round(codedWidth * sar);
  const swap = rotation === 90 || rotation === 270;
  const width = swap ? codedHeight : w;
  const height = swap ? w : codedHeight;
  if (width * height > tools.maxPixels) {
    throw new FramewiseError('FW_ERR_MEDIA_TOO_LARGE', `frame size ${width}x${height} exceeds the limit of ${tools.maxPixels} pixels: ${path}`, {
      details: { width, height, maxPixels: tools.maxPixels },
    });
  }
  const avg = parseRate(video.avg_frame_rate);
  const fps = Number.isFinite(avg) && avg > 0 ? avg : parseRate(video.r_frame_rate);
  const startStream = num(video.start_time);
  const startFormat = num(json.format?.start_time);
  const startTime = Number.isFinite(startStream) ? startStream : Number.isFinite(startFormat) ? startFormat : 0;
  const frameCountRaw = num(video.nb_frames);
  const frameCount = Number.isFinite(frameCountRaw) && frameCountRaw > 0 ? frameCountRaw : undefined;
  let durationSec = streamLength(video, json.format, container, startTime);
  if (!Number.isFinite(durationSec) && frameCount !== undefined && fps > 0) durationSec = frameCount / fps;
  if (!Number.isFinite(durationSec)) durationSec = 0;
  return {
    path: abs,
    sizeBytes,
    container,
    codec: video.codec_name,
    width,
    height,
    codedWidth,
    codedHeight,
    rotation,
    sar,
    fps: Number.isFinite(fps) && fps > 0 ? fps : 0,
    startTime,
    durationSec,
    frameCount,
    hasAudio,
  };
}

export interface DecodeOptions {
  tools?: MediaTools;
  signal?: AbortSignal;
  /** Called after each frame arrives (for progress). */
  onFrame?: (index: number) => void;
  /**
   * How `tools.decodeTimeoutMs` applies: `total`, to the whole decode; `idle`, to ffmpeg running
   * without producing a frame while the consumer waits (time paused by back-pressure is not
   * counted). @defaultValue `idle` for the windows policy (long videos), else `total`
   */
  timeout?: 'total' | 'idle';
  /**
   * A folder where ffmpeg writes the frames (a spool file, removed after reading) instead of the
   * pipe: ffmpeg then decodes to the end without waiting for this process, whose event loop a
   * synchronous backbone run may be holding. For a bounded number of frames only (clips); long
   * passes stream through the pipe. @defaultValue none in `streamFrames`; in `decodeFrames` the
   * system temporary folder when the frames fit in `SPOOL_MAX_BYTES`
   */
  spoolDir?: string;
}

/** Largest decode (frames × bytes per frame) that `decodeFrames` spools to a file. */
export const SPOOL_MAX_BYTES = 256 * 2 ** 20;

/** A fresh spool file for ffmpeg's stdout (created exclusively, owner-only); undefined when the folder cannot take one (the pipe is used). */
async function openSpool(dir: string): Promise<{ path: string; fh: FileHandle } | undefined> {
  const path = join(dir, `framewise-frames-${process.pid}-${randomBytes(6).toString('hex')}.rgb`);
  return open(path, 'wx', 0o600).then(
    (fh) => ({ path, fh }),
    () => undefined,
  );
}

export interface DecodedFrame {
  index: number;
  /** Seconds from the stream start: its first frame is at 0, whatever the file's timestamps. */
  time: number;
  /** size × size × 3 bytes (a copy, safe to keep). */
  data: Uint8Array;
}

/**
 * Decode the frames a policy asks for, one at a time, in one sequential ffmpeg pass. Memory stays
 * bounded by one frame plus the pipe buffer, whatever the length of the video. With a `windows`
 * policy it is the one pass over a long video (every W/N seconds, to the end). With `spoolDir`
 * (bounded decodes only) the frames go through a file and come out once ffmpeg is done.
 */
export async function* streamFrames(info: VideoInfo, policy: DecodePolicy, geometry: FrameGeometry, options: DecodeOptions = {}): AsyncGenerator<DecodedFrame> {
  const tools = options.tools ?? DEFAULT_MEDIA_TOOLS;
  // only what a probe lets through is decoded (a VideoInfo may come from a queue payload)
  if (!isAllowedContainer(info.container)) throw refusedContainer(demuxerOf(info.container), info.path);
  const frameInterval = info.fps > 0 ? 1 / info.fps : 1 / 30;
  // targets on the decoder's clock: seconds from the stream's first frame (ZERO_CLOCK_FILTER)
  const targets = policy.kind === 'uniform' ? targetTimes(policy, 0, info.durationSec) : undefined;
  const plan = buildDecodeArgs(`file:${info.path}`, policy, geometry, { demuxer: demuxerOf(info.container), duration: info.durationSec, frameInterval }, targets);
  const frameBytes = geometry.size * geometry.size * 3;

  const spool = options.spoolDir !== undefined ? await openSpool(options.spoolDir) : undefined;
  let child;
  try {
    child = spawn(tools.ffmpegPath, plan.args, { stdio: ['ignore', spool ? spool.fh.fd : 'pipe', 'pipe'] });
  } finally {
    // the child has its own copy of the spool's descriptor
    await spool?.fh.close();
  }
  // timestamps not yet matched with a frame (a queue: bounded like the frames, however long the video)
  const times: number[] = [];
  let lastTime: number | undefined;
  const ready: Uint8Array[] = [];
  let pending: Buffer[] = [];
  let pendingBytes = 0;
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
  // The time limit: on the whole decode (a clip), or, for a windows pass over a long video whose
  // pace is set by the consumer (back-pressure), on ffmpeg running without output while the
  // consumer waits for it (a stall); time spent paused by the consumer does not count.
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
  let paused = false;
  arm();
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });

  child.stdout?.on('data', (chunk: Buffer) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes >= frameBytes) {
      const all = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
      ready.push(new Uint8Array(all.subarray(0, frameBytes)));
      const rest = all.subarray(frameBytes);
      pending = rest.length > 0 ? [Buffer.from(rest)] : [];
      pendingBytes = rest.length;
    }
    // back-pressure: stop reading while the consumer is behind
    if (ready.length > 8) {
      child.stdout?.pause();
      paused = true;
      if (idleLimit) disarm();
    } else if (idleLimit) arm();
    notify();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = stderrLine + chunk.toString('utf8');
    const lines = text.split('\n');
    stderrLine = lines.pop() ?? '';
    for (const line of lines) {
      const t = parseShowinfoTime(line);
      if (t !== undefined) times.push(t);
      else if (stderr.length < 64 * 1024) stderr += `${line}\n`;
    }
    notify();
  });
  child.on('error', (e) => {
    spawnError = e;
    notify();
  });
  child.on('close', (code, signal) => {
    const t = parseShowinfoTime(stderrLine);
    if (t !== undefined) times.push(t);
    else stderr += stderrLine;
    closed = { code, signal };
    disarm(); // ffmpeg is done: a slow consumer of the last frames is not a slow decode
    notify();
  });

  let emitted = 0;
  let spoolRead = false;
  try {
    for (;;) {
      if (spawnError) throw new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `cannot run ffmpeg: ${spawnError.message}`, { cause: spawnError });
      // a frame is yielded once its timestamp is known (or the process has ended)
      if (ready.length > 0 && (times.length > 0 || closed)) {
        const data = ready.shift() as Uint8Array;
        if (ready.length <= 8 && paused) {
          paused = false;
          child.stdout?.resume();
          if (idleLimit) arm();
        }
        const time = times.shift() ?? (lastTime !== undefined ? lastTime + frameInterval : 0);
        lastTime = time;
        options.onFrame?.(emitted);
        yield { index: emitted, time: Math.max(0, time), data };
        emitted++;
        continue;
      }
      if (closed && spool && !spoolRead) {
        spoolRead = true;
        if (closed.code !== 0 && /No space left on device|Disk quota exceeded/i.test(stderr)) {
          throw toStorageError(Object.assign(new Error(stderrTail(stderr)), { code: 'ENOSPC' }), 'the decoded frames (temporary folder)');
        }
        const all = await readFile(spool.path);
        for (let at = 0; at + frameBytes <= all.length; at += frameBytes) ready.push(new Uint8Array(all.buffer, all.byteOffset + at, frameBytes));
        continue;
      }
      if (closed) break;
      await new Promise<void>((r) => {
        wake = r;
      });
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
    if (spool) await rm(spool.path, { force: true }).catch(() => undefined);
  }
}

/**
 * No frame came out of a decode: a truncated file when the video does decode but stops before the
 * first sampled time (a header that declares more than the file holds), else `classifyDecodeFailure`.
 * Tells them apart by decoding the stream's first frame only (this path runs on failures alone).
 * `streamMulti` (multi-stream.ts) classifies its failures with it too.
 */
export async function classifyNoFrame(
  info: VideoInfo,
  tools: MediaTools,
  firstTarget: number | undefined,
  closed: { code: number | null; signal: NodeJS.Signals | null } | undefined,
  stderr: string,
): Promise<FramewiseError> {
  const failure = classifyDecodeFailure(info.path, closed, stderr);
  if (failure.code !== 'FW_ERR_MEDIA_CORRUPT' || !(info.durationSec > 0)) return failure;
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', ...buildInputGuardArgs(), '-f', demuxerOf(info.container), '-i', `file:${info.path}`];
  args.push('-map', '0:v:0', '-an', '-sn', '-dn', '-vf', ZERO_CLOCK_FILTER, '-frames:v', '1', '-f', 'framecrc', 'pipe:1');
  const res = await runToEnd(tools.ffmpegPath, args, Math.min(tools.decodeTimeoutMs, 60_000)).catch(() => undefined);
  const decodes = res !== undefined && res.stdout.toString('utf8').split('\n').some((l) => /^\s*\d+,/.test(l));
  if (!decodes) return failure;
  const where = firstTarget !== undefined ? `${firstTarget.toFixed(2)} s (its first sampled time)` : 'its first sampled time';
  return new FramewiseError('FW_ERR_MEDIA_TRUNCATED', `the video stops before ${where} of its declared ${info.durationSec.toFixed(2)} s (truncated file): ${info.path}`, {
    details: { durationSec: info.durationSec, ...(firstTarget !== undefined ? { firstTargetSec: firstTarget } : {}) },
  });
}

function classifyDecodeFailure(path: string, closed: { code: number | null; signal: NodeJS.Signals | null } | undefined, stderr: string): FramewiseError {
  const tail = stderrTail(stderr);
  if (closed?.signal) return new FramewiseError('FW_ERR_MEDIA_DECODE_FAILED', `ffmpeg killed by ${closed.signal}: ${path}`);
  if (/Decoder \(codec [^)]*\) not found|Unsupported codec|no decoder/i.test(stderr)) {
    return new FramewiseError('FW_ERR_MEDIA_UNSUPPORTED_CODEC', `no decoder for this video's codec: ${path}: ${tail}`);
  }
  return new FramewiseError('FW_ERR_MEDIA_CORRUPT', `no frame could be decoded (corrupt or truncated video): ${path}${tail ? `: ${tail}` : ''}`);
}

/** Share of the declared duration that must decode for a clip to count as whole. */
export const TRUNCATION_COVERAGE = 0.9;

/**
 * A clip whose frames stop well before its declared end is truncated: `FW_ERR_MEDIA_TRUNCATED`
 * rather than labelling half a clip (uniform sampling only; `times` of the decoded frames).
 */
export function checkClipCoverage(info: VideoInfo, policy: DecodePolicy, times: readonly number[]): void {
  if (policy.kind === 'uniform' && info.durationSec > 0 && times.length > 0) {
    const interval = info.fps > 0 ? 1 / info.fps : 0.1;
    const reached = (times[times.length - 1] as number) + interval;
    const lastTarget = info.durationSec * (1 - 0.5 / policy.frames);
    if (reached + 2 * interval < lastTarget * TRUNCATION_COVERAGE) {
      throw new FramewiseError('FW_ERR_MEDIA_TRUNCATED', `the video stops at ${reached.toFixed(2)} s of its declared ${info.durationSec.toFixed(2)} s (truncated file): ${info.path}`, {
        details: { decodedSec: reached, durationSec: info.durationSec },
      });
    }
  }
}

/** Decode the sampled frames of a clip into one batch (use `streamFrames` for long videos). */
export async function decodeFrames(info: VideoInfo, policy: DecodePolicy, geometry: FrameGeometry, options: DecodeOptions = {}): Promise<FrameBatch> {
  const frames: Uint8Array[] = [];
  const times: number[] = [];
  const most = policy.kind === 'uniform' ? policy.frames : policy.kind === 'fps' ? policy.maxFrames : Infinity;
  const spoolDir = options.spoolDir ?? (most * geometry.size * geometry.size * 3 <= SPOOL_MAX_BYTES ? tmpdir() : undefined);
  for await (const f of streamFrames(info, policy, geometry, { ...options, ...(spoolDir !== undefined ? { spoolDir } : {}) })) {
    frames.push(f.data);
    times.push(f.time);
  }
  checkClipCoverage(info, policy, times);
  const frameBytes = geometry.size * geometry.size * 3;
  const data = new Uint8Array(frames.length * frameBytes);
  frames.forEach((f, i) => data.set(f, i * frameBytes));
  return { size: geometry.size, count: frames.length, data, times };
}
