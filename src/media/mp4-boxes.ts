/**
 * Reading ISO base media (MP4/MOV) boxes strictly, for `readMp4Probe`: every box must lie inside
 * its parent and every field inside its box, or the reader throws `NotSure` (the caller then asks
 * ffprobe). Also the number forms ffprobe prints (`av_reduce`d rationals, printf's `%f`). Pure.
 */

export class NotSure extends Error {}
export const notSure = (why: string): never => {
  throw new NotSure(why);
};

export interface Box {
  type: string;
  /** Offset of the payload (after the header) within `data`. */
  start: number;
  end: number;
}

/** The child boxes of data[start, end): each must lie inside it. */
export function children(data: Uint8Array, start: number, end: number): Box[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: Box[] = [];
  let at = start;
  while (at < end) {
    if (end - at < 8) notSure('a box header overruns its parent');
    let size = view.getUint32(at);
    const type = String.fromCharCode(...data.subarray(at + 4, at + 8));
    let header = 8;
    if (size === 1) {
      if (end - at < 16) notSure('a box header overruns its parent');
      size = Number(view.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) size = end - at;
    if (size < header || at + size > end) notSure(`box '${type}' overruns its parent`);
    out.push({ type, start: at + header, end: at + size });
    at += size;
  }
  return out;
}

/** The children of a box, each type at most once and only the types listed. */
export function only(data: Uint8Array, box: Box, allowed: readonly string[], offset = 0): Map<string, Box> {
  const map = new Map<string, Box>();
  for (const c of children(data, box.start + offset, box.end)) {
    if (!allowed.includes(c.type)) notSure(`'${c.type}' inside '${box.type}'`);
    if (map.has(c.type)) notSure(`two '${c.type}' in '${box.type}'`);
    map.set(c.type, c);
  }
  return map;
}

export const need = (m: Map<string, Box>, type: string, where: string): Box => m.get(type) ?? notSure(`no '${type}' in '${where}'`);

export class Reader {
  private readonly view: DataView;
  constructor(
    private readonly data: Uint8Array,
    public at: number,
    private readonly end: number,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }
  private take(n: number): number {
    if (this.at + n > this.end) notSure('a box is shorter than its fields');
    const a = this.at;
    this.at += n;
    return a;
  }
  u8 = (): number => this.view.getUint8(this.take(1));
  u16 = (): number => this.view.getUint16(this.take(2));
  u32 = (): number => this.view.getUint32(this.take(4));
  i32 = (): number => this.view.getInt32(this.take(4));
  u64 = (): number => {
    const v = this.view.getBigUint64(this.take(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) notSure('a 64-bit field beyond 2^53');
    return Number(v);
  };
  i64 = (): number => {
    const v = this.view.getBigInt64(this.take(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) notSure('a 64-bit field beyond 2^53');
    return Number(v);
  };
  skip = (n: number): void => {
    this.take(n);
  };
  bytes = (n: number): Uint8Array => this.data.subarray(this.take(n), this.at);
  get left(): number {
    return this.end - this.at;
  }
}

export const boxReader = (data: Uint8Array, box: Box): Reader => new Reader(data, box.start, box.end);

/** Version/flags of a full box, read and checked (versions 0 and 1 only). */
export function fullBox(r: Reader): { version: number; flags: number } {
  const v = r.u32();
  const version = v >>> 24;
  if (version > 1) notSure(`box version ${version}`);
  return { version, flags: v & 0xffffff };
}

const gcd = (a: bigint, b: bigint): bigint => {
  while (b !== 0n) [a, b] = [b, a % b];
  return a < 0n ? -a : a;
};

/** num/den reduced exactly, as FFmpeg's `av_reduce` gives it when the result fits `max`; undefined when it does not. */
export function reduceExact(num: number, den: number, max: number): [number, number] | undefined {
  if (den === 0) return undefined;
  const g = gcd(BigInt(num), BigInt(den));
  if (g === 0n) return [0, 1];
  const n = BigInt(num) / g;
  const d = BigInt(den) / g;
  const [sn, sd] = d < 0n ? [-n, -d] : [n, d];
  if ((sn < 0n ? -sn : sn) > BigInt(max) || sd > BigInt(max)) return undefined;
  return [Number(sn), Number(sd)];
}

/**
 * printf's `%f` (6 decimals, glibc's exact rounding: half to even on the exact binary value), which
 * ffprobe uses for times. `Number.prototype.toFixed` rounds exact halves up instead.
 */
export function printfFixed6(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const neg = x < 0 || Object.is(x, -0);
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const expBits = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const mant = expBits === 0 ? frac : frac | (1n << 52n);
  const exp = (expBits === 0 ? 1 : expBits) - 1075; // value = mant · 2^exp
  const scale = 10n ** 6n;
  let q: bigint;
  if (exp >= 0) q = (mant << BigInt(exp)) * scale;
  else {
    const num = mant * scale;
    const den = 1n << BigInt(-exp);
    q = num / den;
    const twice = (num % den) * 2n;
    if (twice > den || (twice === den && q % 2n === 1n)) q += 1n;
  }
  const s = q.toString().padStart(7, '0');
  return `${neg ? '-' : ''}${s.slice(0, -6)}.${s.slice(-6)}`;
}
