/**
 * TensorFlow.js MobileNetV2 (the weights nsfwjs ships) → ONNX, written by framewise itself.
 *
 * Two front-ends share one ONNX graph builder:
 *  - graph models (tfjs-converter GraphDef JSON, `mobilenet_v2_mid`): _FusedConv2D,
 *    FusedDepthwiseConv2dNative, AddV2, AvgPool, Squeeze...
 *  - layers models (Keras JSON config, `mobilenet_v2`): Conv2D, DepthwiseConv2D,
 *    BatchNormalization (folded into the conv before it), ReLU, ZeroPadding2D (folded into the
 *    conv's pads), Add, AveragePooling2D/GlobalAveragePooling2D, Flatten.
 *
 * Only the part of the model that feeds the pooled feature is converted (the nsfw classifier
 * head after it is ignored). The produced graph has the contract the onnx backbone relies on:
 *   input  `frames` uint8 [N, H, W, 3]  (raw rgb24 bytes, NHWC, exactly what ffmpeg writes)
 *   output `pooled` float [N, C]        (global average of the last feature map)
 *   output `map`    float [N, h, w, C]  (that last feature map, NHWC)
 * Inside, activations are NCHW (what onnxruntime's CPU convolutions want), so TF's NHWC
 * semantics are mapped once: weights are transposed, axes renumbered, and TF `SAME` padding
 * is turned into explicit (possibly asymmetric) Conv `pads` computed with TF's own rule.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import { FramewiseError } from '../../errors/index.js';
import type { NsfwjsArtifacts } from '../pretrained-weights.js';
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
  type NodeProto,
  type TensorProto,
} from './onnx-proto.js';

/** Bump when the produced graph changes: it is part of the ONNX cache file name. */
export const CONVERTER_VERSION = 1;
export const ONNX_INPUT_NAME = 'frames';
export const ONNX_POOLED_OUTPUT = 'pooled';
export const ONNX_MAP_OUTPUT = 'map';

/** TF graph ops the converter knows (fused conv variants also need known `fused_ops`). */
export const SUPPORTED_GRAPH_OPS = [
  'Placeholder', 'Const', 'Identity', 'Mul', 'Sub', 'Add', 'AddV2', 'RealDiv',
  'Conv2D', '_FusedConv2D', 'DepthwiseConv2dNative', 'FusedDepthwiseConv2dNative',
  'Relu', 'Relu6', 'AvgPool', 'Mean', 'Squeeze',
] as const;
/** Ops that may appear in a fused conv's `fused_ops`. */
export const SUPPORTED_FUSED_OPS = ['BiasAdd', 'FusedBatchNorm', 'Relu', 'Relu6'] as const;
/** Keras layer classes the converter knows. */
export const SUPPORTED_KERAS_LAYERS = [
  'InputLayer', 'ZeroPadding2D', 'Conv2D', 'DepthwiseConv2D', 'BatchNormalization', 'ReLU', 'Activation',
  'Add', 'AveragePooling2D', 'GlobalAveragePooling2D', 'Flatten', 'Dropout',
] as const;

export interface ConvertOptions {
  /** Graph models: node whose output is the pooled feature (default: name ends with `feature_vector/SpatialSqueeze`). */
  outputNode?: string;
  /** Layers models: layer whose output is the pooled feature (default `flatten_1`, else the last GlobalAveragePooling2D). */
  outputLayer?: string;
  /** Free text stored in the model's doc string (provenance). */
  source?: string;
}

export interface OnnxConversion {
  model: Uint8Array;
  inputSize: number;
  /** C: channels of the last feature map = size of `pooled`. */
  channels: number;
  /** Side of the last feature map (7 for 224 input). */
  mapSize: number;
  /** ONNX op types in the graph with their counts. */
  opCounts: Record<string, number>;
}

// ---------------------------------------------------------------------------------------------
// errors

function unsupported(op: string, node: string, supported: readonly string[]): FramewiseError {
  return new FramewiseError(
    'FW_ERR_ONNX_UNSUPPORTED_OP',
    `cannot convert op '${op}' (node '${node}') to ONNX; supported: ${supported.join(', ')}`,
    { details: { op, node } },
  );
}

function unsupportedUse(node: string, why: string): FramewiseError {
  return new FramewiseError('FW_ERR_ONNX_UNSUPPORTED_OP', `cannot convert node '${node}' to ONNX: ${why}`, { details: { node } });
}

function invalid(message: string): FramewiseError {
  return new FramewiseError('FW_ERR_MODEL_INVALID', message);
}

// ---------------------------------------------------------------------------------------------
// weights: dequantised exactly like tfjs-core's io.decodeWeights (v * scale + min, in float32)

interface Weight {
  shape: number[];
  values: Float32Array;
}

function float16Decoder(): (bits: number) => number {
  return (h) => {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
    if (exp === 0x1f) return frac ? NaN : sign * Infinity;
    return sign * 2 ** (exp - 15) * (1 + frac / 1024);
  };
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function concatWeightData(data: tfTypes.io.ModelArtifacts['weightData']): ArrayBuffer {
  if (data === undefined) throw invalid('the model artifacts carry no weight data');
  if (!Array.isArray(data)) return data;
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const b of data) {
    out.set(new Uint8Array(b), at);
    at += b.byteLength;
  }
  return out.buffer;
}

