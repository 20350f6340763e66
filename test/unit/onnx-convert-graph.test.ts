/**
 * The general TF graph → ONNX converter, op by op: each case is a tiny graph model built in
 * memory, run by TF.js (cpu backend) and by onnxruntime after conversion; outputs must agree.
 */
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertGraphToOnnx, stridedSliceSpec, traceGraphModel } from '../../src/ml/onnx/convert-graph.js';
import type { TfNode } from '../../src/ml/onnx/convert.js';

type Dtype = 'float32' | 'int32';
const DT: Record<Dtype, string> = { float32: 'DT_FLOAT', int32: 'DT_INT32' };
const dims = (shape: number[]) => ({ dim: shape.map((s) => ({ size: String(s) })) });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Graph-building shorthands in tfjs-converter's JSON format. */
const A = {
  i: (v: number) => ({ i: String(v) }),
  b: (v: boolean) => ({ b: v }),
  f: (v: number) => ({ f: v }),
  s: (v: string) => ({ s: b64(v) }),
  ints: (v: number[]) => ({ list: { i: v.map(String) } }),
  strs: (v: string[]) => ({ list: { s: v.map(b64) } }),
  type: (t: Dtype) => ({ type: DT[t] }),
};

interface Const {
  dtype: Dtype;
  shape: number[];
  values: number[];
}

function placeholder(name: string, shape: number[], dtype: Dtype = 'float32'): TfNode {
  return { name, op: 'Placeholder', attr: { dtype: A.type(dtype), shape: { shape: dims(shape) } } as TfNode['attr'] };
}

function op(name: string, type: string, input: string[], attr: Record<string, unknown> = {}): TfNode {
  return { name, op: type, input, attr: { T: A.type('float32'), ...attr } as TfNode['attr'] };
}

function artifacts(nodes: TfNode[], consts: Record<string, Const>): tf.io.ModelArtifacts {
  const all: TfNode[] = [...nodes];
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const [name, c] of Object.entries(consts)) {
    all.unshift({ name, op: 'Const', attr: { value: { tensor: { dtype: DT[c.dtype], tensorShape: dims(c.shape) } }, dtype: A.type(c.dtype) } as TfNode['attr'] });
    specs.push({ name, shape: c.shape, dtype: c.dtype });
    buffers.push((c.dtype === 'float32' ? Float32Array.from(c.values) : Int32Array.from(c.values)).buffer);
  }
  const total = buffers.reduce((n, b) => n + b.byteLength, 0);
  const data = new Uint8Array(total);
  let at = 0;
  for (const b of buffers) {
    data.set(new Uint8Array(b), at);
    at += b.byteLength;
  }
  return { modelTopology: { node: all, versions: { producer: 1 } }, weightSpecs: specs, weightData: data.buffer, format: 'graph-model' };
}

/** Deterministic pseudo-random values in [-2, 2). */
function values(n: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  });
}

interface Case {
  nodes: TfNode[];
  consts?: Record<string, Const>;
  input: number[];
  outputs: string[];
  tolerance?: number;
}

