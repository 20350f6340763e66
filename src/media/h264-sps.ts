/**
 * What the H.264 decoder takes from a sequence parameter set (ITU-T H.264 § 7.3.2.1.1): the
 * displayed (cropped) frame size and the sample aspect ratio of the VUI, read the way FFmpeg's
 * decoder reads them (`libavcodec/h264_ps.c`). Pure. Anything it is not sure of — a cropped left
 * or top edge (which FFmpeg may realign), field coding, an unknown profile layout, a truncated
 * set — is `undefined`, and the caller asks ffprobe instead.
 */

export interface SpsInfo {
  profileIdc: number;
  /** Displayed size: the coded macroblocks less the cropping. */
  width: number;
  height: number;
  /** The VUI's sample aspect ratio, `[0, 0]` when the set has none. */
  sar: [number, number];
}

/** ISO/IEC 14496-10 Table E-1 (aspect_ratio_idc 0–16), as FFmpeg's `ff_h264_pixel_aspect`. */
const PIXEL_ASPECT: ReadonlyArray<[number, number]> = [
  [0, 1],
  [1, 1],
  [12, 11],
  [10, 11],
  [16, 11],
  [40, 33],
  [24, 11],
  [20, 11],
  [32, 11],
  [80, 33],
  [18, 11],
  [15, 11],
  [64, 33],
  [160, 99],
  [4, 3],
  [3, 2],
  [2, 1],
];
const EXTENDED_SAR = 255;
/** Profiles whose SPS carries chroma format, bit depths and scaling lists (FFmpeg's list). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 144]);

class Truncated extends Error {}

/** A big-endian bit reader over an RBSP (emulation-prevention bytes already removed). */
class BitReader {
  private pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  bit(): number {
    const byte = this.buf[this.pos >> 3];
    if (byte === undefined) throw new Truncated();
    const b = (byte >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return b;
  }

  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }

  /** Exp-Golomb ue(v); at most 32 leading zeros. */
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (++zeros > 31) throw new Truncated();
    }
    return 2 ** zeros - 1 + this.bits(zeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -k / 2;
  }
}

/** The RBSP of a NAL unit: the payload without its header byte and with 0x000003 escapes removed. */
export function nalToRbsp(nal: Uint8Array): Uint8Array {
  const out: number[] = [];
  let zeros = 0;
  for (let i = 1; i < nal.length; i++) {
    const b = nal[i] as number;
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out.push(b);
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return Uint8Array.from(out);
}

function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) {
      const delta = r.se();
      next = (last + delta + 256) % 256;
    }
    last = next === 0 ? last : next;
  }
}

/**
 * Parse a sequence parameter set NAL unit (header byte included). `undefined` when the set is not
 * one this reader is sure to read as FFmpeg's decoder does.
 */
export function parseSps(nal: Uint8Array): SpsInfo | undefined {
  if (nal.length < 4 || ((nal[0] as number) & 0x1f) !== 7) return undefined;
  const r = new BitReader(nalToRbsp(nal));
  try {
    const profileIdc = r.bits(8);
    r.bits(8); // constraint flags and reserved bits
    r.bits(8); // level_idc
    if (r.ue() > 31) return undefined; // sps id
    let chromaFormat = 1;
    if (HIGH_PROFILES.has(profileIdc)) {
      chromaFormat = r.ue();
      if (chromaFormat > 3) return undefined;
      if (chromaFormat === 3 && r.bit() === 1) return undefined; // residual colour transform: refused by FFmpeg
      const depthLuma = r.ue() + 8;
      const depthChroma = r.ue() + 8;
      if (depthLuma !== depthChroma || depthLuma > 14) return undefined;
      r.bit(); // transform bypass
      if (r.bit() === 1) {
        const lists = chromaFormat === 3 ? 12 : 8;
        for (let i = 0; i < lists; i++) if (r.bit() === 1) skipScalingList(r, i < 6 ? 16 : 64);
      }
    }
    if (r.ue() > 12) return undefined; // log2_max_frame_num_minus4
    const pocType = r.ue();
    if (pocType === 0) {
      if (r.ue() > 12) return undefined;
    } else if (pocType === 1) {
      r.bit();
      r.se();
      r.se();
      const cycle = r.ue();
      if (cycle >= 256) return undefined;
      for (let i = 0; i < cycle; i++) r.se();
    } else if (pocType !== 2) return undefined;
    if (r.ue() > 16) return undefined; // max_num_ref_frames
    r.bit(); // gaps_in_frame_num_allowed
    const mbWidth = r.ue() + 1;
    const mapUnitsHeight = r.ue() + 1;
    const frameMbsOnly = r.bit();
    // field-coded streams: the frame height doubles and interlaced cropping has its own rules; ffprobe decides
    if (frameMbsOnly !== 1) return undefined;
    r.bit(); // direct_8x8_inference
    let width = 16 * mbWidth;
    let height = 16 * mapUnitsHeight;
    if (width > 16384 || height > 16384) return undefined;
    if (r.bit() === 1) {
      const [left, right, top, bottom] = [r.ue(), r.ue(), r.ue(), r.ue()];
      // FFmpeg may realign a left crop, and top crops come with it: not read here
      if (left !== 0 || top !== 0) return undefined;
      const stepX = chromaFormat === 1 || chromaFormat === 2 ? 2 : 1;
      const stepY = chromaFormat === 1 ? 2 : 1;
      if (right * stepX >= width || bottom * stepY >= height) return undefined;
      width -= right * stepX;
      height -= bottom * stepY;
    }
    let sar: [number, number] = [0, 0];
    if (r.bit() === 1 && r.bit() === 1) {
      // vui_parameters_present and aspect_ratio_info_present
      const idc = r.bits(8);
      if (idc === EXTENDED_SAR) sar = [r.bits(16), r.bits(16)];
      else {
        const known = PIXEL_ASPECT[idc];
        if (!known) return undefined;
        sar = [known[0], known[1]];
      }
    }
    return { profileIdc, width, height, sar };
  } catch (e) {
    if (e instanceof Truncated) return undefined;
    throw e;
  }
}
