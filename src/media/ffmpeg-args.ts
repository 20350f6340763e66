/**
 * Building ffprobe/ffmpeg argument arrays. Pure: no I/O, no shell (arguments are passed as an
 * array to spawn, so file names are never interpreted by a shell).
 */
import { maxPassFrames, windowGrid, type DecodePolicy, type FrameGeometry } from './sampling.js';

/**
 * The demuxers ffprobe and ffmpeg may use: video containers and raw streams that read only the one
 * file they are given (plus a few audio containers, so an audio file is told apart as audio). Not
 * here, on purpose: playlists and manifests (hls, dash), lists (concat), image sequences (image2),
 * session descriptions (sdp, rtp, rtsp), IMF packages, subtitle pairs (vobsub) and everything else
 * that opens other files or URLs. Names as `ffmpeg -demuxers` lists them (the first of a group).
 */
export const ALLOWED_DEMUXERS: readonly string[] = Object.freeze([
  // containers
  'mov', // mov,mp4,m4a,3gp,3g2,mj2 (external data references stay off: enable_drefs defaults to 0)
  'matroska', // matroska,webm
  'avi',
  'flv',
  'mpegts',
  'mpeg', // MPEG-PS (VOB)
  'ogg',
  'asf', // WMV
  'mxf',
  'nut',
  'rm',
  'wtv',
  'dv',
  'gxf',
  'ivf',
  'yuv4mpegpipe',
  'mpjpeg', // multipart JPEG, as IP cameras stream it
  'dhav', // Dahua CCTV recordings
  // raw elementary video streams
  'mpegvideo',
  'm4v',
  'h261',
  'h263',
  'h264',
  'hevc',
  'vc1',
  'obu',
  'av1',
  'mjpeg',
  'cavsvideo',
  'dirac',
  // audio only (refused later as FW_ERR_MEDIA_NO_VIDEO_STREAM)
  'mp3',
  'wav',
  'aac',
  'flac',
]);

/**
 * Input options that keep ffprobe and ffmpeg on the one local file: only the `file` protocol (no
 * http, tcp, udp, rtp, data, subfile, concat, pipe …), and only the allowed demuxers (so a
 * playlist, manifest or list is refused when it is opened, before any entry of it is read).
 */
export function buildInputGuardArgs(): string[] {
  return ['-protocol_whitelist', 'file', '-format_whitelist', ALLOWED_DEMUXERS.join(',')];
}

/** The demuxer of a probed `format_name` (its first name: `mov` for `mov,mp4,m4a,3gp,3g2,mj2`). */
export function demuxerOf(formatName: string): string {
  return formatName.split(',')[0] ?? '';
}

/** Is this probed `format_name` one of the allowed demuxers? */
export function isAllowedContainer(formatName: string): boolean {
  return ALLOWED_DEMUXERS.includes(demuxerOf(formatName));
}

/**
 * The demuxer ffmpeg or ffprobe refused because it is not allowed (`[hls @ 0x…] Format not on
 * whitelist`), from its stderr; undefined when it refused nothing.
 */
export function parseRefusedDemuxer(stderr: string): string | undefined {
  const m = /\[([\w,-]+) @ (?:0x)?[0-9a-f]+\] Format not on whitelist/i.exec(stderr);
  return m?.[1];
}

export function buildProbeArgs(path: string): string[] {
  return ['-v', 'error', ...buildInputGuardArgs(), '-print_format', 'json', '-show_format', '-show_streams', '--', path];
}

/** Round to microseconds so expressions stay short and stable. */
const fmt = (x: number): string => (Math.round(x * 1e6) / 1e6).toString();

/**
 * The `select` expression that keeps, for each target time, the first frame at or after it
 * (minus `tolerance`, half a frame interval, so a frame just before a target counts).
 * A frame that satisfies several targets is kept once.
 */
export function buildTargetSelectExpr(targets: readonly number[], tolerance: number): string {
  const terms = targets.map((t) => {
    const a = fmt(t - tolerance);
    return `gte(t\\,${a})*(isnan(prev_selected_t)+lt(prev_selected_t\\,${a}))`;
  });
  return `gt(${terms.join('+')}\\,0)`;
}

/**
 * Keep the first frame of each 1/fps-second bucket (counted from `start`), so frames land near
 * k/fps without drift, and slower sources are never padded with duplicates.
 */
export function buildRateSelectExpr(fps: number, start: number, tolerance: number): string {
  const bucket = (v: string): string => `floor((${v}-${fmt(start - tolerance)})*${fmt(fps)})`;
  return `isnan(prev_selected_t)+gt(${bucket('t')}\\,${bucket('prev_selected_t')})`;
}

/**
 * Keep the first frame at or after each grid point `start + offset + j·interval` (j = 0, 1, …),
 * minus `tolerance`: one frame per grid step, never a duplicate, no drift over hours. The
 * windows policy decodes with it (a frame every W/N seconds at the segment centres).
 */
export function buildGridSelectExpr(interval: number, start: number, offset: number, tolerance: number): string {
  const origin = fmt(start + offset - tolerance);
  const step = (v: string): string => `floor((${v}-${origin})*${fmt(1 / interval)})`;
  return `gte(t\\,${origin})*(isnan(prev_selected_t)+gt(${step('t')}\\,${step('prev_selected_t')}))`;
}

/** Scale/crop inside ffmpeg: square pixels first, then short side to `size` + centre crop, or squash; then the mirror when asked. */
export function buildGeometryFilters(geometry: FrameGeometry): string[] {
  const s = geometry.size;
  const squarePixels = "scale='trunc(iw*sar/2)*2':ih:flags=area,setsar=1";
  const flip = geometry.flip ? ['hflip'] : [];
  if (geometry.crop === 'center') {
    return [squarePixels, `scale=${s}:${s}:force_original_aspect_ratio=increase:flags=area`, `crop=${s}:${s}`, 'setsar=1', ...flip];
  }
  return [squarePixels, `scale=${s}:${s}:flags=area`, 'setsar=1', ...flip];
}

