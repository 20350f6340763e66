/**
 * ffprobe's answer for plain MP4/MOV files, read by framewise from the file's `moov` box, without
 * starting a process (ffprobe costs ≈ 70 ms of CPU per clip, most of it process start-up).
 *
 * `readMp4Probe` returns the fields of `ffprobe -show_format -show_streams -print_format json`
 * that `probe` reads, computed as FFmpeg's `mov` demuxer computes them (libavformat/mov.c of the
 * FFmpeg this project runs: durations from mdhd/stts/elst, the frame rate from stts, the start
 * from elst/ctts, rotation from the tkhd matrix, the size and pixel aspect from the H.264 SPS and
 * `pasp`), printed as ffprobe prints them. It reads only a narrow, common layout: a file that
 * starts with `ftyp`, one `moov`, boxes that lie inside the file, one H.264 (`avc1`) video track
 * with at most one plain edit, audio tracks, nothing fragmented. Anything else, or anything it is
 * not sure of, gives `{ fallback: reason }`, and the caller runs ffprobe: it never guesses.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { parseSps, type SpsInfo } from './h264-sps.js';
import { boxReader, children, fullBox, need, NotSure, notSure, only, printfFixed6, reduceExact, type Box, type Reader } from './mp4-boxes.js';

/** The subset of ffprobe's JSON that `probe` reads (the same field names and text forms). */
export interface ProbeStreamJson {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  sample_aspect_ratio?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  start_time?: string;
  duration?: string;
  nb_frames?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: Array<{ rotation?: number; side_data_type?: string }>;
}

export interface ProbeJson {
  streams?: ProbeStreamJson[];
  format?: { format_name?: string; duration?: string; start_time?: string };
}

export type Mp4Probe = { json: ProbeJson } | { fallback: string };

/** ffprobe's `format_name` for the mov demuxer. */
export const MOV_FORMAT_NAME = 'mov,mp4,m4a,3gp,3g2,mj2';

/** The largest `moov` read (bytes); a larger one is left to ffprobe. */
const MAX_MOOV_BYTES = 64 * 2 ** 20;
/** The largest first video sample read to check its in-band parameter sets. */
const MAX_FIRST_SAMPLE_BYTES = 8 * 2 ** 20;
const INT_MAX = 2 ** 31 - 1;

/** ffprobe's text for a time of `ticks` in a 1/`timescale` time base (`ts * av_q2d(tb)`, `%f`). */
const timeText = (ticks: number, timescale: number): string => printfFixed6(ticks * (1 / timescale));

interface TrackFacts {
  handler: string;
  stream: ProbeStreamJson;
  /** Video only: where the first sample lies, and the parameter set it must agree with. */
  first?: FirstSample;
}

interface FirstSample {
  offset: number;
  size: number;
  nalLengthSize: number;
  spsNal: Uint8Array;
}

const UNIT = 0x10000;
const ROTATIONS: ReadonlyArray<readonly [number, number, number, number]> = [
  [UNIT, 0, 0, UNIT],
  [0, UNIT, -UNIT, 0],
  [-UNIT, 0, 0, -UNIT],
  [0, -UNIT, UNIT, 0],
];

/** `av_display_rotation_get` of a tkhd matrix, as ffprobe prints it (an integer). */
function displayRotation(a: number, b: number, c: number, d: number): number {
  const conv = (x: number): number => x / 65536.0;
  const s0 = Math.hypot(conv(a), conv(c));
  const s1 = Math.hypot(conv(b), conv(d));
  const rotation = (Math.atan2(conv(b) / s1, conv(a) / s0) * 180) / Math.PI;
  return Math.trunc(-rotation);
}

function readMatrix(r: Reader): number[] {
  return Array.from({ length: 9 }, () => r.i32());
}

/** mvhd → the movie time scale; its matrix must be the identity. */
function readMvhd(data: Uint8Array, box: Box): number {
  const r = boxReader(data, box);
  const { version } = fullBox(r);
  r.skip(version === 1 ? 16 : 8);
  const timescale = r.u32();
  r.skip(version === 1 ? 8 : 4);
  r.skip(4 + 2 + 10);
  const m = readMatrix(r);
  if (m.join(',') !== [UNIT, 0, 0, 0, UNIT, 0, 0, 0, 0x40000000].join(',')) notSure('a movie matrix other than the identity');
  if (timescale <= 0 || timescale > INT_MAX) notSure('movie time scale');
  return timescale;
}