/** Convert the case, run both, return the largest absolute difference per output (and the ONNX op counts). */
async function compare(c: Case): Promise<{ diffs: number[]; ops: Record<string, number>; shapes: number[][] }> {
  const art = artifacts(c.nodes, c.consts ?? {});
  const model = await tf.loadGraphModel(tf.io.fromMemory(art));
  const all = (art.modelTopology as { node: TfNode[] }).node;
  const x = tf.tensor(values(c.input.reduce((a, b) => a * b, 1)), c.input);
  try {
    const trace = await traceGraphModel(tf, model, all, { node: 'x', tensor: x }, c.outputs);
    const conv = convertGraphToOnnx({ nodes: all, trace, input: { node: 'x', name: 'input', dtype: 'float32', shape: c.input }, outputs: c.outputs.map((ref, i) => ({ ref, name: `y${i}` })) });
    const session = await ort.InferenceSession.create(conv.model);
    const got = await session.run({ input: new ort.Tensor('float32', (await x.data()) as Float32Array, c.input) });
    const want = model.execute(x, c.outputs);
    const wants = Array.isArray(want) ? want : [want];
    const diffs: number[] = [];
    const shapes: number[][] = [];
    for (let i = 0; i < c.outputs.length; i++) {
      const w = wants[i]!;
      const g = got[`y${i}`]!;
      expect(g.dims.map(Number)).toEqual(w.shape);
      shapes.push(w.shape);
      const wd = await w.data();
      const gd = g.data as ArrayLike<number | bigint | boolean>;
      let d = 0;
      for (let k = 0; k < wd.length; k++) d = Math.max(d, Math.abs(Number(gd[k]) - Number(wd[k])));
      diffs.push(d);
    }
    tf.dispose(wants);
    await session.release();
    return { diffs, ops: conv.opCounts, shapes };
  } finally {
    x.dispose();
    model.dispose();
  }
}

const i32 = (shape: number[], v: number[]): Const => ({ dtype: 'int32', shape, values: v });
const f32 = (shape: number[], v: number[]): Const => ({ dtype: 'float32', shape, values: v });

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