/** All weights by name, as float32 (int32 weights are converted; the backbone has none). */
export function decodeWeights(artifacts: tfTypes.io.ModelArtifacts): Map<string, Weight> {
  const buffer = concatWeightData(artifacts.weightData);
  const out = new Map<string, Weight>();
  let offset = 0;
  for (const spec of artifacts.weightSpecs ?? []) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const q = spec.quantization;
    const width = BYTES[q ? q.dtype : spec.dtype];
    if (width === undefined) throw invalid(`weight '${spec.name}' has unsupported dtype ${q ? q.dtype : spec.dtype}`);
    const bytes = buffer.slice(offset, offset + size * width);
    offset += size * width;
    const values = new Float32Array(size);
    if (q && (q.dtype === 'uint8' || q.dtype === 'uint16')) {
      if (q.min === undefined || q.scale === undefined) throw invalid(`weight '${spec.name}' lacks quantization min/scale`);
      const raw = q.dtype === 'uint8' ? new Uint8Array(bytes) : new Uint16Array(bytes);
      for (let i = 0; i < size; i++) values[i] = (raw[i] ?? 0) * q.scale + q.min;
    } else if (q && q.dtype === 'float16') {
      const raw = new Uint16Array(bytes);
      const decode = float16Decoder();
      for (let i = 0; i < size; i++) values[i] = decode(raw[i] ?? 0);
    } else if (spec.dtype === 'float32') {
      values.set(new Float32Array(bytes));
    } else if (spec.dtype === 'int32') {
      values.set(new Int32Array(bytes));
    } else {
      throw invalid(`weight '${spec.name}' has unsupported dtype ${spec.dtype}`);
    }
    out.set(spec.name, { shape: [...spec.shape], values });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ONNX graph builder shared by both front-ends

/** A tensor of the converted graph. `shape` is TF's logical NHWC shape (batch = -1); rank-4 values are NCHW in ONNX. */
interface Value {
  name: string;
  shape: number[];
}

type Activation = 'linear' | 'relu' | 'relu6';
type Padding = 'SAME' | 'VALID' | { explicit: [number, number, number, number] };

interface ConvSpec {
  node: string;
  input: Value;
  /** TF layout: [kh, kw, cin, cout] or, depthwise, [kh, kw, cin, multiplier]. */
  kernel: Weight;
  depthwise: boolean;
  strides: [number, number];
  dilations: [number, number];
  padding: Padding;
  /** Extra zero padding folded in from a preceding ZeroPadding2D: [top, bottom, left, right]. */
  prePad?: [number, number, number, number];
  bias?: Float32Array;
}

/** A conv whose raw output can still absorb a BatchNormalization (weights are edited in place). */
interface FoldableConv {
  weight: Float32Array;
  bias: Float32Array;
  perOutput: number;
}

/** TF's SAME rule: output = ceil(in / stride); the odd pixel of padding goes after (bottom/right). */
export function tfSamePadding(inSize: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const effective = (kernel - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + effective - inSize, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly scalars = new Map<number, string>();
  readonly foldable = new Map<string, FoldableConv>();

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./-]/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  init(base: string, dims: number[], data: Float32Array | BigInt64Array): string {
    const name = this.unique(base);
    this.initializers.push(tensorProto(name, dims, data));
    return name;
  }

  scalar(value: number): string {
    let name = this.scalars.get(value);
    if (!name) {
      name = this.init(`const/${value}`, [], new Float32Array([value]));
      this.scalars.set(value, name);
    }
    return name;
  }

  int64s(base: string, values: number[]): string {
    return this.init(base, [values.length], BigInt64Array.from(values.map(BigInt)));
  }

  op(opType: string, base: string, inputs: string[], attrs: AttributeProto[] = []): string {
    const out = this.unique(base);
    this.nodes.push(nodeProto(opType, out, inputs, [out], attrs));
    return out;
  }

  /** Give a tensor its final (graph output) name. */
  rename(from: string, to: string): void {
    for (const n of this.nodes) {
      n.input = n.input.map((x) => (x === from ? to : x));
      n.output = n.output.map((x) => (x === from ? to : x));
    }
  }

  /** uint8 NHWC frames → float NCHW in [0, 1]: the input every front-end starts from. */
  preprocess(size: number): Value {
    const f = this.op('Cast', 'preprocess/cast', [ONNX_INPUT_NAME], [attr.int('to', DataType.FLOAT)]);
    // Div (not Mul by 1/255) so values are bit-identical to `frames / 255` in TF.js.
    const scaled = this.op('Div', 'preprocess/div255', [f, this.scalar(255)]);
    const nchw = this.op('Transpose', 'preprocess/nchw', [scaled], [attr.ints('perm', [0, 3, 1, 2])]);
    return { name: nchw, shape: [-1, size, size, 3] };
  }

  conv(spec: ConvSpec, activation: Activation): Value {
    const [inN, h, w, cin] = spec.input.shape;
    if (spec.input.shape.length !== 4 || h === undefined || w === undefined || cin === undefined || inN === undefined) {
      throw unsupportedUse(spec.node, `convolution input must be rank 4, got [${spec.input.shape.join(', ')}]`);
    }
    const [kh, kw, kin, kout] = spec.kernel.shape as [number, number, number, number];
    if (spec.kernel.shape.length !== 4 || kin !== cin) {
      throw unsupportedUse(spec.node, `kernel [${spec.kernel.shape.join(', ')}] does not match input channels ${cin}`);
    }
    const cout = spec.depthwise ? cin * kout : kout;
    const weight = spec.depthwise ? depthwiseToOnnx(spec.kernel.values, kh, kw, cin, kout) : convToOnnx(spec.kernel.values, kh, kw, cin, kout);
    const bias = spec.bias ? Float32Array.from(spec.bias) : new Float32Array(cout);
    if (bias.length !== cout) throw unsupportedUse(spec.node, `bias has ${bias.length} values for ${cout} channels`);

    const pre = spec.prePad ?? [0, 0, 0, 0];
    const ph = h + pre[0] + pre[1];
    const pw = w + pre[2] + pre[3];
    let pads: [number, number, number, number]; // [top, bottom, left, right] on the pre-padded input
    if (spec.padding === 'SAME') {
      pads = [...tfSamePadding(ph, kh, spec.strides[0], spec.dilations[0]), ...tfSamePadding(pw, kw, spec.strides[1], spec.dilations[1])];
    } else if (spec.padding === 'VALID') {
      pads = [0, 0, 0, 0];
    } else {
      pads = spec.padding.explicit;
    }
    const top = pads[0] + pre[0];
    const bottom = pads[1] + pre[1];
    const left = pads[2] + pre[2];
    const right = pads[3] + pre[3];
    const outH = Math.floor((h + top + bottom - ((kh - 1) * spec.dilations[0] + 1)) / spec.strides[0]) + 1;
    const outW = Math.floor((w + left + right - ((kw - 1) * spec.dilations[1] + 1)) / spec.strides[1]) + 1;

    const wName = this.init(`${spec.node}/weight`, spec.depthwise ? [cout, 1, kh, kw] : [cout, cin, kh, kw], weight);
    const bName = this.init(`${spec.node}/bias`, [cout], bias);
    const out = this.op('Conv', spec.node, [spec.input.name, wName, bName], [
      attr.ints('kernel_shape', [kh, kw]),
      attr.ints('strides', spec.strides),
      attr.ints('dilations', spec.dilations),
      // ONNX order: [x1_begin, x2_begin, x1_end, x2_end]
      attr.ints('pads', [top, left, bottom, right]),
      attr.int('group', spec.depthwise ? cin : 1),
    ]);
    if (activation === 'linear') this.foldable.set(out, { weight, bias, perOutput: weight.length / cout });
    return this.activation({ name: out, shape: [inN, outH, outW, cout] }, activation, spec.node);
  }

  activation(x: Value, activation: Activation, node: string): Value {
    if (activation === 'linear') return x;
    if (activation === 'relu') return { name: this.op('Relu', `${node}/relu`, [x.name]), shape: x.shape };
    // Clip with min/max inputs (opset >= 11); onnxruntime fuses Conv+Clip on CPU.
    return { name: this.op('Clip', `${node}/relu6`, [x.name, this.scalar(0), this.scalar(6)]), shape: x.shape };
  }

  /**
   * y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel. Folded into the producing conv
   * when that conv has no activation and no other consumer, else a real BatchNormalization.
   */
  batchNorm(x: Value, p: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; variance: Float32Array; epsilon: number }, node: string, foldable: boolean): Value {
    const c = x.shape[x.shape.length - 1] ?? 0;
    for (const [k, v] of Object.entries({ gamma: p.gamma, beta: p.beta, mean: p.mean, variance: p.variance })) {
      if (v.length !== c) throw unsupportedUse(node, `batch-norm ${k} has ${v.length} values for ${c} channels`);
    }
    const conv = foldable ? this.foldable.get(x.name) : undefined;
    if (conv) {
      for (let o = 0; o < c; o++) {
        const s = (p.gamma[o] ?? 1) / Math.sqrt((p.variance[o] ?? 1) + p.epsilon);
        const base = o * conv.perOutput;
        for (let i = 0; i < conv.perOutput; i++) conv.weight[base + i] = (conv.weight[base + i] ?? 0) * s;
        conv.bias[o] = ((conv.bias[o] ?? 0) - (p.mean[o] ?? 0)) * s + (p.beta[o] ?? 0);
      }
      this.foldable.delete(x.name); // folded once; a second BN must not fold again
      return x;
    }
    if (x.shape.length !== 4) throw unsupportedUse(node, 'batch-norm over a non-image tensor');
    const inputs = [x.name, this.init(`${node}/gamma`, [c], p.gamma), this.init(`${node}/beta`, [c], p.beta), this.init(`${node}/mean`, [c], p.mean), this.init(`${node}/var`, [c], p.variance)];
    return { name: this.op('BatchNormalization', node, inputs, [attr.float('epsilon', p.epsilon)]), shape: x.shape };
  }

  /** Average over the whole spatial map, [N,h,w,C] → [N,1,1,C] (keepdims) or [N,C]. */
  globalAverage(x: Value, node: string, keepDims: boolean): Value {
    const [n, , , c] = x.shape as [number, number, number, number];
    const out = this.op('ReduceMean', node, [x.name], [attr.ints('axes', [2, 3]), attr.int('keepdims', keepDims ? 1 : 0)]);
    return { name: out, shape: keepDims ? [n, 1, 1, c] : [n, c] };
  }

  /** Non-global average pooling (TF excludes padded cells from the average, as count_include_pad=0 does). */
  averagePool(x: Value, node: string, k: [number, number], s: [number, number], padding: 'SAME' | 'VALID'): Value {
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const [t, b] = padding === 'SAME' ? tfSamePadding(h, k[0], s[0]) : [0, 0];
    const [l, r] = padding === 'SAME' ? tfSamePadding(w, k[1], s[1]) : [0, 0];
    const out = this.op('AveragePool', node, [x.name], [
      attr.ints('kernel_shape', k),
      attr.ints('strides', s),
      attr.ints('pads', [t, l, b, r]),
      attr.int('count_include_pad', 0),
    ]);
    const oh = Math.floor((h + t + b - k[0]) / s[0]) + 1;
    const ow = Math.floor((w + l + r - k[1]) / s[1]) + 1;
    return { name: out, shape: [n, oh, ow, c] };
  }

  /** Explicit zero padding (only when a ZeroPadding2D could not be folded into a conv). */
  pad(x: Value, p: [number, number, number, number], node: string): Value {
    const [n, h, w, c] = x.shape as [number, number, number, number];
    const pads = this.int64s(`${node}/pads`, [0, 0, p[0], p[2], 0, 0, p[1], p[3]]);
    return { name: this.op('Pad', node, [x.name, pads]), shape: [n, h + p[0] + p[1], w + p[2] + p[3], c] };
  }

  /** Serialise with the `frames` input and `pooled`/`map` outputs. */
  finish(opts: { inputSize: number; pooled: Value; map: Value; doc: string }): OnnxConversion {
    if (!(opts.inputSize > 0)) throw unsupportedUse(ONNX_INPUT_NAME, 'the feature does not depend on an image input');
    const [, mapH, mapW, channels] = opts.map.shape as [number, number, number, number];
    if (opts.pooled.shape.length !== 2 || opts.pooled.shape[1] !== channels) {
      throw unsupportedUse(ONNX_POOLED_OUTPUT, `the feature output has shape [${opts.pooled.shape.join(', ')}], expected [N, ${channels}]`);
    }
    if (mapH !== mapW) throw unsupportedUse(ONNX_MAP_OUTPUT, `the feature map is not square (${mapH}×${mapW})`);
    this.rename(opts.pooled.name, ONNX_POOLED_OUTPUT);
    this.nodes.push(nodeProto('Transpose', this.unique('map/nhwc'), [opts.map.name], [ONNX_MAP_OUTPUT], [attr.ints('perm', [0, 2, 3, 1])]));

    const size = opts.inputSize;
    const model = encodeModel({
      irVersion: ONNX_IR_VERSION,
      opsetImport: [{ domain: '', version: ONNX_OPSET }],
      producerName: 'framewise',
      producerVersion: String(CONVERTER_VERSION),
      docString: opts.doc,
      graph: {
        name: 'framewise_backbone',
        node: this.nodes,
        initializer: this.initializers,
        input: [valueInfo(ONNX_INPUT_NAME, DataType.UINT8, [null, size, size, 3])],
        output: [valueInfo(ONNX_POOLED_OUTPUT, DataType.FLOAT, [null, channels]), valueInfo(ONNX_MAP_OUTPUT, DataType.FLOAT, [null, mapH, mapW, channels])],
      },
      metadataProps: [
        { key: 'framewise.converter_version', value: String(CONVERTER_VERSION) },
        { key: 'framewise.channels', value: String(channels) },
        { key: 'framewise.map_size', value: String(mapH) },
      ],
    });
    const opCounts: Record<string, number> = {};
    for (const n of this.nodes) opCounts[n.opType] = (opCounts[n.opType] ?? 0) + 1;
    return { model, inputSize: size, channels, mapSize: mapH, opCounts };
  }
}

