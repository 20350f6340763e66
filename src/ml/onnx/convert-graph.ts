/**
 * Any TensorFlow.js graph model (tfjs-converter GraphDef JSON) → ONNX, for one fixed input shape.
 *
 * The MobileNetV2 converter in convert.ts knows one network and maps it to NCHW once. The
 * keypoint models (MoveNet MultiPose, the palm detector, the hand landmarks) carry their own
 * decoding after the CNN: shape arithmetic, Reshape/Pack/Unpack, StridedSlice, TopK, GatherNd,
 * ArgMax... This converter handles those graphs generally:
 *
 *  - **Static folding by tracing** (graph-trace.ts). The graph is first run once by TF.js on a
 *    dummy input of the fixed shape (`traceGraphModel`), fetching every tensor the converted
 *    part reads. A node whose value depends only on constants and on input *shapes* (Const,
 *    Shape, Size, and all arithmetic over them: Range, Fill, Pack of dims, …) is "static": its
 *    traced value becomes an ONNX initializer, so no shape arithmetic is converted at all.
 *    Every other tensor gets its static shape and dtype from the trace (Reshape targets,
 *    StridedSlice output shapes).
 *  - **Any start node.** Conversion may start after a preprocessing loop (`GraphInputSpec.node`)
 *    and redo that preprocessing inside the ONNX graph (`prelude`: scale, offset, resize).
 *  - **NHWC throughout.** Tensors keep TF's layout, so every non-conv op maps 1:1 with TF
 *    semantics (axes, broadcasting). Conv / depthwise conv / max pool / bilinear resize are
 *    wrapped in Transpose(NHWC→NCHW) … Transpose(NCHW→NHWC); onnxruntime's transpose optimiser
 *    cancels the back-to-back pairs between consecutive convs at session creation.
 *  - **Dtypes as TF.js has them**: float32, int32, bool. ONNX ops returning int64 (TopK indices,
 *    ArgMax) are cast back to int32; shape-like operands (Reshape, Slice, Tile, …) are int64
 *    initializers built from the static values.
 *  - **Control flow is not converted** (While loops, TensorList*, NonMaxSuppression): convert up
 *    to tensors before them (`outputs`) and finish in TypeScript.
 */
import { FramewiseError } from '../../errors/index.js';
import { convToOnnx, depthwiseToOnnx, tfSamePadding, type TfNode } from './convert.js';
import { dataInputs, graphAncestors, nodeOf, staticNodes, tensorRef, type TracedDtype, type TracedTensor } from './graph-trace.js';
import {
  attr,
  DataType,
  encodeModel,
  nodeProto,
  ONNX_IR_VERSION,
  ONNX_OPSET,
  tensorProto,
  valueInfo,
  type AttributeProto,
  type DataTypeCode,
  type NodeProto,
  type TensorProto,
} from './onnx-proto.js';

export { traceGraphModel, type TracedDtype, type TracedTensor } from './graph-trace.js';

/** Bump when the produced graphs change: part of the cache file names of converted keypoint models. */
export const GRAPH_CONVERTER_VERSION = 1;


/**
 * Where the converted graph starts: a placeholder, or any node (what is above it, for example a
 * preprocessing loop, is not converted). `shape` is the node's fixed shape.
 */
export interface GraphInputSpec {
  node: string;
  /** Name of the ONNX input. */
  name: string;
  /** dtype of the ONNX input (cast inside to what the node holds). */
  dtype: 'uint8' | 'float32';
  shape: number[];
  /**
   * Optional preprocessing done inside the ONNX graph: the input is uint8 `fromShape` [N, H, W, C],
   * becomes float `x * scale + offset`, and is resized bilinearly (TF's legacy asymmetric
   * sampling, `half_pixel_centers=false`) to `shape` when the sizes differ.
   */
  prelude?: { fromShape: number[]; scale: number; offset: number };
}

export interface GraphConvertSpec {
  nodes: TfNode[];
  /** Every tensor reference the converted part reads (`name` or `name:k`), from {@link traceGraphModel}. */
  trace: Map<string, TracedTensor>;
  /** The graph input node (a Placeholder) and the ONNX input's dtype: values are cast to the placeholder's dtype inside. */
  input: GraphInputSpec;
  /** Tensor references to expose, with their ONNX output names. */
  outputs: Array<{ ref: string; name: string }>;
  /** Provenance, stored in the model's doc string. */
  source?: string;
}

export interface GraphConversion {
  model: Uint8Array;
  inputShape: number[];
  /** ONNX op types in the graph with their counts. */
  opCounts: Record<string, number>;
  /** TF ops converted (static ones excluded) with their counts. */
  tfOpCounts: Record<string, number>;
  outputs: Array<{ name: string; shape: number[]; dtype: TracedDtype }>;
}

