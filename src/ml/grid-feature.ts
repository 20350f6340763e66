/**
 * The `grid` frame feature, shared by every engine so features match across them.
 *
 * From the last feature map (NHWC, `mapSize`×`mapSize`×C per frame):
 *  1. average it over a 2×2 grid of cells. For an odd side the two halves overlap on the middle
 *     row/column (7×7: rows/cols 0..3 and 3..6, 16 positions per cell), so no cell is smaller
 *     than the other and the centre, where actions usually are, counts in all four;
 *  2. average groups of 4 adjacent channels, so the result (4 cells × C/4) has C values, the same
 *     size as the `pooled` feature (the temporal head's input size does not change).
 *
 * Layout of one frame's vector: cell-major, cells in row-major order (top-left, top-right,
 * bottom-left, bottom-right), then channel group g = channels 4g..4g+3.
 */

export const GRID_CELLS = 4;
export const GRID_CHANNEL_GROUP = 4;

/** Inclusive [first, last] rows (or columns) of the two halves of a side of `size` cells. */
export function gridHalves(size: number): [[number, number], [number, number]] {
  return [
    [0, Math.ceil(size / 2) - 1],
    [Math.floor(size / 2), size - 1],
  ];
}

/**
 * `map`: n × mapSize × mapSize × channels floats (NHWC). Returns n × channels floats.
 * Sums are accumulated in float64 so the result does not depend on the engine's float32 order.
 */
export function gridFeature(map: Float32Array, n: number, mapSize = 7, channels = map.length / Math.max(1, n * mapSize * mapSize)): Float32Array {
  if (!Number.isInteger(channels) || channels <= 0 || channels % GRID_CHANNEL_GROUP !== 0) {
    throw new RangeError(`gridFeature: channels must be a positive multiple of ${GRID_CHANNEL_GROUP}, got ${channels}`);
  }
  const frameSize = mapSize * mapSize * channels;
  if (map.length !== n * frameSize) {
    throw new RangeError(`gridFeature: map has ${map.length} values, expected ${n}×${mapSize}×${mapSize}×${channels}`);
  }
  const groups = channels / GRID_CHANNEL_GROUP;
  const halves = gridHalves(mapSize);
  const out = new Float32Array(n * GRID_CELLS * groups);
  const cellSum = new Float64Array(channels);
  for (let f = 0; f < n; f++) {
    const frame = f * frameSize;
    let cell = 0;
    for (const [r0, r1] of halves) {
      for (const [c0, c1] of halves) {
        cellSum.fill(0);
        for (let r = r0; r <= r1; r++) {
          for (let c = c0; c <= c1; c++) {
            const at = frame + (r * mapSize + c) * channels;
            for (let k = 0; k < channels; k++) cellSum[k] = (cellSum[k] ?? 0) + (map[at + k] ?? 0);
          }
        }
        const count = (r1 - r0 + 1) * (c1 - c0 + 1) * GRID_CHANNEL_GROUP;
        const base = (f * GRID_CELLS + cell) * groups;
        for (let g = 0; g < groups; g++) {
          let s = 0;
          for (let j = 0; j < GRID_CHANNEL_GROUP; j++) s += cellSum[g * GRID_CHANNEL_GROUP + j] ?? 0;
          out[base + g] = s / count;
        }
        cell++;
      }
    }
  }
  return out;
}
