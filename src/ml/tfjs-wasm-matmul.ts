/**
 * A speed fix for training on the TensorFlow.js `wasm` backend.
 *
 * Its BatchMatMul kernel is several times slower with `transposeA` or `transposeB` (measured on
 * these machines: [1792×4096]·[4096×64] 960 ms vs 130 ms when the operand is transposed first;
 * [64×256]·[256×512] 19.5 ms vs 0.9 ms; [64×512]·[512×128] with transposeB 5.7 ms), and every
 * gradient of a dense or recurrent layer is such a product (dW = Xᵀ·dY, dX = dY·Wᵀ). This wraps
 * the kernel: a transposed operand is first transposed by the backend's own Transpose kernel,
 * then multiplied plainly. Same values (the same products and sums), only a different memory
 * order. Installed once, only for `wasm`; other backends are untouched.
 */
import { tf } from './tfjs-runtime.js';

type KernelConfig = NonNullable<ReturnType<typeof tf.getKernel>>;
type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];
type Info = { dataId: object; shape: number[]; dtype: string };

let installed = false;

export function installWasmMatMulFix(): boolean {
  if (installed || tf.getBackend() !== 'wasm') return installed;
  const matMul = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!matMul || !transpose) return false;
  const original = matMul.kernelFunc;
  const transposeFn = transpose.kernelFunc;
  const kernelFunc = (args: KernelArgs): ReturnType<KernelConfig['kernelFunc']> => {
    const attrs = args.attrs as { transposeA?: boolean; transposeB?: boolean } | undefined;
    if (!attrs?.transposeA && !attrs?.transposeB) return original(args);
    const inputs = args.inputs as unknown as { a: Info; b: Info };
    const made: Info[] = [];
    const swapLast = (x: Info): Info => {
      const rank = x.shape.length;
      const perm = [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
      const t = transposeFn({ inputs: { x } as unknown as KernelArgs['inputs'], backend: args.backend, attrs: { perm } }) as unknown as Info;
      made.push(t);
      return t;
    };
    try {
      const a = attrs.transposeA ? swapLast(inputs.a) : inputs.a;
      const b = attrs.transposeB ? swapLast(inputs.b) : inputs.b;
      return original({ ...args, inputs: { ...args.inputs, a, b } as unknown as KernelArgs['inputs'], attrs: { ...attrs, transposeA: false, transposeB: false } as unknown as KernelArgs['attrs'] });
    } finally {
      for (const t of made) (args.backend as { disposeData: (id: object) => void }).disposeData(t.dataId);
    }
  };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...matMul, kernelFunc: kernelFunc as KernelConfig['kernelFunc'] });
  installed = true;
  return true;
}