/** TF ops this converter turns into ONNX (besides static nodes, which are folded whatever their op). */
export const SUPPORTED_TF_OPS = [
  'Placeholder', 'Const', 'Identity', 'StopGradient', 'Cast',
  'Add', 'AddV2', 'Sub', 'Mul', 'RealDiv', 'Div', 'FloorDiv', 'Minimum', 'Maximum', 'SquaredDifference', 'AddN',
  'Less', 'LessEqual', 'Greater', 'GreaterEqual', 'Equal', 'NotEqual', 'LogicalAnd', 'LogicalOr', 'LogicalNot',
  'Abs', 'Neg', 'Exp', 'Log', 'Sqrt', 'Rsqrt', 'Square', 'Reciprocal', 'Sigmoid', 'Tanh', 'Relu', 'Relu6', 'Floor',
  'Conv2D', '_FusedConv2D', 'DepthwiseConv2dNative', 'FusedDepthwiseConv2dNative', 'Conv2DBackpropInput', 'MatMul', '_FusedMatMul',
  'MaxPool', 'AvgPool', 'ResizeBilinear', 'Mean', 'Sum', 'Max', 'Min', 'ArgMax', 'TopKV2',
  'Reshape', 'Squeeze', 'ExpandDims', 'Pack', 'Unpack', 'ConcatV2', 'Split', 'SplitV', 'StridedSlice', 'Slice',
  'Tile', 'Transpose', 'Pad', 'PadV2', 'GatherV2', 'GatherNd', 'Select', 'SelectV2', 'Fill',
] as const;


const ONNX_TYPE: Record<TracedDtype, DataTypeCode> = { float32: DataType.FLOAT, int32: DataType.INT32, bool: DataType.BOOL };
const TF_DTYPE: Record<string, TracedDtype> = { DT_FLOAT: 'float32', DT_INT32: 'int32', DT_INT64: 'int32', DT_BOOL: 'bool', DT_UINT8: 'int32' };

function unsupported(op: string, node: string): FramewiseError {
  return new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', `cannot convert op '${op}' (node '${node}') to ONNX; supported: ${SUPPORTED_TF_OPS.join(', ')} (and any op over constants and shapes)`, {
    details: { op, node },
  });
}

function unsupportedUse(node: string, why: string): FramewiseError {
  return new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', `cannot convert node '${node}' to ONNX: ${why}`, { details: { node } });
}

// ---------------------------------------------------------------------------------------------
// graph walking

// ---------------------------------------------------------------------------------------------
// conversion

interface OValue {
  name: string;
  shape: number[];
  dtype: TracedDtype;
}

const attrOf = (n: TfNode) => n.attr ?? {};
const attrB = (n: TfNode, k: string): boolean => attrOf(n)[k]?.b === true;
const attrI = (n: TfNode, k: string, d = 0): number => Number(attrOf(n)[k]?.i ?? d);
const attrF = (n: TfNode, k: string, d = 0): number => Number(attrOf(n)[k]?.f ?? d);
const attrS = (n: TfNode, k: string): string | undefined => {
  const s = attrOf(n)[k]?.s;
  return s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');
};
const attrInts = (n: TfNode, k: string): number[] | undefined => attrOf(n)[k]?.list?.i?.map(Number);
const attrStrings = (n: TfNode, k: string): string[] => (attrOf(n)[k]?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));
const attrType = (n: TfNode, k: string): string | undefined => (attrOf(n)[k] as { type?: string } | undefined)?.type;

const BINARY: Record<string, string> = {
  Add: 'Add', AddV2: 'Add', Sub: 'Sub', Mul: 'Mul', RealDiv: 'Div', Div: 'Div', Minimum: 'Min', Maximum: 'Max',
  Less: 'Less', LessEqual: 'LessOrEqual', Greater: 'Greater', GreaterEqual: 'GreaterOrEqual', Equal: 'Equal',
  LogicalAnd: 'And', LogicalOr: 'Or',
};
const UNARY: Record<string, string> = {
  Abs: 'Abs', Neg: 'Neg', Exp: 'Exp', Log: 'Log', Sqrt: 'Sqrt', Reciprocal: 'Reciprocal', Sigmoid: 'Sigmoid', Tanh: 'Tanh', Relu: 'Relu', Floor: 'Floor', LogicalNot: 'Not',
};
const COMPARISONS = new Set(['Less', 'LessEqual', 'Greater', 'GreaterEqual', 'Equal', 'NotEqual']);