/** TF [kh, kw, cin, cout] → ONNX [cout, cin, kh, kw]. */
export function convToOnnx(w: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let o = 0; o < cout; o++) out[((o * cin + i) * kh + y) * kw + x] = w[((y * kw + x) * cin + i) * cout + o] ?? 0;
  return out;
}

/** TF depthwise [kh, kw, cin, mult] → ONNX grouped [cin*mult, 1, kh, kw]; TF's output channel i*mult+m is ONNX group i, filter m. */
export function depthwiseToOnnx(w: Float32Array, kh: number, kw: number, cin: number, mult: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++)
        for (let m = 0; m < mult; m++) out[((i * mult + m) * kh + y) * kw + x] = w[((y * kw + x) * cin + i) * mult + m] ?? 0;
  return out;
}

/** NHWC axis of a rank-4 tensor → its NCHW axis. */
const NHWC_TO_NCHW_AXIS = [0, 2, 3, 1];

// ---------------------------------------------------------------------------------------------
// graph-model front-end (tfjs-converter GraphDef JSON)

interface TfAttr {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  list?: { s?: string[]; i?: Array<string | number>; f?: number[] };
  shape?: { dim?: Array<{ size?: string | number }>; unknownRank?: boolean };
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttr>;
}

const attrString = (n: TfNode, key: string): string | undefined => {
  const s = n.attr?.[key]?.s;
  return s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');
};
const attrInts = (n: TfNode, key: string): number[] | undefined => n.attr?.[key]?.list?.i?.map(Number);
const attrStrings = (n: TfNode, key: string): string[] => (n.attr?.[key]?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));