const LEAF_FREE = ['free', 'skip', 'udta', 'meta', 'uuid'];

function readTrack(data: Uint8Array, trak: Box, movieTimescale: number): TrackFacts {
  const parts = only(data, trak, ['tkhd', 'mdia', 'edts', 'tref', ...LEAF_FREE]);
  if (parts.has('tref')) notSure('track references');
  const mdia = only(data, need(parts, 'mdia', 'trak'), ['mdhd', 'hdlr', 'minf', ...LEAF_FREE]);

  const hr = boxReader(data, need(mdia, 'hdlr', 'mdia'));
  fullBox(hr);
  hr.skip(4);
  const handler = String.fromCharCode(...hr.bytes(4));
  if (handler === 'soun') {
    // an audio track ffprobe would refuse (and with it the file) must not pass here: its header and chunk tables are checked
    if (!parts.has('tkhd')) notSure('an audio track without tkhd');
    const mr = boxReader(data, need(mdia, 'mdhd', 'mdia'));
    fullBox(mr);
    const minf = only(data, need(mdia, 'minf', 'mdia'), ['smhd', 'dinf', 'stbl', 'hdlr', ...LEAF_FREE]);
    const stbl = only(data, need(minf, 'stbl', 'minf'), ['stsd', 'stts', 'ctts', 'stss', 'stsz', 'stsc', 'stco', 'co64', 'sdtp', 'sgpd', 'sbgp', 'free', 'skip']);
    need(stbl, 'stsd', 'stbl');
    need(stbl, 'stts', 'stbl');
    need(stbl, 'stsz', 'stbl');
    chunkTables(data, stbl);
    return { handler, stream: { codec_type: 'audio' } };
  }
  if (handler !== 'vide') notSure(`a '${handler}' track`);

  // tkhd: the display matrix and the track's size
  const tr = boxReader(data, need(parts, 'tkhd', 'trak'));
  const tk = fullBox(tr);
  tr.skip(tk.version === 1 ? 16 : 8);
  tr.skip(4 + 4);
  tr.skip(tk.version === 1 ? 8 : 4);
  tr.skip(8 + 8);
  const m = readMatrix(tr);
  const tkhdWidth = tr.u32() >>> 16;
  const tkhdHeight = tr.u32() >>> 16;
  const [a, b, , c, d] = m as [number, number, number, number, number];
  if (m[2] !== 0 || m[5] !== 0 || m[8] !== 0x40000000 || !ROTATIONS.some((q) => q[0] === a && q[1] === b && q[2] === c && q[3] === d)) {
    notSure('a display matrix other than a rotation by a multiple of 90°');
  }
  const identity = a === UNIT && d === UNIT && m[6] === 0 && m[7] === 0;

  // mdhd: time scale and duration
  const mr = boxReader(data, need(mdia, 'mdhd', 'mdia'));
  const md = fullBox(mr);
  mr.skip(md.version === 1 ? 16 : 8);
  const timescale = mr.u32();
  if (timescale <= 0 || timescale > INT_MAX) notSure('track time scale');
  let duration = md.version === 1 ? mr.u64() : mr.u32();

  const minf = only(data, need(mdia, 'minf', 'mdia'), ['vmhd', 'dinf', 'stbl', 'hdlr', ...LEAF_FREE]);
  const dinf = minf.get('dinf');
  if (dinf) {
    const dref = only(data, dinf, ['dref']).get('dref');
    if (dref) {
      const rr = boxReader(data, dref);
      fullBox(rr);
      const n = rr.u32();
      const entries = children(data, rr.at, dref.end);
      if (n !== 1 || entries.length !== 1) notSure('data references');
      const e = boxReader(data, entries[0] as Box);
      if ((entries[0] as Box).type !== 'url ' || (fullBox(e).flags & 1) !== 1) notSure('an external data reference');
    }
  }
  const stbl = only(data, need(minf, 'stbl', 'minf'), ['stsd', 'stts', 'ctts', 'stss', 'stsz', 'stsc', 'stco', 'co64', 'sdtp', 'sgpd', 'sbgp', 'cslg', 'stps', 'free', 'skip']);

  // stsd: one avc1 entry
  const sr = boxReader(data, need(stbl, 'stsd', 'stbl'));
  fullBox(sr);
  if (sr.u32() !== 1) notSure('several sample descriptions');
  const entries = children(data, sr.at, need(stbl, 'stsd', 'stbl').end);
  const entry = entries[0];
  if (entries.length !== 1 || !entry) notSure('several sample descriptions');
  const e = entry as Box;
  if (e.type !== 'avc1') notSure(`video sample entry '${e.type}'`);
  const er = boxReader(data, e);
  er.skip(6 + 2 + 16);
  const entryWidth = er.u16();
  const entryHeight = er.u16();
  er.skip(4 + 4 + 4 + 2 + 32 + 2 + 2);
  const ext = only(data, { type: 'avc1', start: er.at, end: e.end }, ['avcC', 'pasp', 'btrt', 'colr']);
  const avcc = boxReader(data, need(ext, 'avcC', 'avc1'));
  if (avcc.u8() !== 1) notSure('avcC version');
  avcc.skip(3);
  const nalLengthSize = (avcc.u8() & 3) + 1;
  if ((avcc.u8() & 0x1f) !== 1) notSure('not exactly one SPS in avcC');
  const spsNal = avcc.bytes(avcc.u16());
  const sps: SpsInfo = parseSps(spsNal) ?? notSure('an SPS this reader does not follow');
  if (sps.width !== entryWidth || sps.height !== entryHeight) notSure('the SPS size differs from the sample entry');

  // sample aspect: pasp (reduced to 32767 as mov.c does), else the tkhd size check of mov.c, else the SPS
  let sar: [number, number] | undefined;
  const pasp = ext.get('pasp');
  if (pasp) {
    const pr = boxReader(data, pasp);
    const h = pr.i32();
    const v = pr.i32();
    if (v !== 0) {
      const q = reduceExact(h, v, 32767) ?? notSure('a pixel aspect that FFmpeg approximates');
      if (q[0] > 0 && q[1] > 0) sar = q;
      else if (q[0] !== 0) notSure('a negative pixel aspect');
    }
  }
  // without a pasp aspect, mov.c derives one from a track size that differs from the sample entry's
  if (!sar && tkhdWidth !== 0 && tkhdHeight !== 0 && (tkhdWidth !== entryWidth || tkhdHeight !== entryHeight)) notSure('the track size differs from the sample entry');
  if (!sar && sps.sar[0] > 0 && sps.sar[1] > 0) sar = reduceExact(sps.sar[0], sps.sar[1], INT_MAX);

  // stts: frame count, duration and the frame rate's denominator
  const ttr = boxReader(data, need(stbl, 'stts', 'stbl'));
  fullBox(ttr);
  const sttsEntries = ttr.u32();
  if (sttsEntries * 8 > ttr.left) notSure('stts shorter than its entries');
  let sttsDuration = 0;
  let sampleCount = 0;
  for (let i = 0; i < sttsEntries; i++) {
    const count = ttr.u32();
    const delta = ttr.u32();
    if (delta >= 2 ** 31) notSure('an stts delta FFmpeg corrects');
    sttsDuration += count * delta;
    sampleCount += count;
  }
  if (sampleCount <= 0 || sampleCount > INT_MAX || sttsDuration <= 0 || !Number.isSafeInteger(sttsDuration)) notSure('no samples');
  duration = Math.min(duration, sttsDuration);

  // sample tables that mov.c checks before it builds its index
  const stsz = boxReader(data, need(stbl, 'stsz', 'stbl'));
  fullBox(stsz);
  const fixedSize = stsz.u32();
  if (stsz.u32() !== sampleCount) notSure('stsz and stts count different samples');
  const firstSize = fixedSize !== 0 ? fixedSize : stsz.u32();
  const firstChunk = chunkTables(data, stbl);

  // ctts: the start without an edit list; negative offsets shift DTS (not followed)
  let firstCtts = 0;
  const ctts = stbl.get('ctts');
  if (ctts) {
    const r = boxReader(data, ctts);
    fullBox(r);
    const n = r.u32();
    if (n * 8 > r.left) notSure('ctts shorter than its entries');
    let first: number | undefined;
    for (let i = 0; i < n; i++) {
      const count = r.i32();
      const off = r.i32();
      if (off < 0 || off >= 2 ** 28) notSure('a negative or huge composition offset');
      if (count > 0 && first === undefined) first = off;
    }
    firstCtts = first ?? 0;
  }

  // edts: at most one edit that plays the media at rate 1, optionally after one empty edit
  let startTicks = firstCtts;
  const edts = parts.get('edts');
  if (edts) {
    const elst = only(data, edts, ['elst']).get('elst');
    if (elst) {
      const r = boxReader(data, elst);
      const { version } = fullBox(r);
      const n = r.u32();
      const size = version === 1 ? 20 : 12;
      if (r.left !== n * size) notSure('elst size');
      const edits = Array.from({ length: n }, () => {
        const segment = version === 1 ? r.u64() : r.u32();
        const mediaTime = version === 1 ? r.i64() : r.i32();
        const rate = r.u32();
        return { segment, mediaTime, rate };
      });
      if (n > 0) {
        const empty = edits[0]?.mediaTime === -1 ? [edits[0]] : [];
        const rest = edits.slice(empty.length);
        if (rest.length !== 1 || (rest[0]?.mediaTime ?? -1) < 0 || rest[0]?.rate !== UNIT) notSure('an edit list other than one plain edit');
        if (edits.some((x) => x.segment <= 0)) notSure('an edit of no length');
        // durations are in the movie time scale: av_rescale (round half away from zero) to the track's
        const rescale = (x: number): number => {
          const v = (BigInt(x) * BigInt(timescale) * 2n + BigInt(movieTimescale)) / (2n * BigInt(movieTimescale));
          if (v > BigInt(Number.MAX_SAFE_INTEGER)) notSure('an edit beyond 2^53');
          return Number(v);
        };
        const emptyTicks = empty.reduce((s, x) => s + rescale((x as { segment: number }).segment), 0);
        const total = edits.reduce((s, x) => s + rescale(x.segment), 0);
        duration = Math.min(duration, total);
        startTicks = emptyTicks;
      }
    }
  }
  if (duration <= 0) notSure('no duration');

  const fps = reduceExact(timescale * sampleCount, sttsDuration, INT_MAX) ?? notSure('a frame rate FFmpeg approximates');
  const stream: ProbeStreamJson = {
    codec_type: 'video',
    codec_name: 'h264',
    width: sps.width,
    height: sps.height,
    ...(sar ? { sample_aspect_ratio: `${sar[0]}:${sar[1]}` } : {}),
    avg_frame_rate: `${fps[0]}/${fps[1]}`,
    start_time: timeText(startTicks, timescale),
    duration: timeText(duration, timescale),
    nb_frames: String(sampleCount),
    disposition: { attached_pic: 0 },
    ...(identity ? {} : { side_data_list: [{ side_data_type: 'Display Matrix', rotation: displayRotation(a, b, c, d) }] }),
  };
  return { handler, stream, first: { offset: firstChunk, size: firstSize, nalLengthSize, spsNal } };
}