class Builder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly inits = new Map<string, string>();

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  init(base: string, dims: number[], data: Float32Array | Int32Array | Uint8Array | BigInt64Array, type?: DataTypeCode): string {
    const name = this.unique(base);
    this.initializers.push(tensorProto(name, dims, data, type));
    return name;
  }

  int64s(base: string, values: number[], scalar = false): string {
    return this.init(base, scalar ? [] : [values.length], BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v)))));
  }

  float(value: number): string {
    const key = `f${value}`;
    let name = this.inits.get(key);
    if (!name) {
      name = this.init(`const/${value}`, [], new Float32Array([value]));
      this.inits.set(key, name);
    }
    return name;
  }

  /** An initializer for a static traced tensor (once per reference). */
  staticValue(ref: string, t: TracedTensor): string {
    let name = this.inits.get(ref);
    if (!name) {
      if (!t.data) throw unsupportedUse(ref, 'a static tensor without traced values');
      name = this.init(ref, t.shape, t.data, ONNX_TYPE[t.dtype]);
      this.inits.set(ref, name);
    }
    return name;
  }

  op(opType: string, base: string, inputs: string[], attrs: AttributeProto[] = [], outputs = 1): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => this.unique(outputs === 1 ? base : `${base}:${i}`));
    this.nodes.push(nodeProto(opType, this.unique(`${base}/node`), inputs, outs, attrs));
    return outs;
  }

  one(opType: string, base: string, inputs: string[], attrs: AttributeProto[] = []): string {
    return this.op(opType, base, inputs, attrs)[0] ?? '';
  }

  cast(x: string, to: TracedDtype, base: string): string {
    return this.one('Cast', `${base}/cast`, [x], [attr.int('to', ONNX_TYPE[to])]);
  }

  toNchw(x: string, base: string): string {
    return this.one('Transpose', `${base}/nchw`, [x], [attr.ints('perm', [0, 3, 1, 2])]);
  }

  toNhwc(x: string, base: string): string {
    return this.one('Transpose', `${base}/nhwc`, [x], [attr.ints('perm', [0, 2, 3, 1])]);
  }
}

const numbers = (t: TracedTensor | undefined, ref: string): number[] => {
  if (!t?.data) throw unsupportedUse(ref, 'needs a static (constant or shape-derived) operand');
  return Array.from(t.data);
};

const norm = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

/** TF's StridedSlice → per-input-axis [start, end, step] (canonical) for an ONNX Slice; output shape comes from the trace. */
export function stridedSliceSpec(
  inShape: number[],
  begin: number[],
  end: number[],
  strides: number[],
  masks: { begin: number; end: number; ellipsis: number; newAxis: number; shrink: number },
): Array<{ start: number; end: number; step: number }> {
  const rank = inShape.length;
  const dense = inShape.map((d) => ({ start: 0, end: d, step: 1 }));
  const n = begin.length;
  let full = 0;
  const bit = (m: number, i: number): boolean => ((m >> i) & 1) === 1;
  let sawEllipsis = false;
  for (let i = 0; i < n; i++) {
    if (bit(masks.ellipsis, i)) {
      sawEllipsis = true;
      let newAfter = 0;
      for (let j = i + 1; j < n; j++) if (bit(masks.newAxis, j)) newAfter++;
      const next = Math.min(rank - (n - i) + 1 + newAfter, rank);
      full = Math.max(full, next);
      continue;
    }
    if (bit(masks.newAxis, i)) continue;
    if (full >= rank) throw new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', `strided slice with more indices than the ${rank} input axes`);
    const dim = inShape[full] ?? 1;
    const step = strides[i] ?? 1;
    if (step === 0) throw new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', 'strided slice with stride 0');
    const fix = (v: number): number => (v < 0 ? v + dim : v);
    if (bit(masks.shrink, i)) {
      const s = fix(begin[i] ?? 0);
      dense[full] = { start: s, end: s + 1, step: 1 };
    } else {
      const start = bit(masks.begin, i) ? (step > 0 ? 0 : dim - 1) : Math.min(Math.max(fix(begin[i] ?? 0), step > 0 ? 0 : -1), step > 0 ? dim : dim - 1);
      const stop = bit(masks.end, i) ? (step > 0 ? dim : -dim - 1) : Math.min(Math.max(fix(end[i] ?? 0), step > 0 ? 0 : -1), step > 0 ? dim : dim - 1);
      // ONNX Slice reads a negative end as counted from the back; -1 from clamping means "before 0"
      dense[full] = { start, end: stop === -1 && step < 0 ? -dim - 1 : stop, step };
    }
    full++;
  }
  void sawEllipsis;
  return dense;
}

