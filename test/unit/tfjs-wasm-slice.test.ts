/** The wasm Slice / SplitV / Unpack replacements copy exactly the elements the originals do, for every dtype, without leaking. */
import { describe, expect, it } from 'vitest';
import { initTfjs, tf } from '../../src/ml/tfjs-runtime.js';
import { installWasmSliceFix } from '../../src/ml/tfjs-wasm-slice.js';

/** x[begin : begin + size] of a row-major array of `shape`, by plain index arithmetic. */
function expectedSlice(values: number[], shape: number[], begin: number[], size: number[]): number[] {
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  const out: number[] = [];
  const walk = (d: number, offset: number): void => {
    if (d === shape.length) {
      out.push(values[offset] as number);
      return;
    }
    for (let i = 0; i < (size[d] as number); i++) walk(d + 1, offset + ((begin[d] as number) + i) * (strides[d] as number));
  };
  walk(0, 0);
  return out;
}

describe('wasm slice kernels', () => {
  it('slice, split and unstack give the same elements as index arithmetic, for float32, int32 and bool, without leaking', async () => {
    await initTfjs('wasm');
    expect(installWasmSliceFix()).toBe(true);
    const backend = tf.engine().backend as unknown as { numDataIds(): number };
    const shape = [3, 4, 5, 6, 2];
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Array.from({ length: n }, (_, i) => i);
    const sources = [tf.tensor(values, shape, 'float32'), tf.tensor(values, shape, 'int32'), tf.tensor(values.map((v) => v % 3 === 0 ? 1 : 0), shape, 'bool')];
    const before = backend.numDataIds();
    for (const x of sources) {
      const flat = Array.from(x.dataSync());
      const cases: Array<[number[], number[]]> = [
        [[1, 0, 0, 0, 0], [2, 4, 5, 6, 2]], // contiguous
        [[0, 1, 2, 3, 1], [3, 2, 3, 2, 1]], // strided in every axis
        [[2, 3, 4, 5, 1], [1, 1, 1, 1, 1]], // one element
      ];
      for (const [begin, size] of cases) {
        const got = tf.slice(x, begin, size);
        expect(Array.from(got.dataSync())).toEqual(expectedSlice(flat, shape, begin, size));
        got.dispose();
      }
      for (const rank of [2, 3, 4]) {
        const r = x.reshape([...shape.slice(0, rank - 1), -1]);
        const rShape = r.shape;
        const rFlat = Array.from(r.dataSync());
        const width = rShape[1] as number;
        const parts = tf.split(r, [1, width - 1], 1);
        parts.forEach((p, i) => {
          const size = rShape.map((s, d) => (d === 1 ? (i === 0 ? 1 : width - 1) : s));
          const begin = rShape.map((_, d) => (d === 1 ? i : 0));
          expect(Array.from(p.dataSync())).toEqual(expectedSlice(rFlat, rShape, begin, size));
        });
        tf.dispose(parts);
        const rows = tf.unstack(r, rank - 1);
        rows.forEach((row, i) => {
          const size = [...rShape];
          size[rank - 1] = 1;
          const begin = rShape.map((_, d) => (d === rank - 1 ? i : 0));
          expect(row.shape).toEqual(rShape.slice(0, rank - 1));
          expect(Array.from(row.dataSync())).toEqual(expectedSlice(rFlat, rShape, begin, size));
        });
        tf.dispose(rows);
        r.dispose();
      }
    }
    expect(backend.numDataIds()).toBe(before);
    tf.dispose(sources);
  });
});