describe('graph converter: ops against TF.js', () => {
  it.each([
    ['half-pixel', { half_pixel_centers: A.b(true), align_corners: A.b(false) }],
    ['legacy asymmetric', { half_pixel_centers: A.b(false), align_corners: A.b(false) }],
    ['align corners', { half_pixel_centers: A.b(false), align_corners: A.b(true) }],
  ])('ResizeBilinear (%s), up and down', async (_, attrs) => {
    const r = await compare({
      nodes: [placeholder('x', [1, 5, 7, 3]), op('y', 'ResizeBilinear', ['x', 'size'], attrs)],
      consts: { size: i32([2], [9, 4]) },
      input: [1, 5, 7, 3],
      outputs: ['y'],
    });
    expect(r.shapes[0]).toEqual([1, 9, 4, 3]);
    expect(r.diffs[0]).toBeLessThan(1e-5);
  });

  it('unary ops: Sigmoid, Exp, Abs, Sqrt, Reciprocal, Relu6, Neg, Rsqrt, Square', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [2, 3, 4]),
        op('sig', 'Sigmoid', ['x']),
        op('exp', 'Exp', ['x']),
        op('abs', 'Abs', ['x']),
        op('sqrt', 'Sqrt', ['abs']),
        op('rec', 'Reciprocal', ['exp']),
        op('relu6', 'Relu6', ['x']),
        op('neg', 'Neg', ['x']),
        op('rsqrt', 'Rsqrt', ['exp']),
        op('sq', 'Square', ['x']),
      ],
      input: [2, 3, 4],
      outputs: ['sig', 'exp', 'sqrt', 'rec', 'relu6', 'neg', 'rsqrt', 'sq'],
    });
    for (const d of r.diffs) expect(d).toBeLessThan(1e-5);
  });

  it('binary ops with broadcasting: SquaredDifference, FloorDiv (float and int), Minimum, Maximum, RealDiv, AddN', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [2, 3, 4]),
        op('sqd', 'SquaredDifference', ['x', 'c']),
        op('fdiv', 'FloorDiv', ['x', 'c']),
        op('scaled', 'Mul', ['x', 'ten']),
        op('xi', 'Cast', ['scaled'], { SrcT: A.type('float32'), DstT: A.type('int32') }),
        op('idiv', 'FloorDiv', ['xi', 'three'], { T: A.type('int32') }),
        op('min', 'Minimum', ['x', 'c']),
        op('max', 'Maximum', ['x', 'c']),
        op('div', 'RealDiv', ['x', 'c']),
        op('addn', 'AddN', ['x', 'min', 'max'], { N: A.i(3) }),
      ],
      consts: { c: f32([4], [0.5, -1.5, 1.25, 3]), ten: f32([], [10]), three: i32([], [3]) },
      input: [2, 3, 4],
      outputs: ['sqd', 'fdiv', 'idiv', 'min', 'max', 'div', 'addn'],
    });
    for (const d of r.diffs) expect(d).toBeLessThan(1e-5);
  });

  it('comparisons and Select (bool tensors): Greater, Less, Equal, LogicalAnd, Select, SelectV2', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [3, 4]),
        op('gt', 'Greater', ['x', 'zero']),
        op('lt', 'Less', ['x', 'one']),
        op('and', 'LogicalAnd', ['gt', 'lt'], {}),
        op('eq', 'Equal', ['x', 'x']),
        op('sel', 'Select', ['and', 'x', 'zeros']),
        op('sel2', 'SelectV2', ['eq', 'x', 'zero']),
        op('andf', 'Cast', ['and'], { SrcT: { type: 'DT_BOOL' }, DstT: A.type('float32') }),
      ],
      consts: { zero: f32([], [0]), one: f32([], [1]), zeros: f32([3, 4], new Array(12).fill(0)) },
      input: [3, 4],
      outputs: ['sel', 'sel2', 'andf'],
    });
    for (const d of r.diffs) expect(d).toBe(0);
  });

  it('ArgMax, TopKV2 (values and indices) and GatherNd, GatherV2 over them', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [4, 6]),
        op('am', 'ArgMax', ['x', 'axis1'], { output_type: A.type('int32') }),
        op('topk', 'TopKV2', ['x', 'k'], { sorted: A.b(true) }),
        op('gnd', 'GatherNd', ['x', 'idx'], { Tindices: A.type('int32') }),
        op('g', 'GatherV2', ['x', 'am', 'axis1'], { batch_dims: A.i(0) }),
      ],
      consts: { axis1: i32([], [1]), k: i32([], [3]), idx: i32([3, 2], [0, 1, 3, 5, 2, 2]) },
      input: [4, 6],
      outputs: ['am', 'topk', 'topk:1', 'gnd', 'g'],
    });
    expect(r.shapes).toEqual([[4], [4, 3], [4, 3], [3], [4, 4]]);
    for (const d of r.diffs) expect(d).toBeLessThan(1e-6);
  });

  it('Pack, Unpack (a later output), ConcatV2 (negative axis), Split, Reshape, ExpandDims, Squeeze, Tile, Transpose', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [2, 3, 4]),
        op('pack', 'Pack', ['x', 'x'], { axis: A.i(1), N: A.i(2) }),
        op('unpack', 'Unpack', ['x'], { axis: A.i(2), num: A.i(4) }),
        op('concat', 'ConcatV2', ['x', 'x', 'minus1'], { N: A.i(2) }),
        op('split', 'Split', ['axis2', 'x'], { num_split: A.i(2) }),
        op('reshape', 'Reshape', ['x', 'shape'], { Tshape: A.type('int32') }),
        op('expand', 'ExpandDims', ['x', 'axis2']),
        op('squeeze', 'Squeeze', ['expand'], { squeeze_dims: A.ints([2]) }),
        op('tile', 'Tile', ['x', 'reps']),
        op('transpose', 'Transpose', ['x', 'perm']),
      ],
      consts: { minus1: i32([], [-1]), axis2: i32([], [2]), shape: i32([2], [4, -1]), reps: i32([3], [1, 2, 1]), perm: i32([3], [2, 0, 1]) },
      input: [2, 3, 4],
      outputs: ['pack', 'unpack:2', 'concat', 'split:1', 'reshape', 'squeeze', 'tile', 'transpose'],
    });
    expect(r.shapes).toEqual([
      [2, 2, 3, 4],
      [2, 3],
      [2, 3, 8],
      [2, 3, 2],
      [4, 6],
      [2, 3, 4],
      [2, 6, 4],
      [4, 2, 3],
    ]);
    for (const d of r.diffs) expect(d).toBe(0);
  });

  it.each([
    ['masks and shrink', [0, 1, 0], [0, 3, 2], [1, 1, 1], { begin_mask: A.i(1), end_mask: A.i(1), shrink_axis_mask: A.i(2) }],
    ['negative stride', [0, -1, 3], [2, 0, 0], [1, -1, -2], { end_mask: A.i(0) }],
    ['ellipsis and new axis', [0, 1], [0, 3], [1, 1], { ellipsis_mask: A.i(1), new_axis_mask: A.i(0) }],
    ['new axis in front', [0, 0, 1], [0, 0, 3], [1, 1, 1], { new_axis_mask: A.i(1), begin_mask: A.i(2), end_mask: A.i(2) }],
  ])('StridedSlice (%s)', async (_, begin, end, strides, attrs) => {
    const r = await compare({
      nodes: [placeholder('x', [2, 4, 5]), op('ss', 'StridedSlice', ['x', 'b', 'e', 's'], { Index: A.type('int32'), ...attrs })],
      consts: { b: i32([begin.length], begin), e: i32([end.length], end), s: i32([strides.length], strides) },
      input: [2, 4, 5],
      outputs: ['ss'],
    });
    expect(r.diffs[0]).toBe(0);
  });

  it('Slice, Pad, Sum, Max, Mean (keep_dims either way)', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [2, 4, 5]),
        op('slice', 'Slice', ['x', 'begin', 'size'], { Index: A.type('int32') }),
        op('pad', 'Pad', ['x', 'pads'], { Tpaddings: A.type('int32') }),
        op('sum', 'Sum', ['x', 'axes'], { keep_dims: A.b(true), Tidx: A.type('int32') }),
        op('max', 'Max', ['x', 'axis1'], { keep_dims: A.b(false), Tidx: A.type('int32') }),
        op('mean', 'Mean', ['x', 'axes'], { keep_dims: A.b(false), Tidx: A.type('int32') }),
      ],
      consts: { begin: i32([3], [0, 1, 2]), size: i32([3], [-1, 2, 3]), pads: i32([3, 2], [0, 0, 1, 2, 0, 1]), axes: i32([2], [0, 2]), axis1: i32([], [1]) },
      input: [2, 4, 5],
      outputs: ['slice', 'pad', 'sum', 'max', 'mean'],
    });
    for (const d of r.diffs) expect(d).toBeLessThan(1e-5);
  });

  it('convolutions: fused Conv2D (SAME, stride 2, BiasAdd+Relu6), depthwise, MaxPool, Conv2DBackpropInput (transposed)', async () => {
    const k = values(3 * 3 * 3 * 4, 7);
    const dw = values(3 * 3 * 4 * 1, 8);
    const up = values(2 * 2 * 5 * 4, 9); // [kh, kw, cout, cin]
    const r = await compare({
      nodes: [
        placeholder('x', [1, 9, 9, 3]),
        op('conv', '_FusedConv2D', ['x', 'k', 'bias'], { strides: A.ints([1, 2, 2, 1]), padding: A.s('SAME'), fused_ops: A.strs(['BiasAdd', 'Relu6']), num_args: A.i(1), data_format: A.s('NHWC'), dilations: A.ints([1, 1, 1, 1]) }),
        op('dw', 'DepthwiseConv2dNative', ['conv', 'dwk'], { strides: A.ints([1, 1, 1, 1]), padding: A.s('VALID'), data_format: A.s('NHWC'), dilations: A.ints([1, 1, 1, 1]) }),
        op('pool', 'MaxPool', ['conv'], { ksize: A.ints([1, 3, 3, 1]), strides: A.ints([1, 2, 2, 1]), padding: A.s('SAME'), data_format: A.s('NHWC') }),
        op('up', 'Conv2DBackpropInput', ['osize', 'upk', 'conv'], { strides: A.ints([1, 2, 2, 1]), padding: A.s('SAME'), data_format: A.s('NHWC'), dilations: A.ints([1, 1, 1, 1]) }),
      ],
      consts: { k: f32([3, 3, 3, 4], [...k]), bias: f32([4], [0.1, -0.2, 0.3, 0]), dwk: f32([3, 3, 4, 1], [...dw]), upk: f32([2, 2, 5, 4], [...up]), osize: i32([4], [1, 10, 10, 5]) },
      input: [1, 9, 9, 3],
      outputs: ['conv', 'dw', 'pool', 'up'],
    });
    expect(r.shapes).toEqual([
      [1, 5, 5, 4],
      [1, 3, 3, 4],
      [1, 3, 3, 4],
      [1, 10, 10, 5],
    ]);
    for (const d of r.diffs) expect(d).toBeLessThan(1e-5);
    expect(r.ops.ConvTranspose).toBe(1);
  });

  it('_FusedMatMul with BiasAdd and transpose_b', async () => {
    const r = await compare({
      nodes: [placeholder('x', [2, 6]), op('mm', '_FusedMatMul', ['x', 'w', 'b'], { transpose_a: A.b(false), transpose_b: A.b(true), fused_ops: A.strs(['BiasAdd']), num_args: A.i(1) })],
      consts: { w: f32([3, 6], [...values(18, 3)]), b: f32([3], [1, 2, 3]) },
      input: [2, 6],
      outputs: ['mm'],
    });
    expect(r.diffs[0]).toBeLessThan(1e-5);
  });

  it('folds shape arithmetic into constants: Shape → StridedSlice → Pack → Reshape converts to one Reshape', async () => {
    const r = await compare({
      nodes: [
        placeholder('x', [2, 3, 4]),
        op('shape', 'Shape', ['x'], { out_type: A.type('int32') }),
        op('n', 'StridedSlice', ['shape', 'b0', 'b1', 'one'], { Index: A.type('int32'), T: A.type('int32'), shrink_axis_mask: A.i(1) }),
        op('target', 'Pack', ['n', 'minus1'], { axis: A.i(0), N: A.i(2), T: A.type('int32') }),
        op('y', 'Reshape', ['x', 'target']),
      ],
      consts: { b0: i32([1], [0]), b1: i32([1], [1]), one: i32([1], [1]), minus1: i32([], [-1]) },
      input: [2, 3, 4],
      outputs: ['y'],
    });
    expect(r.shapes[0]).toEqual([2, 12]);
    expect(r.diffs[0]).toBe(0);
    expect(r.ops.Shape).toBeUndefined();
    expect(r.ops.Reshape).toBe(1);
  });

  it('names an op it cannot convert (FW_ERR_ONNX_UNSUPPORTED_OP)', async () => {
    await expect(compare({ nodes: [placeholder('x', [2, 3]), op('y', 'Erf', ['x'])], input: [2, 3], outputs: ['y'] })).rejects.toMatchObject({
      code: 'FW_ERR_ONNX_UNSUPPORTED_OP',
      message: expect.stringContaining("'Erf' (node 'y')"),
    });
  });
});

describe('stridedSliceSpec', () => {
  it('expands an ellipsis to the axes it covers and keeps shrink axes one wide', () => {
    const masks = { begin: 0, end: 0, ellipsis: 0b10, newAxis: 0, shrink: 0b100 };
    expect(stridedSliceSpec([2, 4, 5, 6], [1, 0, 3], [2, 0, 4], [1, 1, 1], masks)).toEqual([
      { start: 1, end: 2, step: 1 },
      { start: 0, end: 4, step: 1 },
      { start: 0, end: 5, step: 1 },
      { start: 3, end: 4, step: 1 },
    ]);
  });

  it('runs a negative stride with an end mask down to index 0', () => {
    const masks = { begin: 1, end: 1, ellipsis: 0, newAxis: 0, shrink: 0 };
    expect(stridedSliceSpec([5], [0], [0], [-1], masks)).toEqual([{ start: 4, end: -6, step: -1 }]);
  });
});