/** Convert the part of a TF graph model that `spec.outputs` depend on (see the module comment). */
export function convertGraphToOnnx(spec: GraphConvertSpec): GraphConversion {
  const outRefs = spec.outputs.map((o) => tensorRef(o.ref));
  const order = graphAncestors(spec.nodes, outRefs, spec.input.node);
  const stat = staticNodes(order, spec.input.node);
  const b = new Builder();
  const values = new Map<string, OValue>();
  const tfOpCounts: Record<string, number> = {};
  let inputShape: number[] | undefined;

  const traced = (ref: string): TracedTensor => {
    const t = spec.trace.get(ref);
    if (!t) throw unsupportedUse(ref, 'not in the trace (trace the graph with the same outputs)');
    return t;
  };
  /** An operand: a converted value, or a static tensor as an initializer. */
  const val = (ref: string): OValue => {
    const v = values.get(ref);
    if (v) return v;
    if (stat.has(nodeOf(ref))) {
      const t = traced(ref);
      return { name: b.staticValue(ref, t), shape: t.shape, dtype: t.dtype };
    }
    throw unsupportedUse(ref, 'read before it was converted');
  };
  const constInts = (ref: string): number[] => numbers(spec.trace.get(ref), ref);
  const set = (n: TfNode, name: string, idx = 0): void => {
    const ref = idx === 0 ? n.name : `${n.name}:${idx}`;
    const t = traced(ref);
    values.set(ref, { name, shape: t.shape, dtype: t.dtype });
  };
  const outDtype = (n: TfNode, idx = 0): TracedDtype => traced(idx === 0 ? n.name : `${n.name}:${idx}`).dtype;
  const outShape = (n: TfNode, idx = 0): number[] => traced(idx === 0 ? n.name : `${n.name}:${idx}`).shape;
  const hasRef = (n: TfNode, idx: number): boolean => spec.trace.has(idx === 0 ? n.name : `${n.name}:${idx}`);

  for (const n of order) {
    if (stat.has(n.name)) continue;
    if (n.name === spec.input.node) {
      inputShape = [...spec.input.shape];
      values.set(n.name, graphInput(b, n, spec.input));
      continue;
    }
    tfOpCounts[n.op] = (tfOpCounts[n.op] ?? 0) + 1;
    const ins = dataInputs(n);
    const x = (i: number): OValue => val(ins[i] ?? '');
    switch (n.op) {
      case 'Placeholder':
        throw unsupportedUse(n.name, `a second graph input (the input is '${spec.input.node}')`);
      case 'Identity':
      case 'StopGradient':
        values.set(n.name, x(0));
        break;
      case 'Cast': {
        const to = TF_DTYPE[attrType(n, 'DstT') ?? ''] ?? outDtype(n);
        set(n, to === x(0).dtype ? x(0).name : b.cast(x(0).name, to, n.name));
        break;
      }
      case 'NotEqual':
        set(n, b.one('Not', n.name, [b.one('Equal', `${n.name}/eq`, [x(0).name, x(1).name])]));
        break;
      case 'FloorDiv': {
        // computed in float (exact for the small integers of index arithmetic), then cast to
        // what TF.js gives: its FloorDiv returns int32 even for float operands
        const f = (v: OValue, tag: string): string => (v.dtype === 'float32' ? v.name : b.cast(v.name, 'float32', `${n.name}/${tag}`));
        const q = b.one('Floor', `${n.name}/floor`, [b.one('Div', `${n.name}/div`, [f(x(0), 'a'), f(x(1), 'b')])]);
        set(n, outDtype(n) === 'float32' ? q : b.cast(q, outDtype(n), n.name));
        break;
      }
      case 'SquaredDifference': {
        const d = b.one('Sub', `${n.name}/sub`, [x(0).name, x(1).name]);
        set(n, b.one('Mul', n.name, [d, d]));
        break;
      }
      case 'Square':
        set(n, b.one('Mul', n.name, [x(0).name, x(0).name]));
        break;
      case 'Rsqrt':
        set(n, b.one('Reciprocal', n.name, [b.one('Sqrt', `${n.name}/sqrt`, [x(0).name])]));
        break;
      case 'Relu6':
        set(n, b.one('Clip', n.name, [x(0).name, b.float(0), b.float(6)]));
        break;
      case 'AddN':
        set(n, b.one('Sum', n.name, ins.map((_, i) => x(i).name)));
        break;
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative':
        set(n, conv(b, n, x(0), ins.slice(1).map((r) => traced(r)), ins.slice(1)));
        break;
      case 'Conv2DBackpropInput': {
        // inputs: output sizes (static), filter [kh, kw, cout, cin], x
        const v = x(2);
        const filter = traced(ins[1] ?? '');
        if (!filter.data || filter.shape.length !== 4) throw unsupportedUse(n.name, 'the filter is not a constant 4-d tensor');
        if ((attrS(n, 'data_format') ?? 'NHWC') !== 'NHWC') throw unsupportedUse(n.name, 'data_format other than NHWC');
        const [kh, kw, cout, cin] = filter.shape as [number, number, number, number];
        const w = new Float32Array(filter.data.length);
        for (let y = 0; y < kh; y++)
          for (let xx = 0; xx < kw; xx++)
            for (let o = 0; o < cout; o++) for (let i = 0; i < cin; i++) w[((i * cout + o) * kh + y) * kw + xx] = Number(filter.data[((y * kw + xx) * cout + o) * cin + i] ?? 0);
        const strides = attrInts(n, 'strides') ?? [1, 1, 1, 1];
        const out = outShape(n);
        const padsFor = (inSize: number, k: number, st: number, outSize: number): [number, number, number] => {
          if (attrS(n, 'padding') === 'VALID') return [0, 0, outSize - ((inSize - 1) * st + k)];
          const total = Math.max((inSize - 1) * st + k - outSize, 0);
          const before = Math.floor(total / 2);
          return [before, total - before, outSize - ((inSize - 1) * st + k - total)];
        };
        const [t, bo, oph] = padsFor(v.shape[1] ?? 1, kh, strides[1] ?? 1, out[1] ?? 1);
        const [l, r, opw] = padsFor(v.shape[2] ?? 1, kw, strides[2] ?? 1, out[2] ?? 1);
        const y = b.one('ConvTranspose', n.name, [b.toNchw(v.name, n.name), b.init(`${n.name}/weight`, [cin, cout, kh, kw], w)], [
          attr.ints('kernel_shape', [kh, kw]),
          attr.ints('strides', [strides[1] ?? 1, strides[2] ?? 1]),
          attr.ints('pads', [t, l, bo, r]),
          attr.ints('output_padding', [oph, opw]),
        ]);
        set(n, b.toNhwc(y, n.name));
        break;
      }
      case 'MatMul':
      case '_FusedMatMul': {
        const a = x(0);
        const w = x(1);
        const ta = attrB(n, 'transpose_a') ? 1 : 0;
        const tb = attrB(n, 'transpose_b') ? 1 : 0;
        const fused = attrStrings(n, 'fused_ops');
        if (fused.some((f) => f !== 'BiasAdd' && f !== 'Relu' && f !== 'Relu6') || (n.op === 'MatMul' && ins.length > 2)) throw unsupported(`${n.op}+${fused.join('+')}`, n.name);
        let y = fused.includes('BiasAdd')
          ? b.one('Gemm', n.name, [a.name, w.name, x(2).name], [attr.int('transA', ta), attr.int('transB', tb)])
          : b.one('Gemm', n.name, [a.name, w.name], [attr.int('transA', ta), attr.int('transB', tb)]);
        if (fused.includes('Relu')) y = b.one('Relu', `${n.name}/relu`, [y]);
        if (fused.includes('Relu6')) y = b.one('Clip', `${n.name}/relu6`, [y, b.float(0), b.float(6)]);
        set(n, y);
        break;
      }
      case 'MaxPool':
      case 'AvgPool': {
        const v = x(0);
        const [, h, w] = v.shape as [number, number, number, number];
        const k = attrInts(n, 'ksize') ?? [1, 1, 1, 1];
        const s = attrInts(n, 'strides') ?? [1, 1, 1, 1];
        const same = attrS(n, 'padding') === 'SAME';
        const [t, bo] = same ? tfSamePadding(h, k[1] ?? 1, s[1] ?? 1) : [0, 0];
        const [l, r] = same ? tfSamePadding(w, k[2] ?? 1, s[2] ?? 1) : [0, 0];
        const attrs = [attr.ints('kernel_shape', [k[1] ?? 1, k[2] ?? 1]), attr.ints('strides', [s[1] ?? 1, s[2] ?? 1]), attr.ints('pads', [t, l, bo, r])];
        if (n.op === 'AvgPool') attrs.push(attr.int('count_include_pad', 0));
        set(n, b.toNhwc(b.one(n.op === 'MaxPool' ? 'MaxPool' : 'AveragePool', n.name, [b.toNchw(v.name, n.name)], attrs), n.name));
        break;
      }
      case 'ResizeBilinear': {
        const v = x(0);
        const [oh, ow] = constInts(ins[1] ?? '');
        const mode = attrB(n, 'align_corners') ? 'align_corners' : attrB(n, 'half_pixel_centers') ? 'half_pixel' : 'asymmetric';
        const sizes = b.int64s(`${n.name}/sizes`, [v.shape[0] ?? 1, v.shape[3] ?? 1, oh ?? 1, ow ?? 1]);
        const y = b.one('Resize', n.name, [b.toNchw(v.name, n.name), '', '', sizes], [attr.string('mode', 'linear'), attr.string('coordinate_transformation_mode', mode)]);
        set(n, b.toNhwc(y, n.name));
        break;
      }
      case 'Mean':
      case 'Sum':
      case 'Max':
      case 'Min': {
        const v = x(0);
        const axes = constInts(ins[1] ?? '').map((a) => norm(a, v.shape.length));
        const keep = attrB(n, 'keep_dims') ? 1 : 0;
        if (n.op === 'Sum') set(n, b.one('ReduceSum', n.name, [v.name, b.int64s(`${n.name}/axes`, axes)], [attr.int('keepdims', keep)]));
        else set(n, b.one(n.op === 'Mean' ? 'ReduceMean' : n.op === 'Max' ? 'ReduceMax' : 'ReduceMin', n.name, [v.name], [attr.ints('axes', axes), attr.int('keepdims', keep)]));
        break;
      }
      case 'ArgMax': {
        const v = x(0);
        const [axis] = constInts(ins[1] ?? '');
        const y = b.one('ArgMax', n.name, [v.name], [attr.int('axis', norm(axis ?? 0, v.shape.length)), attr.int('keepdims', 0), attr.int('select_last_index', 0)]);
        set(n, b.cast(y, outDtype(n), n.name));
        break;
      }
      case 'TopKV2': {
        const v = x(0);
        const [k] = constInts(ins[1] ?? '');
        const [vals, idx] = b.op('TopK', n.name, [v.name, b.int64s(`${n.name}/k`, [k ?? 1])], [attr.int('axis', -1), attr.int('largest', 1), attr.int('sorted', 1)], 2);
        set(n, vals ?? '');
        if (hasRef(n, 1)) set(n, b.cast(idx ?? '', outDtype(n, 1), `${n.name}:1`), 1);
        break;
      }
      case 'Reshape':
        set(n, b.one('Reshape', n.name, [x(0).name, b.int64s(`${n.name}/shape`, outShape(n))]));
        break;
      case 'Squeeze':
      case 'ExpandDims':
        // both are a reshape to the traced output shape (no data movement)
        set(n, b.one('Reshape', n.name, [x(0).name, b.int64s(`${n.name}/shape`, outShape(n))]));
        break;
      case 'Pack': {
        const axis = norm(attrI(n, 'axis'), (x(0).shape.length ?? 0) + 1);
        const parts = ins.map((_, i) => b.one('Unsqueeze', `${n.name}/u${i}`, [x(i).name, b.int64s(`${n.name}/axes${i}`, [axis])]));
        set(n, b.one('Concat', n.name, parts, [attr.int('axis', axis)]));
        break;
      }
      case 'Unpack': {
        const v = x(0);
        const axis = norm(attrI(n, 'axis'), v.shape.length);
        const num = attrI(n, 'num', v.shape[axis] ?? 1);
        const parts = b.op('Split', n.name, [v.name], [attr.int('axis', axis)], num);
        parts.forEach((p, i) => {
          if (hasRef(n, i)) set(n, b.one('Squeeze', `${n.name}/sq${i}`, [p, b.int64s(`${n.name}/axes${i}`, [axis])]), i);
        });
        break;
      }
      case 'ConcatV2': {
        const parts = ins.slice(0, -1);
        const rank = outShape(n).length;
        const [axis] = constInts(ins[ins.length - 1] ?? '');
        set(n, b.one('Concat', n.name, parts.map((r) => val(r).name), [attr.int('axis', norm(axis ?? 0, rank))]));
        break;
      }
      case 'Split':
      case 'SplitV': {
        const v = n.op === 'Split' ? x(1) : x(0);
        const [axisRaw] = constInts((n.op === 'Split' ? ins[0] : ins[2]) ?? '');
        const axis = norm(axisRaw ?? 0, v.shape.length);
        const num = attrI(n, 'num_split', 1);
        const sizes = Array.from({ length: num }, (_, i) => outShape(n, i)[axis] ?? 0);
        const parts = b.op('Split', n.name, [v.name, b.int64s(`${n.name}/split`, sizes)], [attr.int('axis', axis)], num);
        parts.forEach((p, i) => {
          if (hasRef(n, i)) set(n, p, i);
        });
        break;
      }
      case 'StridedSlice': {
        const v = x(0);
        const dense = stridedSliceSpec(v.shape, constInts(ins[1] ?? ''), constInts(ins[2] ?? ''), constInts(ins[3] ?? ''), {
          begin: attrI(n, 'begin_mask'),
          end: attrI(n, 'end_mask'),
          ellipsis: attrI(n, 'ellipsis_mask'),
          newAxis: attrI(n, 'new_axis_mask'),
          shrink: attrI(n, 'shrink_axis_mask'),
        });
        const sliced = b.one('Slice', n.name, [
          v.name,
          b.int64s(`${n.name}/starts`, dense.map((d) => d.start)),
          b.int64s(`${n.name}/ends`, dense.map((d) => d.end)),
          b.int64s(`${n.name}/axes`, dense.map((_, i) => i)),
          b.int64s(`${n.name}/steps`, dense.map((d) => d.step)),
        ]);
        set(n, b.one('Reshape', `${n.name}/reshape`, [sliced, b.int64s(`${n.name}/shape`, outShape(n))]));
        break;
      }
      case 'Slice': {
        const v = x(0);
        const begin = constInts(ins[1] ?? '');
        const size = constInts(ins[2] ?? '');
        const ends = begin.map((s, i) => ((size[i] ?? -1) < 0 ? (v.shape[i] ?? 0) : s + (size[i] ?? 0)));
        set(n, b.one('Slice', n.name, [v.name, b.int64s(`${n.name}/starts`, begin), b.int64s(`${n.name}/ends`, ends)]));
        break;
      }
      case 'Tile':
        set(n, b.one('Tile', n.name, [x(0).name, b.int64s(`${n.name}/repeats`, constInts(ins[1] ?? ''))]));
        break;
      case 'Fill':
        set(n, b.one('Expand', n.name, [x(1).name, b.int64s(`${n.name}/shape`, constInts(ins[0] ?? ''))]));
        break;
      case 'Transpose':
        set(n, b.one('Transpose', n.name, [x(0).name], [attr.ints('perm', constInts(ins[1] ?? ''))]));
        break;
      case 'Pad':
      case 'PadV2': {
        const p = constInts(ins[1] ?? '');
        const rank = x(0).shape.length;
        const pads = [...Array.from({ length: rank }, (_, i) => p[2 * i] ?? 0), ...Array.from({ length: rank }, (_, i) => p[2 * i + 1] ?? 0)];
        const inputs = [x(0).name, b.int64s(`${n.name}/pads`, pads)];
        if (n.op === 'PadV2') inputs.push(x(2).name);
        set(n, b.one('Pad', n.name, inputs));
        break;
      }
      case 'GatherV2': {
        if (attrI(n, 'batch_dims') !== 0) throw unsupportedUse(n.name, 'GatherV2 with batch_dims');
        const [axis] = constInts(ins[2] ?? '');
        set(n, b.one('Gather', n.name, [x(0).name, x(1).name], [attr.int('axis', norm(axis ?? 0, x(0).shape.length))]));
        break;
      }
      case 'GatherNd': {
        const idx = x(1);
        set(n, b.one('GatherND', n.name, [x(0).name, b.one('Cast', `${n.name}/idx64`, [idx.name], [attr.int('to', DataType.INT64)])]));
        break;
      }
      case 'Select':
      case 'SelectV2': {
        let c = x(0);
        const t = x(1);
        if (n.op === 'Select' && c.shape.length === 1 && t.shape.length > 1) {
          const shape = [c.shape[0] ?? 1, ...t.shape.slice(1).map(() => 1)];
          c = { ...c, name: b.one('Reshape', `${n.name}/cond`, [c.name, b.int64s(`${n.name}/cshape`, shape)]), shape };
        }
        set(n, b.one('Where', n.name, [c.name, t.name, x(2).name]));
        break;
      }
      default: {
        const bin = BINARY[n.op];
        const un = UNARY[n.op];
        if (bin) set(n, b.one(bin, n.name, [x(0).name, x(1).name]));
        else if (un) set(n, b.one(un, n.name, [x(0).name]));
        else throw unsupported(n.op, n.name);
        if (COMPARISONS.has(n.op) && outDtype(n) !== 'bool') throw unsupportedUse(n.name, 'a comparison without a bool result');
      }
    }
  }

  if (!inputShape) throw unsupportedUse(spec.input.node, 'the outputs do not depend on the input');
  const outputs = spec.outputs.map((o) => {
    const v = val(tensorRef(o.ref));
    // Identity gives each output its own name even when two outputs share a tensor
    b.nodes.push(nodeProto('Identity', b.unique(`${o.name}/out`), [v.name], [o.name]));
    return { name: o.name, shape: v.shape, dtype: v.dtype };
  });
  const model = encodeModel({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'framewise',
    producerVersion: String(GRAPH_CONVERTER_VERSION),
    docString: `framewise ONNX graph (graph converter v${GRAPH_CONVERTER_VERSION})${spec.source ? ` from ${spec.source}` : ''}`,
    graph: {
      name: 'framewise_graph',
      node: b.nodes,
      initializer: b.initializers,
      input: [valueInfo(spec.input.name, spec.input.dtype === 'uint8' ? DataType.UINT8 : DataType.FLOAT, spec.input.prelude?.fromShape ?? inputShape)],
      output: outputs.map((o) => valueInfo(o.name, ONNX_TYPE[o.dtype], o.shape)),
    },
    metadataProps: [{ key: 'framewise.graph_converter_version', value: String(GRAPH_CONVERTER_VERSION) }],
  });
  const opCounts: Record<string, number> = {};
  for (const nd of b.nodes) opCounts[nd.opType] = (opCounts[nd.opType] ?? 0) + 1;
  return { model, inputShape, opCounts, tfOpCounts, outputs };
}