/** "name:0" → "name"; control inputs ("^name") are dropped: they order execution, not data. */
function dataInputs(n: TfNode): string[] {
  return (n.input ?? []).filter((i) => !i.startsWith('^')).map((i) => i.replace(/:0$/, ''));
}

function graphNodes(artifacts: tfTypes.io.ModelArtifacts): TfNode[] {
  const topo = artifacts.modelTopology as { node?: TfNode[] } | undefined;
  if (!topo || !Array.isArray(topo.node)) throw invalid('graph model topology has no node list');
  return topo.node;
}

function findGraphOutput(nodes: TfNode[], wanted?: string): TfNode {
  const hit = wanted ? nodes.find((n) => n.name === wanted) : nodes.find((n) => n.name.endsWith('feature_vector/SpatialSqueeze'));
  if (!hit) throw unsupportedUse(wanted ?? '*feature_vector/SpatialSqueeze', 'no such feature output node in the graph');
  return hit;
}

/** The nodes the output depends on, inputs before consumers. */
function ancestorsInOrder(byName: Map<string, TfNode>, output: TfNode): TfNode[] {
  const order: TfNode[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: Array<{ node: TfNode; expanded: boolean }> = [{ node: output, expanded: false }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.expanded) {
      state.set(top.node.name, 'done');
      order.push(top.node);
      continue;
    }
    if (state.has(top.node.name)) continue;
    state.set(top.node.name, 'visiting');
    stack.push({ node: top.node, expanded: true });
    for (const i of dataInputs(top.node)) {
      const dep = byName.get(i);
      if (!dep) throw invalid(`node '${top.node.name}' reads '${i}', which is not in the graph`);
      if (state.get(dep.name) === 'visiting') throw invalid(`the graph has a cycle through '${dep.name}'`);
      if (!state.has(dep.name)) stack.push({ node: dep, expanded: false });
    }
  }
  return order;
}

/** Name shown in errors for a fused conv with a fused op we do not know, e.g. `_FusedConv2D+Elu`. */
function unknownFusedOp(n: TfNode): string | undefined {
  if (n.op !== '_FusedConv2D' && n.op !== 'FusedDepthwiseConv2dNative') return undefined;
  const bad = attrStrings(n, 'fused_ops').find((f) => !(SUPPORTED_FUSED_OPS as readonly string[]).includes(f));
  return bad === undefined ? undefined : `${n.op}+${bad}`;
}

