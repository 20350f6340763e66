/**
 * A speed fix for training on the TensorFlow.js `wasm` backend.
 *
 * Its BatchMatMul kernel is several times slower with `transposeA` or `transposeB` (measured on
 * these machines: [1792×4096]·[4096×64] 960 ms vs 130 ms when the operand is transposed first;
 * [64×256]·[256×512] 19.5 ms vs 0.9 ms; [64×512]·[512×128] with transposeB 5.7 ms), and every
 * gradient of a dense or recurrent layer is such a product (dW = Xᵀ·dY, dX = dY·Wᵀ). This wraps
 * the kernel: a transposed operand is first transposed by the backend's own Transpose kernel,
 * then multiplied plainly. Transposing costs its size, so where the other operand and the product
 * are smaller the identity Aᵀ·B = (Bᵀ·A)ᵀ (A·Bᵀ = (B·Aᵀ)ᵀ, Aᵀ·Bᵀ = (B·A)ᵀ) transposes those
 * instead: e.g. the projection's dW = Xᵀ·dY with X [256 × 1792], dY [256 × 64] takes 1.8 ms
 * instead of 4.0 ms. Same products and sums (their order inside the product may differ, so
 * results may differ in the last bits). Installed once, only for `wasm`; other backends are untouched.
 */
import { tf } from './tfjs-runtime.js';

type KernelConfig = NonNullable<ReturnType<typeof tf.getKernel>>;
type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];
type Info = { dataId: object; shape: number[]; dtype: string };
type KernelResult = ReturnType<KernelConfig['kernelFunc']>;

const size = (x: Info): number => x.shape.reduce((a, b) => a * b, 1);

let installed = false;

export function installWasmMatMulFix(): boolean {
  if (installed || tf.getBackend() !== 'wasm') return installed;
  const matMul = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!matMul || !transpose) return false;
  const original = matMul.kernelFunc;
  const transposeFn = transpose.kernelFunc;
  const kernelFunc = (args: KernelArgs): KernelResult => {
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
    const plain = (a: Info, b: Info): Info =>
      original({ ...args, inputs: { ...args.inputs, a, b } as unknown as KernelArgs['inputs'], attrs: { ...attrs, transposeA: false, transposeB: false } as unknown as KernelArgs['attrs'] }) as unknown as Info;
    try {
      const { a, b } = inputs;
      const ta = attrs.transposeA === true;
      const tb = attrs.transposeB === true;
      // the product's size, batch dims as broadcast by the kernel
      const rows = a.shape[a.shape.length - (ta ? 1 : 2)] as number;
      const cols = b.shape[b.shape.length - (tb ? 2 : 1)] as number;
      const matrices = (x: Info): number => size(x) / ((x.shape[x.shape.length - 1] as number) * (x.shape[x.shape.length - 2] as number));
      const batch = Math.max(matrices(a), matrices(b));
      const out = batch * rows * cols;
      const direct = (ta ? size(a) : 0) + (tb ? size(b) : 0);
      const swapped = (ta ? 0 : size(a)) + (tb ? 0 : size(b)) + out;
      if (swapped >= direct) return plain(ta ? swapLast(a) : a, tb ? swapLast(b) : b) as unknown as KernelResult;
      // (op(B)ᵀ · op(A)ᵀ)ᵀ: transpose the operands that were not transposed, then the product
      const product = plain(tb ? b : swapLast(b), ta ? a : swapLast(a));
      made.push(product);
      const result = swapLast(product);
      made.pop(); // the result is returned, not freed
      return result as unknown as KernelResult;
    } finally {
      for (const t of made) (args.backend as { disposeData: (id: object) => void }).disposeData(t.dataId);
    }
  };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...matMul, kernelFunc: kernelFunc as KernelConfig['kernelFunc'] });
  installed = true;
  return true;
}