function graphInput(b: Builder, n: TfNode, input: GraphInputSpec): OValue {
  if (input.shape.some((d) => !(d > 0))) throw unsupportedUse(n.name, `the input shape must be fixed, got [${input.shape.join(', ')}]`);
  const nodeDtype: TracedDtype = n.op === 'Placeholder' ? TF_DTYPE[attrType(n, 'dtype') ?? 'DT_FLOAT'] ?? 'float32' : 'float32';
  if (!input.prelude) {
    const name = input.dtype === nodeDtype ? input.name : b.cast(input.name, nodeDtype, n.name);
    return { name, shape: input.shape, dtype: nodeDtype };
  }
  const { fromShape, scale, offset } = input.prelude;
  let x = b.one('Add', `${n.name}/prelude/offset`, [b.one('Mul', `${n.name}/prelude/scale`, [b.cast(input.name, 'float32', `${n.name}/prelude`), b.float(scale)]), b.float(offset)]);
  if (fromShape[1] !== input.shape[1] || fromShape[2] !== input.shape[2]) {
    const sizes = b.int64s(`${n.name}/prelude/sizes`, [input.shape[0] ?? 1, input.shape[3] ?? 1, input.shape[1] ?? 1, input.shape[2] ?? 1]);
    x = b.toNhwc(b.one('Resize', `${n.name}/prelude/resize`, [b.toNchw(x, `${n.name}/prelude`), '', '', sizes], [attr.string('mode', 'linear'), attr.string('coordinate_transformation_mode', 'asymmetric')]), `${n.name}/prelude`);
  }
  if (nodeDtype !== 'float32') x = b.cast(x, nodeDtype, n.name);
  return { name: x, shape: input.shape, dtype: nodeDtype };
}