/**
 * The chunk tables mov.c checks before it builds an index (a contradiction there fails the whole
 * file in ffprobe): one stco or co64 with at least one chunk, an stsc whose first chunks start at
 * 1, increase and stay within the chunks. The first chunk's offset.
 */
function chunkTables(data: Uint8Array, stbl: Map<string, Box>): number {
  if (stbl.has('stco') && stbl.has('co64')) notSure('two chunk offset tables');
  const stco = stbl.get('stco') ?? stbl.get('co64') ?? notSure('no chunk offsets');
  const cr = boxReader(data, stco);
  fullBox(cr);
  const chunks = cr.u32();
  if (chunks === 0 || chunks * (stco.type === 'co64' ? 8 : 4) > cr.left) notSure('chunk offsets');
  const firstChunk = stco.type === 'co64' ? cr.u64() : cr.u32();
  const scr = boxReader(data, need(stbl, 'stsc', 'stbl'));
  fullBox(scr);
  const entries = scr.u32();
  if (entries === 0 || entries * 12 > scr.left) notSure('stsc');
  let last = 0;
  for (let i = 0; i < entries; i++) {
    const first = scr.u32();
    const perChunk = scr.u32();
    scr.skip(4);
    if ((i === 0 ? first !== 1 : first <= last) || first > chunks || perChunk === 0) notSure('stsc and the chunk offsets disagree');
    last = first;
  }
  return firstChunk;
}

