/** The wasm BatchMatMul wrapper (transposed operands transposed first) gives the same products. */
import { describe, expect, it } from 'vitest';
import { initTfjs, tf } from '../../src/ml/tfjs-runtime.js';
import { installWasmMatMulFix } from '../../src/ml/tfjs-wasm-matmul.js';

describe('wasm matMul with transposed operands', () => {
  it('matches the plain product of explicitly transposed operands, for 2-D and batched inputs, without leaking', async () => {
    await initTfjs('wasm');
    expect(installWasmMatMulFix()).toBe(true);
    const a = tf.randomNormal([7, 5], 0, 1, 'float32', 1);
    const b = tf.randomNormal([7, 3], 0, 1, 'float32', 2);
    const c = tf.randomNormal([4, 5], 0, 1, 'float32', 3);
    const batchedA = tf.randomNormal([2, 6, 4], 0, 1, 'float32', 4);
    const batchedB = tf.randomNormal([2, 3, 6], 0, 1, 'float32', 5);
    const before = tf.memory().numTensors;
    const cases = tf.tidy(() => [
      [tf.matMul(a, b, true, false), tf.matMul(tf.transpose(a), b)],
      [tf.matMul(a, c, false, true), tf.matMul(a, tf.transpose(c))],
      [tf.matMul(b, a, true, false), tf.matMul(tf.transpose(b), a)],
      [tf.matMul(batchedA, batchedB, true, true), tf.matMul(tf.transpose(batchedA, [0, 2, 1]), tf.transpose(batchedB, [0, 2, 1]))],
    ] as Array<[tf.Tensor, tf.Tensor]>);
    // 8 results kept by tidy; the transposed copies made inside the kernel are freed
    expect(tf.memory().numTensors).toBe(before + 8);
    for (const [got, want] of cases) {
      expect(got.shape).toEqual(want.shape);
      const g = await got.data();
      const w = await want.data();
      g.forEach((v, i) => expect(v).toBeCloseTo(w[i] as number, 4));
    }
    // where the other operand and the product are smaller, Aᵀ·B is computed as (Bᵀ·A)ᵀ (and A·Bᵀ as (B·Aᵀ)ᵀ)
    const tall = tf.randomNormal([300, 7], 0, 1, 'float32', 6);
    const thin = tf.randomNormal([300, 2], 0, 1, 'float32', 7);
    const wide = tf.randomNormal([300, 4], 0, 1, 'float32', 8);
    const swapped = tf.tidy(() => [
      [tf.matMul(tall, thin, true, false), tf.matMul(tf.transpose(tall), thin)],
      [tf.matMul(tf.transpose(thin), tf.transpose(tall), false, true), tf.matMul(tf.transpose(thin), tall)],
      [tf.matMul(tf.stack([tall, tall]), tf.stack([wide, thin.concat(thin, 1)]), true, false), tf.matMul(tf.stack([tf.transpose(tall), tf.transpose(tall)]), tf.stack([wide, thin.concat(thin, 1)]))],
    ] as Array<[tf.Tensor, tf.Tensor]>);
    for (const [got, want] of swapped) {
      expect(got.shape).toEqual(want.shape);
      const g = await got.data();
      const w = await want.data();
      g.forEach((v, i) => expect(v).toBeCloseTo(w[i] as number, 4));
    }
    tf.dispose([...swapped.flat(), tall, thin, wide]);
    // gradients flow through it (dW = Xᵀ·dY is the transposed case)
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.matMul(x, b, true, false)))(a);
    expect(grad.shape).toEqual([7, 5]);
    tf.dispose([...cases.flat(), batchedA, batchedB, grad, a, b, c]);
  });
});