/**
 * Walk what the converter would convert and throw `FW_ERR_ONNX_UNSUPPORTED_OP` naming the first
 * op (and node) it does not know. For graph models only the nodes the feature output depends on
 * are checked (the classifier head after it is never converted); likewise for layers models.
 */
export function assertConvertible(source: Pick<NsfwjsArtifacts, 'kind' | 'artifacts'>, opts: ConvertOptions = {}): void {
  if (source.kind === 'graph') {
    const nodes = graphNodes(source.artifacts);
    const byName = new Map(nodes.map((n) => [n.name, n]));
    for (const n of ancestorsInOrder(byName, findGraphOutput(nodes, opts.outputNode))) {
      if (!(SUPPORTED_GRAPH_OPS as readonly string[]).includes(n.op)) throw unsupported(n.op, n.name, SUPPORTED_GRAPH_OPS);
      const fused = unknownFusedOp(n);
      if (fused) throw unsupported(fused, n.name, SUPPORTED_FUSED_OPS.map((f) => `${n.op}+${f}`));
    }
    return;
  }
  const model = kerasModel(source.artifacts);
  for (const layer of kerasAncestors(model, opts.outputLayer)) {
    if (!(SUPPORTED_KERAS_LAYERS as readonly string[]).includes(layer.class_name)) throw unsupported(layer.class_name, layer.config.name, SUPPORTED_KERAS_LAYERS);
  }
}

function convertGraphModel(artifacts: tfTypes.io.ModelArtifacts, opts: ConvertOptions): OnnxConversion {
  const nodes = graphNodes(artifacts);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const order = ancestorsInOrder(byName, findGraphOutput(nodes, opts.outputNode));
  const weights = decodeWeights(artifacts);
  const b = new GraphBuilder();
  const values = new Map<string, Value>();
  let inputSize = 0;
  let featureMap: Value | undefined;

  const constOf = (name: string): Weight | undefined => (byName.get(name)?.op === 'Const' ? weights.get(name) : undefined);
  const need = (name: string, consumer: TfNode): Weight => {
    const w = weights.get(name);
    if (!w) throw invalid(`node '${consumer.name}' needs the constant '${name}', which has no weight`);
    return w;
  };
  const valueOf = (name: string, consumer: TfNode): Value => {
    const v = values.get(name);
    if (!v) throw unsupportedUse(consumer.name, `input '${name}' is a constant where an activation is expected`);
    return v;
  };

  for (const n of order) {
    const ins = dataInputs(n);
    switch (n.op) {
      case 'Const':
        break; // materialised by its consumer (weights need TF→ONNX layout changes)
      case 'Placeholder': {
        const dims = (n.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size ?? -1));
        if (dims.length !== 4 || dims[3] !== 3 || dims[1] !== dims[2] || !(Number(dims[1]) > 0)) {
          throw unsupportedUse(n.name, `input must be [N, S, S, 3], got [${dims.join(', ')}]`);
        }
        if (inputSize) throw unsupportedUse(n.name, 'the feature depends on more than one input');
        inputSize = dims[1] ?? 0;
        values.set(n.name, b.preprocess(inputSize));
        break;
      }
      case 'Identity':
        values.set(n.name, valueOf(ins[0] ?? '', n));
        break;
      case 'Mul':
      case 'Sub':
      case 'Add':
      case 'AddV2':
      case 'RealDiv':
        values.set(n.name, binary(b, n, ins, values, constOf));
        break;
      case 'Relu':
      case 'Relu6':
        values.set(n.name, b.activation(valueOf(ins[0] ?? '', n), n.op === 'Relu' ? 'relu' : 'relu6', n.name));
        break;
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative':
        values.set(n.name, graphConv(b, n, ins, valueOf(ins[0] ?? '', n), (name) => need(name, n)));
        break;
      case 'AvgPool': {
        const x = valueOf(ins[0] ?? '', n);
        requireNhwc(n);
        const k = attrInts(n, 'ksize') ?? [];
        const s = attrInts(n, 'strides') ?? [];
        const padding = attrString(n, 'padding') === 'SAME' ? 'SAME' : 'VALID';
        if (k[0] !== 1 || k[3] !== 1 || s[0] !== 1 || s[3] !== 1) throw unsupportedUse(n.name, 'pooling over batch or channels');
        if (padding === 'VALID' && k[1] === x.shape[1] && k[2] === x.shape[2]) {
          featureMap = x;
          values.set(n.name, b.globalAverage(x, n.name, true));
        } else {
          values.set(n.name, b.averagePool(x, n.name, [k[1] ?? 1, k[2] ?? 1], [s[1] ?? 1, s[2] ?? 1], padding));
        }
        break;
      }
      case 'Mean': {
        const x = valueOf(ins[0] ?? '', n);
        const axes = Array.from(need(ins[1] ?? '', n).values).map((a) => (a < 0 ? a + x.shape.length : a)).sort();
        if (x.shape.length !== 4 || axes.join() !== '1,2') throw unsupportedUse(n.name, `Mean over axes [${axes.join(', ')}] (only the spatial mean is supported)`);
        featureMap = x;
        values.set(n.name, b.globalAverage(x, n.name, n.attr?.keep_dims?.b === true));
        break;
      }
      case 'Squeeze': {
        const x = valueOf(ins[0] ?? '', n);
        let dims = attrInts(n, 'squeeze_dims') ?? [];
        if (dims.length === 0) dims = x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i > 0);
        dims = dims.map((d) => (d < 0 ? d + x.shape.length : d));
        if (dims.some((d) => x.shape[d] !== 1)) throw unsupportedUse(n.name, `squeezes a dimension that is not 1 in [${x.shape.join(', ')}]`);
        const onnxAxes = x.shape.length === 4 ? dims.map((d) => NHWC_TO_NCHW_AXIS[d] ?? d) : dims;
        const out = b.op('Squeeze', n.name, [x.name, b.int64s(`${n.name}/axes`, onnxAxes)]);
        values.set(n.name, { name: out, shape: x.shape.filter((_, i) => !dims.includes(i)) });
        break;
      }
      default:
        throw unsupported(n.op, n.name, SUPPORTED_GRAPH_OPS);
    }
  }

  const last = order[order.length - 1];
  const pooled = last ? values.get(last.name) : undefined;
  if (!pooled || !featureMap) throw unsupportedUse(last?.name ?? '?', 'the feature output is not a global average of a feature map');
  return b.finish({ inputSize, pooled, map: featureMap, doc: docString(opts) });
}