/**
 * What makes a `motion` frame, after the frames' geometry and before the sampling `select`: the
 * difference |frame_t − frame_t−1| of consecutive source frames (in planar RGB, so each channel
 * is differenced on its own). The first frame is cloned in front (`tpad`) and the clock put back
 * (`setpts`), so every source frame has its difference at its own time, the first one black: a
 * sampled frame and its motion are always the same instant, whatever the policy (before
 * `diff1a`, a decode of motion alone had no frame at the first instant: where a policy sampled
 * it, windows grids or `fps`, it gave one frame fewer and the rest one step early against the
 * grid; `uniform` clips gave the same features as now). Not amplified: ×4
 * (`lut`) scored higher under mean pooling on surv_fight but lower with the default head on both
 * datasets (README "Accuracy"). One definition for every path that decodes motion (clips,
 * windows, the queue): a change here applies to all of them at once, and must come with a new
 * {@link MOTION_VERSION} (stored motion features and trained heads are keyed by it).
 */
export const MOTION_FILTERS: readonly string[] = Object.freeze(['format=gbrp', 'tpad=start=1:start_mode=clone', 'tblend=all_mode=difference', 'setpts=PTS-STARTPTS']);

/** The version of the motion images ({@link MOTION_FILTERS}): part of the motion stream's feature-store key and of the version a head records. */
export const MOTION_VERSION = 'diff1a';

/** The filters of a motion output up to its `select`: the geometry (made small first), then the difference of consecutive source frames. */
export function buildMotionFilters(geometry: FrameGeometry): string[] {
  return [...buildGeometryFilters(geometry), ...MOTION_FILTERS];
}

export interface DecodePlan {
  /** Full ffmpeg argument list (without the binary). */
  args: string[];
  /** Target times the select filter aims at (uniform), or undefined (fps). */
  targets: number[] | undefined;
  /** Upper bound on frames that will come out. */
  maxFrames: number;
}

/**
 * The filter clock every decode uses: the first decoded frame of the video stream is at 0.
 * Without it the clock the filters see starts wherever ffmpeg puts the file's start (its own
 * offset of the earliest stream, adjusted for MPEG-TS), which is not the video stream's
 * `start_time` that ffprobe reports: MPEG-TS files, offset timestamps, edit lists and negative
 * start times would all be sampled on a shifted clock. Targets, grids and the `showinfo` times
 * that come back are all seconds from the first frame.
 */
export const ZERO_CLOCK_FILTER = 'setpts=PTS-STARTPTS';

/**
 * The `select` expression of a policy (on the zero clock) and the most frames it lets through:
 * `uniform` keeps the frame nearest each target, `fps` one frame per 1/rate bucket, `windows` one
 * frame per step of its grid (every W/N seconds at the segment centres, the whole video).
 */
export function buildPolicySelect(policy: DecodePolicy, targets: readonly number[] | undefined, clip: { duration?: number; frameInterval: number }): { select: string; maxFrames: number } {
  const tolerance = clip.frameInterval / 2;
  if (policy.kind === 'windows') {
    // one sequential pass over the whole video at the windows' grid rate (N/W frames/s)
    const grid = windowGrid(policy);
    const duration = clip.duration ?? 0;
    return { select: buildGridSelectExpr(grid.interval, 0, grid.offset, Math.min(tolerance, grid.interval / 2)), maxFrames: duration > 0 ? maxPassFrames(policy, duration) : 1_000_000_000 };
  }
  const select = policy.kind === 'uniform' && targets !== undefined ? buildTargetSelectExpr(targets, tolerance) : buildRateSelectExpr(policy.kind === 'fps' ? policy.fps : 1, 0, tolerance);
  return { select, maxFrames: policy.kind === 'uniform' ? policy.frames : policy.maxFrames };
}

/**
 * One sequential decode of the first video stream: clock to 0 → select → scale/crop → showinfo
 * (for each frame's timestamp on stderr) → raw rgb24 on stdout. Audio, subtitles and data are
 * dropped. The input is read with the demuxer the probe found (`clip.demuxer`, pinned with `-f`)
 * and the same protocol and demuxer allow-lists as the probe.
 */
export function buildDecodeArgs(
  path: string,
  policy: DecodePolicy,
  geometry: FrameGeometry,
  clip: { demuxer: string; duration: number; frameInterval: number },
  targets: number[] | undefined,
): DecodePlan {
  const { select, maxFrames } = buildPolicySelect(policy, targets, clip);
  const filters = [ZERO_CLOCK_FILTER, `select='${select}'`, ...buildGeometryFilters(geometry), 'showinfo'];
  const args = [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'info',
    '-threads',
    '0',
    ...buildInputGuardArgs(),
    '-f',
    clip.demuxer,
    '-i',
    path,
    '-map',
    '0:v:0',
    '-an',
    '-sn',
    '-dn',
    '-vf',
    filters.join(','),
    '-fps_mode',
    'passthrough',
    '-frames:v',
    String(maxFrames),
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ];
  return { args, targets, maxFrames };
}

/** Parse `pts_time:` of a showinfo line; undefined for other lines. */
export function parseShowinfoTime(line: string): number | undefined {
  if (!line.includes('Parsed_showinfo')) return undefined;
  const m = /\bpts_time:\s*(-?[\d.]+(?:e[-+]?\d+)?)/.exec(line);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}
