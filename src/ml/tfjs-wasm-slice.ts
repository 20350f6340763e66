/**
 * A speed fix for the TensorFlow.js `wasm` backend's Slice, SplitV and Unpack kernels.
 *
 * Its Slice kernel (which SplitV and Unpack call once per output) first reads the whole input out
 * of the wasm heap into a fresh JS copy (`readSync`) and then copies the slice from that copy. So
 * every slice costs the size of its input, and `tf.unstack` of a [T, …] tensor costs T copies of
 * the whole tensor (measured on these machines: unstacking a 1 MB [16, 2, 16, 512] tensor
 * ~9 ms; splitting a [16, 1024] tensor into 4 gates ~0.55 ms). This re-registers the three kernels
 * with a slice that copies straight from a view of the heap: same values (a plain copy either way),
 * cost proportional to the output. Installed once, only for `wasm`; other backends are untouched;
 * string tensors keep the original kernels.
 */
import { tf } from './tfjs-runtime.js';

type KernelConfig = NonNullable<ReturnType<typeof tf.getKernel>>;
type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];
type Info = { dataId: object; shape: number[]; dtype: tf.DataType };
type HeapArray = Float32Array | Int32Array | Uint8Array;
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): Info;
  typedArrayFromHeap(info: Info): HeapArray;
}

let installed = false;

/** x[begin : begin + size], copied from the heap. */
function sliceFromHeap(backend: WasmBackend, x: Info, beginIn: number | number[], sizeIn: number | number[] | undefined): Info {
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.TensorInfo, beginIn, sizeIn) as [number[], number[]];
  // allocate first: a growing heap replaces its buffer, so views are taken afterwards
  const out = backend.makeOutput(size, x.dtype);
  const count = tf.util.sizeFromShape(size);
  if (count === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const strides = tf.util.computeStrides(x.shape);
  if (size.length === 0 || tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const offset = size.length === 0 ? 0 : tf.slice_util.computeFlatOffset(begin, strides);
    dst.set(src.subarray(offset, offset + count));
    return out;
  }
  // copy runs along the last axis, walking the outer indices like an odometer
  const rank = size.length;
  const run = size[rank - 1] as number;
  const outer = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < count / run; r++) {
    let offset = begin[rank - 1] as number;
    for (let d = 0; d < rank - 1; d++) offset += ((begin[d] as number) + (outer[d] as number)) * (strides[d] as number);
    // element by element: a subarray view per run costs more than the copy for short runs
    const at = r * run;
    for (let e = 0; e < run; e++) dst[at + e] = src[offset + e] as number;
    for (let d = rank - 2; d >= 0; d--) {
      outer[d] = (outer[d] as number) + 1;
      if ((outer[d] as number) < (size[d] as number)) break;
      outer[d] = 0;
    }
  }
  return out;
}

function replace(name: string, wrap: (original: KernelConfig['kernelFunc']) => (args: KernelArgs) => unknown): boolean {
  const kernel = tf.getKernel(name, 'wasm');
  if (!kernel) return false;
  const kernelFunc = wrap(kernel.kernelFunc);
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...kernel, kernelFunc: kernelFunc as KernelConfig['kernelFunc'] });
  return true;
}

export function installWasmSliceFix(): boolean {
  if (installed || tf.getBackend() !== 'wasm') return installed;
  if (!tf.getKernel('Slice', 'wasm') || !tf.getKernel('SplitV', 'wasm') || !tf.getKernel('Unpack', 'wasm')) return false;
  replace('Slice', (original) => (args) => {
    const x = (args.inputs as unknown as { x: Info }).x;
    if (x.dtype === 'string' || x.dtype === 'complex64') return original(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    return sliceFromHeap(args.backend as unknown as WasmBackend, x, begin, size);
  });
  replace('SplitV', (original) => (args) => {
    const x = (args.inputs as unknown as { x: Info }).x;
    if (x.dtype === 'string' || x.dtype === 'complex64') return original(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const ax = tf.util.parseAxisParam(axis, x.shape)[0] as number;
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const out = sliceFromHeap(args.backend as unknown as WasmBackend, x, [...begin], size);
      begin[ax] = (begin[ax] as number) + s;
      return out;
    });
  });
  replace('Unpack', (original) => (args) => {
    const x = (args.inputs as unknown as { value: Info }).value;
    if (x.dtype === 'string' || x.dtype === 'complex64') return original(args);
    let { axis } = args.attrs as unknown as { axis: number };
    if (axis < 0) axis += x.shape.length;
    const outShape = x.shape.filter((_, i) => i !== axis);
    const size = [...x.shape];
    size[axis] = 1;
    const begin = new Array<number>(x.shape.length).fill(0);
    return Array.from({ length: x.shape[axis] as number }, (_, i) => {
      begin[axis] = i;
      const out = sliceFromHeap(args.backend as unknown as WasmBackend, x, [...begin], size);
      return { dataId: out.dataId, dtype: out.dtype, shape: outShape };
    });
  });
  installed = true;
  return true;
}