function requireNhwc(n: TfNode): void {
  const format = attrString(n, 'data_format') ?? 'NHWC';
  if (format !== 'NHWC') throw unsupportedUse(n.name, `data_format ${format} (only NHWC is supported)`);
}

function graphConv(b: GraphBuilder, n: TfNode, ins: string[], x: Value, need: (name: string) => Weight): Value {
  requireNhwc(n);
  const strides = attrInts(n, 'strides') ?? [1, 1, 1, 1];
  const dilations = attrInts(n, 'dilations') ?? [1, 1, 1, 1];
  const paddingName = attrString(n, 'padding') ?? 'VALID';
  let padding: Padding;
  if (paddingName === 'SAME' || paddingName === 'VALID') padding = paddingName;
  else if (paddingName === 'EXPLICIT') {
    const e = attrInts(n, 'explicit_paddings') ?? [];
    padding = { explicit: [e[2] ?? 0, e[3] ?? 0, e[4] ?? 0, e[5] ?? 0] };
  } else throw unsupportedUse(n.name, `padding ${paddingName}`);

  const fused = attrStrings(n, 'fused_ops');
  const args = ins.slice(2).map(need);
  let bias: Float32Array | undefined;
  let bn: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; variance: Float32Array; epsilon: number } | undefined;
  let activation: Activation = 'linear';
  for (const op of fused) {
    if (op === 'BiasAdd') bias = args[0]?.values;
    else if (op === 'FusedBatchNorm') {
      const [scale, offset, mean, variance] = args;
      if (!scale || !offset || !mean || !variance) throw unsupportedUse(n.name, 'FusedBatchNorm without its 4 arguments');
      bn = { gamma: scale.values, beta: offset.values, mean: mean.values, variance: variance.values, epsilon: n.attr?.epsilon?.f ?? 0.001 };
    } else if (op === 'Relu') activation = 'relu';
    else if (op === 'Relu6') activation = 'relu6';
    else throw unsupported(`${n.op}+${op}`, n.name, SUPPORTED_FUSED_OPS.map((f) => `${n.op}+${f}`));
  }
  const depthwise = n.op.includes('Depthwise');
  const spec: ConvSpec = {
    node: n.name,
    input: x,
    kernel: need(ins[1] ?? ''),
    depthwise,
    strides: [strides[1] ?? 1, strides[2] ?? 1],
    dilations: [dilations[1] ?? 1, dilations[2] ?? 1],
    padding,
  };
  if (bias) spec.bias = bias;
  if (!bn) return b.conv(spec, activation);
  const raw = b.conv(spec, 'linear');
  return b.activation(b.batchNorm(raw, bn, `${n.name}/bn`, true), activation, n.name);
}

/** Elementwise op; a constant operand must be a scalar or per-channel vector (it is reshaped for NCHW). */
function binary(b: GraphBuilder, n: TfNode, ins: string[], values: Map<string, Value>, constOf: (name: string) => Weight | undefined): Value {
  const onnxOp = n.op === 'Mul' ? 'Mul' : n.op === 'Sub' ? 'Sub' : n.op === 'RealDiv' ? 'Div' : 'Add';
  const operands = ins.slice(0, 2).map((name) => ({ name, value: values.get(name), weight: constOf(name) }));
  const act = operands.find((o) => o.value)?.value;
  if (!act || operands.length !== 2) throw unsupportedUse(n.name, 'elementwise op without an activation operand');
  const names = operands.map((o, idx) => {
    if (o.value) {
      if (o.value.shape.join() !== act.shape.join()) throw unsupportedUse(n.name, 'elementwise op between tensors of different shapes');
      return o.value.name;
    }
    if (!o.weight) throw invalid(`node '${n.name}' reads '${o.name}', which is neither an activation nor a constant with a weight`);
    return constOperand(b, n, idx, o.weight, act);
  });
  return { name: b.op(onnxOp, n.name, names), shape: act.shape };
}

function constOperand(b: GraphBuilder, n: TfNode, idx: number, w: Weight, act: Value): string {
  const size = w.values.length;
  const channels = act.shape[act.shape.length - 1];
  if (size === 1) return b.init(`${n.name}/const${idx}`, [], w.values.slice(0, 1));
  if (size === channels && w.shape.slice(0, -1).every((d) => d === 1)) {
    // a per-channel vector broadcasts over NHWC's last axis; in NCHW it must be [C, 1, 1]
    return b.init(`${n.name}/const${idx}`, act.shape.length === 4 ? [size, 1, 1] : [size], w.values);
  }
  throw unsupportedUse(n.name, `constant operand of shape [${w.shape.join(', ')}] (only scalars and per-channel vectors)`);
}

// ---------------------------------------------------------------------------------------------
// layers-model front-end (Keras JSON config)

export interface KerasLayer {
  class_name: string;
  name?: string;
  config: { name: string } & Record<string, unknown>;
  inbound_nodes?: unknown[];
}

interface KerasModel {
  layers: KerasLayer[];
  byName: Map<string, KerasLayer>;
}

function kerasModel(artifacts: tfTypes.io.ModelArtifacts): KerasModel {
  const topo = artifacts.modelTopology as { model_config?: unknown } | undefined;
  const cfg = (topo?.model_config ?? topo) as { class_name?: string; config?: { layers?: KerasLayer[] } } | undefined;
  if (!cfg || !Array.isArray(cfg.config?.layers)) throw invalid('layers model topology has no layer list');
  if (cfg.class_name !== 'Model' && cfg.class_name !== 'Functional') {
    throw unsupported(cfg.class_name ?? 'unknown model class', 'model', ['Model', 'Functional']);
  }
  const layers = cfg.config.layers;
  return { layers, byName: new Map(layers.map((l) => [l.config.name, l])) };
}

