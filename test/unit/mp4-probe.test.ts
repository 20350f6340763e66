/** Pure parts of the in-process MP4 reader: ffprobe's number formats and the H.264 SPS reader. */
import { describe, expect, it } from 'vitest';
import { nalToRbsp, parseSps } from '../../src/media/h264-sps.js';
import { printfFixed6, reduceExact } from '../../src/media/mp4-boxes.js';

describe('printfFixed6 (printf %f as ffprobe prints times)', () => {
  it('rounds to 6 decimals like glibc, exact halves to even', () => {
    expect(printfFixed6(2)).toBe('2.000000');
    expect(printfFixed6(2.002)).toBe('2.002000');
    expect(printfFixed6(0)).toBe('0.000000');
    expect(printfFixed6(1 / 3)).toBe('0.333333');
    expect(printfFixed6(2 / 3)).toBe('0.666667');
    // 2^-7 = 0.0078125 exactly: a true half, to even (toFixed would give 0.007813)
    expect(printfFixed6(0.0078125)).toBe('0.007812');
    expect((0.0078125).toFixed(6)).toBe('0.007813');
    // 3·2^-7 = 0.0234375: half, the even neighbour is above
    expect(printfFixed6(0.0234375)).toBe('0.023438');
    expect(printfFixed6(123456.5)).toBe('123456.500000');
    expect(printfFixed6(-1.5)).toBe('-1.500000');
    expect(printfFixed6(53 * (1 / 25))).toBe('2.120000');
  });
});

describe('reduceExact (av_reduce when it is exact)', () => {
  it('reduces, and refuses what does not fit', () => {
    expect(reduceExact(30000 * 60, 1001 * 60, 2 ** 31 - 1)).toEqual([30000, 1001]);
    expect(reduceExact(4, 3, 32767)).toEqual([4, 3]);
    expect(reduceExact(0, 5, 32767)).toEqual([0, 1]);
    expect(reduceExact(40000, 39999, 32767)).toBeUndefined();
    expect(reduceExact(1, 0, 32767)).toBeUndefined();
  });
});

/** An RBSP bit writer for building parameter sets. */
function bits(fields: Array<[number, number] | ['ue', number]>): Uint8Array {
  let s = '';
  for (const [n, v] of fields) {
    if (n === 'ue') {
      const code = (v + 1).toString(2);
      s += '0'.repeat(code.length - 1) + code;
    } else s += v.toString(2).padStart(n, '0');
  }
  s += '1'; // rbsp stop bit
  while (s.length % 8) s += '0';
  return Uint8Array.from(s.match(/.{8}/g) ?? [], (b) => parseInt(b, 2));
}

/** A baseline SPS (profile 66): width × height in macroblocks, optional crop and VUI aspect. */
function baselineSps(mbW: number, mbH: number, opts: { cropRight?: number; cropBottom?: number; cropLeft?: number; sarIdc?: number; sar?: [number, number]; frameMbsOnly?: 0 | 1 } = {}): Uint8Array {
  const crop = opts.cropRight !== undefined || opts.cropBottom !== undefined || opts.cropLeft !== undefined;
  const f: Array<[number, number] | ['ue', number]> = [[8, 66], [8, 0xc0], [8, 30], ['ue', 0], ['ue', 0], ['ue', 0], ['ue', 0], ['ue', 1], [1, 0], ['ue', mbW - 1], ['ue', mbH - 1], [1, opts.frameMbsOnly ?? 1]];
  if ((opts.frameMbsOnly ?? 1) === 0) f.push([1, 0]);
  f.push([1, 1], [1, crop ? 1 : 0]);
  if (crop) f.push(['ue', opts.cropLeft ?? 0], ['ue', opts.cropRight ?? 0], ['ue', 0], ['ue', opts.cropBottom ?? 0]);
  if (opts.sarIdc !== undefined) {
    f.push([1, 1], [1, 1], [8, opts.sarIdc]);
    if (opts.sarIdc === 255) f.push([16, opts.sar?.[0] ?? 0], [16, opts.sar?.[1] ?? 0]);
    f.push([1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [1, 0]);
  } else f.push([1, 0]);
  return Uint8Array.from([0x67, ...bits(f)]);
}

describe('parseSps', () => {
  it('reads the size in macroblocks less the cropping, and the VUI aspect', () => {
    expect(parseSps(baselineSps(20, 15))).toEqual({ profileIdc: 66, width: 320, height: 240, sar: [0, 0] });
    // 1920×1080: 68 macroblock rows less 4 chroma rows of cropping
    expect(parseSps(baselineSps(120, 68, { cropBottom: 4 }))).toMatchObject({ width: 1920, height: 1080 });
    expect(parseSps(baselineSps(21, 16, { cropRight: 7, cropBottom: 3 }))).toMatchObject({ width: 322, height: 250 });
    expect(parseSps(baselineSps(20, 15, { sarIdc: 14 }))?.sar).toEqual([4, 3]);
    expect(parseSps(baselineSps(20, 15, { sarIdc: 255, sar: [10, 11] }))?.sar).toEqual([10, 11]);
  });

  it('is not sure (undefined) of a left crop, field coding, an unknown aspect code, a cut set or another NAL type', () => {
    expect(parseSps(baselineSps(20, 15, { cropLeft: 2 }))).toBeUndefined();
    expect(parseSps(baselineSps(20, 15, { frameMbsOnly: 0 }))).toBeUndefined();
    expect(parseSps(baselineSps(20, 15, { sarIdc: 100 }))).toBeUndefined();
    const whole = baselineSps(20, 15, { sarIdc: 255, sar: [10, 11] });
    expect(parseSps(whole.subarray(0, 6))).toBeUndefined();
    expect(parseSps(Uint8Array.from([0x68, ...whole.subarray(1)]))).toBeUndefined();
  });

  it('removes emulation-prevention bytes', () => {
    expect([...nalToRbsp(Uint8Array.from([0x67, 0, 0, 3, 1, 0, 0, 3, 0]))]).toEqual([0, 0, 1, 0, 0, 0]);
  });
});
