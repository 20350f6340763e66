/**
 * Scheduling of the extract pipeline (pure bookkeeping, no I/O): where the time goes, stage by
 * stage, and how far decoding runs ahead of the embed.
 *
 * - `StageTimings`: summed milliseconds per stage (probe, hash, store read, decode, decode wait,
 *   embed, store write). Stages that run in parallel each count their own time, so the sum may
 *   exceed the wall time; `decodeWaitMs` is the time the embed side sat waiting for a decode.
 * - `DecodeAhead`: the decode-ahead depth, adapted to the backbone's rate: deeper while the embed
 *   waits for decodes, never beyond `max` (each file decoded ahead holds its frames in memory).
 * - `LookupTrend`: whether recent feature-store lookups missed, so the probe can start in
 *   parallel with the content hash (a miss needs both) without wasting a probe per store hit.
 */

export const STAGES = ['hashMs', 'storeReadMs', 'probeMs', 'decodeMs', 'decodeWaitMs', 'embedMs', 'storeWriteMs'] as const;
export type Stage = (typeof STAGES)[number];
export type StageTimings = Record<Stage, number>;

export function createStageTimings(): StageTimings {
  return { hashMs: 0, storeReadMs: 0, probeMs: 0, decodeMs: 0, decodeWaitMs: 0, embedMs: 0, storeWriteMs: 0 };
}

/** Run `fn`, adding its duration (also when it throws) to `timings[stage]`. */
export async function timeStage<T>(timings: StageTimings, stage: Stage, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[stage] += performance.now() - t0;
  }
}

/** Add `more` into `into` (stage by stage). */
export function addTimings(into: StageTimings, more: StageTimings): void {
  for (const s of STAGES) into[s] += more[s];
}

/** Timings rounded to whole milliseconds (for JSON output). */
export function roundTimings(t: StageTimings): StageTimings {
  const out = createStageTimings();
  for (const s of STAGES) out[s] = Math.round(t[s]);
  return out;
}

export interface DecodeAheadConfig {
  /** Depth to start with. @defaultValue 2 */
  initial: number;
  /** Never fewer files ahead. @defaultValue 1 */
  min: number;
  /** Never more files ahead (memory: each holds its decoded frames). @defaultValue 6 */
  max: number;
}

export const DEFAULT_DECODE_AHEAD: DecodeAheadConfig = Object.freeze({ initial: 2, min: 1, max: 6 });

/**
 * The decode-ahead depth. After each file the embed side reports how long it waited for that
 * file's decode and how long it then spent embedding it: a wait longer than a tenth of the embed
 * means decoding falls behind, so one more file is decoded ahead (up to `max`); files that were
 * ready with no wait three times in a row let the depth drop by one (down to `min`), so that a
 * fast decoder does not hold frames in memory for nothing.
 */
export class DecodeAhead {
  private value: number;
  private readyStreak = 0;

  constructor(private readonly config: DecodeAheadConfig = DEFAULT_DECODE_AHEAD) {
    this.value = clamp(config.initial, config.min, config.max);
  }

  get depth(): number {
    return this.value;
  }

  /** One file through the embed side: `waitMs` waiting for its decode, `embedMs` embedding it (0 for store hits). */
  observe(waitMs: number, embedMs: number): void {
    if (embedMs <= 0) return; // store hits and failures say nothing about the backbone's rate
    if (waitMs > embedMs / 10) {
      this.readyStreak = 0;
      this.value = Math.min(this.config.max, this.value + 1);
    } else if (waitMs < 1 && ++this.readyStreak >= 3) {
      this.readyStreak = 0;
      this.value = Math.max(this.config.min, this.value - 1);
    }
  }
}

/** Whether recent feature-store lookups missed: the next file then starts its probe with its hash. */
export class LookupTrend {
  private misses = 0;
  private total = 0;

  observe(hit: boolean): void {
    // an exponential memory of the last few lookups
    this.misses = this.misses * 0.75 + (hit ? 0 : 1);
    this.total = this.total * 0.75 + 1;
  }

  /** True once most of the recent lookups missed (false before any lookup: a warm store costs nothing extra). */
  get mostlyMisses(): boolean {
    return this.total > 0 && this.misses / this.total > 0.5;
  }
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, Math.round(x)));