/** Names of a layer's inputs (Keras 2 `inbound_nodes`: [[[name, nodeIndex, tensorIndex, kwargs], ...]]). */
function kerasInputs(layer: KerasLayer): string[] {
  const nodes = layer.inbound_nodes ?? [];
  if (nodes.length > 1) throw unsupportedUse(layer.config.name, 'a layer applied more than once (shared layers)');
  const first = nodes[0];
  if (first === undefined) return [];
  if (!Array.isArray(first)) throw unsupportedUse(layer.config.name, 'inbound_nodes in a format other than Keras 2');
  return first.map((ref) => {
    if (!Array.isArray(ref) || typeof ref[0] !== 'string' || ref[2] !== 0) throw unsupportedUse(layer.config.name, 'an input reference other than [layer, 0, 0]');
    return ref[0];
  });
}

function kerasAncestors(model: KerasModel, wanted?: string): KerasLayer[] {
  const out =
    (wanted ? model.byName.get(wanted) : undefined) ??
    (wanted ? undefined : model.byName.get('flatten_1') ?? [...model.layers].reverse().find((l) => l.class_name === 'GlobalAveragePooling2D'));
  if (!out) throw unsupportedUse(wanted ?? 'flatten_1', 'no such feature output layer in the model');
  const seen = new Set<string>();
  const order: KerasLayer[] = [];
  const visit = (l: KerasLayer): void => {
    if (seen.has(l.config.name)) return;
    seen.add(l.config.name);
    for (const i of kerasInputs(l)) {
      const dep = model.byName.get(i);
      if (!dep) throw invalid(`layer '${l.config.name}' reads '${i}', which is not in the model`);
      visit(dep);
    }
    order.push(l);
  };
  visit(out);
  return order;
}

const pair = (v: unknown, fallback: number): [number, number] =>
  Array.isArray(v) ? [Number(v[0] ?? fallback), Number(v[1] ?? v[0] ?? fallback)] : typeof v === 'number' ? [v, v] : [fallback, fallback];

/** ZeroPadding2D `padding` (int | [h, w] | [[t, b], [l, r]]) → [top, bottom, left, right]. */
function zeroPadding(v: unknown): [number, number, number, number] {
  if (typeof v === 'number') return [v, v, v, v];
  if (Array.isArray(v) && Array.isArray(v[0]) && Array.isArray(v[1])) return [Number(v[0][0]), Number(v[0][1]), Number(v[1][0]), Number(v[1][1])];
  const [h, w] = pair(v, 0);
  return [h, h, w, w];
}

function kerasActivation(layer: KerasLayer, name: unknown): Activation {
  if (name === undefined || name === null || name === 'linear') return 'linear';
  if (name === 'relu') return 'relu';
  if (name === 'relu6') return 'relu6';
  throw unsupported(`${layer.class_name}(activation=${String(name)})`, layer.config.name, ['linear', 'relu', 'relu6']);
}