/** Does the first video sample carry only the SPS of avcC (the decoder could switch to another)? */
async function firstSampleAgrees(fh: FileHandle, fileSize: number, t: FirstSample): Promise<boolean> {
  if (t.size <= 0 || t.size > MAX_FIRST_SAMPLE_BYTES || t.offset + t.size > fileSize) return false;
  const buf = Buffer.alloc(t.size);
  const { bytesRead } = await fh.read(buf, 0, t.size, t.offset);
  if (bytesRead !== t.size) return false;
  let at = 0;
  while (at < buf.length) {
    if (at + t.nalLengthSize > buf.length) return false;
    const len = buf.readUIntBE(at, t.nalLengthSize);
    at += t.nalLengthSize;
    if (len === 0 || at + len > buf.length) return false;
    const type = (buf[at] as number) & 0x1f;
    if (type === 7 && !buf.subarray(at, at + len).equals(t.spsNal)) return false;
    at += len;
  }
  return true;
}

const TOP_LEVEL = ['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'uuid', 'pdin', 'meta'];

/**
 * What ffprobe would print for this MP4/MOV file (the fields `probe` reads), or why this reader
 * leaves it to ffprobe.
 */
export async function readMp4Probe(path: string, fileSize: number): Promise<Mp4Probe> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch {
    return { fallback: 'cannot open' };
  }
  try {
    // the top-level boxes: headers only, except moov
    const head = Buffer.alloc(16);
    let at = 0;
    let moov: Uint8Array | undefined;
    let first = true;
    for (let n = 0; at < fileSize; n++) {
      if (n > 1000) return { fallback: 'too many top-level boxes' };
      const { bytesRead } = await fh.read(head, 0, 16, at);
      if (bytesRead < 8) return { fallback: 'a box header overruns the file' };
      let size = head.readUInt32BE(0);
      const type = head.toString('latin1', 4, 8);
      let header = 8;
      if (size === 1) {
        if (bytesRead < 16) return { fallback: 'a box header overruns the file' };
        size = Number(head.readBigUInt64BE(8));
        header = 16;
      } else if (size === 0) size = fileSize - at;
      if (first && type !== 'ftyp') return { fallback: 'not an ftyp-first MP4' };
      first = false;
      if (!TOP_LEVEL.includes(type)) return { fallback: `top-level box '${type}'` };
      if (size < header || at + size > fileSize) return { fallback: `box '${type}' overruns the file` };
      if (type === 'moov') {
        if (moov) return { fallback: 'two moov boxes' };
        if (size > MAX_MOOV_BYTES) return { fallback: 'a very large moov' };
        const buf = Buffer.alloc(size - header);
        const r = await fh.read(buf, 0, buf.length, at + header);
        if (r.bytesRead !== buf.length) return { fallback: 'moov shorter than declared' };
        moov = buf;
      }
      at += size;
    }
    if (!moov) return { fallback: 'no moov' };
    const boxes = children(moov, 0, moov.length);
    const allowed = ['mvhd', 'trak', 'iods', ...LEAF_FREE];
    const bad = boxes.find((b) => !allowed.includes(b.type));
    if (bad) return { fallback: `'${bad.type}' inside 'moov'` };
    const mvhds = boxes.filter((b) => b.type === 'mvhd');
    if (mvhds.length !== 1) return { fallback: 'not one mvhd' };
    const movieTimescale = readMvhd(moov, mvhds[0] as Box);
    const tracks = boxes.filter((b) => b.type === 'trak').map((t) => readTrack(moov as Uint8Array, t, movieTimescale));
    const video = tracks.filter((t) => t.handler === 'vide');
    if (video.length !== 1) return { fallback: `${video.length} video tracks` };
    const sample = video[0]?.first;
    if (!sample || !(await firstSampleAgrees(fh, fileSize, sample))) return { fallback: 'the first sample carries another SPS, or lies outside the file' };
    return { json: { streams: tracks.map((t) => t.stream), format: { format_name: MOV_FORMAT_NAME } } };
  } catch (e) {
    if (e instanceof NotSure) return { fallback: e.message };
    throw e;
  } finally {
    await fh.close();
  }
}