/** Conv2D / depthwise (plain or fused with BiasAdd, FusedBatchNorm, Relu, Relu6), NHWC in and out. */
function conv(b: Builder, n: TfNode, x: OValue, args: TracedTensor[], refs: string[]): string {
  if ((attrS(n, 'data_format') ?? 'NHWC') !== 'NHWC') throw unsupportedUse(n.name, 'data_format other than NHWC');
  const kernel = args[0];
  if (!kernel?.data || kernel.shape.length !== 4) throw unsupportedUse(n.name, `the kernel '${refs[0]}' is not a constant 4-d tensor`);
  const [kh, kw, cin, kout] = kernel.shape as [number, number, number, number];
  const depthwise = n.op.includes('Depthwise');
  const cout = depthwise ? cin * kout : kout;
  const w = depthwise ? depthwiseToOnnx(Float32Array.from(kernel.data), kh, kw, cin, kout) : convToOnnx(Float32Array.from(kernel.data), kh, kw, cin, kout);
  const bias = new Float32Array(cout);
  let activation: 'linear' | 'relu' | 'relu6' = 'linear';
  const extra = args.slice(1);
  for (const f of attrStrings(n, 'fused_ops')) {
    if (f === 'BiasAdd') bias.set(Float32Array.from(extra[0]?.data ?? new Float32Array(cout)));
    else if (f === 'FusedBatchNorm') {
      const [scale, offset, mean, variance] = extra.map((e) => Float32Array.from(e.data ?? []));
      const eps = attrF(n, 'epsilon', 0.001);
      for (let o = 0; o < cout; o++) {
        const s = (scale?.[o] ?? 1) / Math.sqrt((variance?.[o] ?? 1) + eps);
        for (let i = 0; i < w.length / cout; i++) w[o * (w.length / cout) + i] = (w[o * (w.length / cout) + i] ?? 0) * s;
        bias[o] = ((bias[o] ?? 0) - (mean?.[o] ?? 0)) * s + (offset?.[o] ?? 0);
      }
    } else if (f === 'Relu') activation = 'relu';
    else if (f === 'Relu6') activation = 'relu6';
    else throw unsupported(`${n.op}+${f}`, n.name);
  }
  const strides = attrInts(n, 'strides') ?? [1, 1, 1, 1];
  const dil = attrInts(n, 'dilations') ?? [1, 1, 1, 1];
  const padding = attrS(n, 'padding') ?? 'VALID';
  const [, h, wd] = x.shape as [number, number, number, number];
  let pads: number[];
  if (padding === 'SAME') {
    const [t, bo] = tfSamePadding(h, kh, strides[1] ?? 1, dil[1] ?? 1);
    const [l, r] = tfSamePadding(wd, kw, strides[2] ?? 1, dil[2] ?? 1);
    pads = [t, l, bo, r];
  } else if (padding === 'VALID') pads = [0, 0, 0, 0];
  else if (padding === 'EXPLICIT') {
    const e = attrInts(n, 'explicit_paddings') ?? [];
    pads = [e[2] ?? 0, e[4] ?? 0, e[3] ?? 0, e[5] ?? 0];
  } else throw unsupportedUse(n.name, `padding ${padding}`);
  const wName = b.init(`${n.name}/weight`, depthwise ? [cout, 1, kh, kw] : [cout, cin, kh, kw], w);
  const bName = b.init(`${n.name}/bias`, [cout], bias);
  let y = b.one('Conv', n.name, [b.toNchw(x.name, n.name), wName, bName], [
    attr.ints('kernel_shape', [kh, kw]),
    attr.ints('strides', [strides[1] ?? 1, strides[2] ?? 1]),
    attr.ints('dilations', [dil[1] ?? 1, dil[2] ?? 1]),
    attr.ints('pads', pads),
    attr.int('group', depthwise ? cin : 1),
  ]);
  if (activation === 'relu') y = b.one('Relu', `${n.name}/relu`, [y]);
  if (activation === 'relu6') y = b.one('Clip', `${n.name}/relu6`, [y, b.float(0), b.float(6)]);
  return b.toNhwc(y, n.name);
}