function convertLayersModel(artifacts: tfTypes.io.ModelArtifacts, opts: ConvertOptions): OnnxConversion {
  const model = kerasModel(artifacts);
  const order = kerasAncestors(model, opts.outputLayer);
  const weights = decodeWeights(artifacts);
  const b = new GraphBuilder();
  const values = new Map<string, Value>();
  /** ZeroPadding2D outputs not yet materialised: a conv consuming them folds the padding into its pads. */
  const pendingPads = new Map<string, { input: Value; pads: [number, number, number, number] }>();
  const consumers = new Map<string, number>();
  for (const l of order) for (const i of kerasInputs(l)) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  let inputSize = 0;
  let featureMap: Value | undefined;

  const weight = (layer: KerasLayer, suffix: string): Weight => {
    const w = weights.get(`${layer.config.name}/${suffix}`);
    if (!w) throw invalid(`layer '${layer.config.name}' has no weight '${suffix}'`);
    return w;
  };
  const input = (layer: KerasLayer, index = 0): Value => {
    const name = kerasInputs(layer)[index] ?? '';
    const pending = pendingPads.get(name);
    if (pending) {
      const padded = b.pad(pending.input, pending.pads, name);
      values.set(name, padded);
      pendingPads.delete(name);
    }
    const v = values.get(name);
    if (!v) throw unsupportedUse(layer.config.name, `input '${name}' was not converted`);
    return v;
  };
  const requireChannelsLast = (layer: KerasLayer): void => {
    const f = layer.config.data_format;
    if (f !== undefined && f !== 'channels_last') throw unsupportedUse(layer.config.name, `data_format ${String(f)}`);
  };

  for (const layer of order) {
    const c = layer.config;
    const name = c.name;
    switch (layer.class_name) {
      case 'InputLayer': {
        const shape = (c.batch_input_shape ?? c.batch_shape) as Array<number | null> | undefined;
        if (!shape || shape.length !== 4 || shape[3] !== 3 || shape[1] !== shape[2] || !(Number(shape[1]) > 0)) {
          throw unsupportedUse(name, `input must be [N, S, S, 3], got ${JSON.stringify(shape)}`);
        }
        if (inputSize) throw unsupportedUse(name, 'the feature depends on more than one input');
        inputSize = Number(shape[1]);
        values.set(name, b.preprocess(inputSize));
        break;
      }
      case 'ZeroPadding2D': {
        requireChannelsLast(layer);
        pendingPads.set(name, { input: input(layer), pads: zeroPadding(c.padding) });
        break;
      }
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        requireChannelsLast(layer);
        const depthwise = layer.class_name === 'DepthwiseConv2D';
        const src = kerasInputs(layer)[0] ?? '';
        const pending = consumers.get(src) === 1 ? pendingPads.get(src) : undefined;
        if (pending) pendingPads.delete(src);
        const x = pending ? pending.input : input(layer);
        if (depthwise && Number(c.depth_multiplier ?? 1) < 1) throw unsupportedUse(name, 'depth_multiplier < 1');
        const spec: ConvSpec = {
          node: name,
          input: x,
          kernel: weight(layer, depthwise ? 'depthwise_kernel' : 'kernel'),
          depthwise,
          strides: pair(c.strides, 1),
          dilations: pair(c.dilation_rate, 1),
          padding: String(c.padding ?? 'valid').toUpperCase() === 'SAME' ? 'SAME' : 'VALID',
        };
        if (pending) spec.prePad = pending.pads;
        if (c.use_bias !== false) spec.bias = weight(layer, 'bias').values;
        values.set(name, b.conv(spec, kerasActivation(layer, c.activation)));
        break;
      }
      case 'BatchNormalization': {
        const x = input(layer);
        const axis = Number(c.axis ?? -1);
        if (axis !== -1 && axis !== x.shape.length - 1) throw unsupportedUse(name, `batch-norm over axis ${axis} (only channels)`);
        const ch = x.shape[x.shape.length - 1] ?? 0;
        const params = {
          gamma: c.scale === false ? new Float32Array(ch).fill(1) : weight(layer, 'gamma').values,
          beta: c.center === false ? new Float32Array(ch) : weight(layer, 'beta').values,
          mean: weight(layer, 'moving_mean').values,
          variance: weight(layer, 'moving_variance').values,
          epsilon: Number(c.epsilon ?? 0.001),
        };
        const src = kerasInputs(layer)[0] ?? '';
        values.set(name, b.batchNorm(x, params, name, consumers.get(src) === 1));
        break;
      }
      case 'ReLU': {
        const x = input(layer);
        const slope = Number(c.negative_slope ?? 0);
        const threshold = Number(c.threshold ?? 0);
        if (slope !== 0 || threshold !== 0) throw unsupported(`ReLU(negative_slope=${slope}, threshold=${threshold})`, name, ['ReLU', 'ReLU(max_value)']);
        const max = c.max_value;
        if (max === null || max === undefined) values.set(name, b.activation(x, 'relu', name));
        else values.set(name, { name: b.op('Clip', name, [x.name, b.scalar(0), b.scalar(Number(max))]), shape: x.shape });
        break;
      }
      case 'Activation':
        values.set(name, b.activation(input(layer), kerasActivation(layer, c.activation), name));
        break;
      case 'Dropout':
        values.set(name, input(layer)); // identity at inference
        break;
      case 'Add': {
        const xs = kerasInputs(layer).map((_, i) => input(layer, i));
        const first = xs[0];
        if (!first || xs.some((v) => v.shape.join() !== first.shape.join())) throw unsupportedUse(name, 'Add of tensors with different shapes');
        let acc = first;
        for (const v of xs.slice(1)) acc = { name: b.op('Add', name, [acc.name, v.name]), shape: first.shape };
        values.set(name, acc);
        break;
      }
      case 'AveragePooling2D': {
        requireChannelsLast(layer);
        const x = input(layer);
        const k = pair(c.pool_size, 2);
        const s = c.strides === null || c.strides === undefined ? k : pair(c.strides, 1);
        const padding = String(c.padding ?? 'valid').toUpperCase() === 'SAME' ? 'SAME' : 'VALID';
        if (padding === 'VALID' && k[0] === x.shape[1] && k[1] === x.shape[2]) {
          featureMap = x;
          values.set(name, b.globalAverage(x, name, true));
        } else values.set(name, b.averagePool(x, name, k, s, padding));
        break;
      }
      case 'GlobalAveragePooling2D': {
        requireChannelsLast(layer);
        const x = input(layer);
        featureMap = x;
        values.set(name, b.globalAverage(x, name, c.keepdims === true));
        break;
      }
      case 'Flatten': {
        const x = input(layer);
        if (x.shape.length === 4 && (x.shape[1] !== 1 || x.shape[2] !== 1)) {
          // NCHW flattening would order values differently from Keras' NHWC flattening
          throw unsupportedUse(name, `Flatten of a ${x.shape[1]}×${x.shape[2]} map (only 1×1)`);
        }
        values.set(name, { name: b.op('Flatten', name, [x.name], [attr.int('axis', 1)]), shape: [x.shape[0] ?? -1, x.shape[x.shape.length - 1] ?? 0] });
        break;
      }
      default:
        throw unsupported(layer.class_name, name, SUPPORTED_KERAS_LAYERS);
    }
  }
  const last = order[order.length - 1];
  const pooled = last ? values.get(last.config.name) : undefined;
  if (!pooled || !featureMap) throw unsupportedUse(last?.config.name ?? '?', 'the feature output is not a global average of a feature map');
  return b.finish({ inputSize, pooled, map: featureMap, doc: docString(opts) });
}

// ---------------------------------------------------------------------------------------------

function docString(opts: ConvertOptions): string {
  return `framewise ONNX backbone (converter v${CONVERTER_VERSION})${opts.source ? ` from ${opts.source}` : ''}`;
}

/** Convert and describe the result (channels, map size, op counts). Deterministic: same input, same bytes. */
export function convertToOnnxDetailed(source: Pick<NsfwjsArtifacts, 'kind' | 'artifacts'>, opts: ConvertOptions = {}): OnnxConversion {
  assertConvertible(source, opts);
  return source.kind === 'graph' ? convertGraphModel(source.artifacts, opts) : convertLayersModel(source.artifacts, opts);
}

/** The ONNX model bytes for a nsfwjs MobileNetV2 (see the module comment for the graph contract). */
export function convertToOnnx(source: Pick<NsfwjsArtifacts, 'kind' | 'artifacts'>, opts: ConvertOptions = {}): Uint8Array {
  return convertToOnnxDetailed(source, opts).model;
}
