import type * as tfTypes from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { FramewiseError } from '../../src/errors/index.js';
import { gridFeature, gridHalves } from '../../src/ml/grid-feature.js';
import { assertConvertible, convertToOnnx, convertToOnnxDetailed, decodeWeights, tfSamePadding, type KerasLayer, type TfNode } from '../../src/ml/onnx/convert.js';
import { decodeModel } from '../../src/ml/onnx/onnx-proto.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const ints = (...v: number[]): { list: { i: string[] } } => ({ list: { i: v.map(String) } });

/** A tiny tfjs graph model: input [N,4,4,3] → 1×1 conv (3→8, bias, relu6) → global AvgPool → Squeeze → Softmax head. */
function tinyGraph(convOp = '_FusedConv2D', fusedOps = ['BiasAdd', 'Relu6'], extra: TfNode[] = [], squeezeInput = 'conv'): { kind: 'graph'; artifacts: tfTypes.io.ModelArtifacts } {
  const kernel = Float32Array.from({ length: 3 * 8 }, (_, i) => ((i * 7) % 11) / 10 - 0.5);
  const bias = Float32Array.from({ length: 8 }, (_, i) => i / 10 - 0.3);
  const nodes: TfNode[] = [
    { name: 'input', op: 'Placeholder', attr: { shape: { shape: { dim: [{ size: '-1' }, { size: '4' }, { size: '4' }, { size: '3' }] } } } },
    { name: 'w', op: 'Const' },
    { name: 'b', op: 'Const' },
    {
      name: 'conv',
      op: convOp,
      input: ['input', 'w', 'b'],
      attr: { strides: ints(1, 1, 1, 1), dilations: ints(1, 1, 1, 1), padding: { s: b64('SAME') }, data_format: { s: b64('NHWC') }, fused_ops: { list: { s: fusedOps.map(b64) } } },
    },
    ...extra,
    { name: 'pool', op: 'AvgPool', input: [squeezeInput], attr: { ksize: ints(1, 4, 4, 1), strides: ints(1, 1, 1, 1), padding: { s: b64('VALID') } } },
    { name: 'net/feature_vector/SpatialSqueeze', op: 'Squeeze', input: ['pool'], attr: { squeeze_dims: ints(1, 2) } },
    // the classifier head after the feature: never converted, so its op does not matter
    { name: 'head', op: 'Softmax', input: ['net/feature_vector/SpatialSqueeze'] },
  ];
  const weightData = new Uint8Array([...new Uint8Array(kernel.buffer), ...new Uint8Array(bias.buffer)]).buffer;
  return {
    kind: 'graph',
    artifacts: {
      modelTopology: { node: nodes } as unknown as tfTypes.io.ModelArtifacts['modelTopology'],
      weightSpecs: [
        { name: 'w', shape: [1, 1, 3, 8], dtype: 'float32' },
        { name: 'b', shape: [8], dtype: 'float32' },
      ],
      weightData,
    },
  };
}

function expectUnsupported(fn: () => unknown, op: string, node: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(FramewiseError);
  const e = caught as FramewiseError;
  expect(e.code).toBe('FW_ERR_ONNX_UNSUPPORTED_OP');
  expect(e.message).toContain(`cannot convert op '${op}' (node '${node}') to ONNX; supported: `);
}

describe('ONNX converter: unsupported ops', () => {
  it('names the op and the node of an unknown graph op on the feature path', () => {
    const model = tinyGraph('_FusedConv2D', ['BiasAdd', 'Relu6'], [{ name: 'odd/gelu', op: 'Erf', input: ['conv'] }], 'odd/gelu');
    expectUnsupported(() => assertConvertible(model), 'Erf', 'odd/gelu');
    expectUnsupported(() => convertToOnnx(model), 'Erf', 'odd/gelu');
  });

  it('names an unknown fused op of a fused convolution', () => {
    expectUnsupported(() => assertConvertible(tinyGraph('_FusedConv2D', ['BiasAdd', 'Elu'])), '_FusedConv2D+Elu', 'conv');
  });

  it('ignores ops after the feature output (the classifier head)', () => {
    expect(() => assertConvertible(tinyGraph())).not.toThrow();
  });

  it('names an unknown Keras layer', () => {
    const layer = (class_name: string, name: string, inbound: string | null, config: Record<string, unknown> = {}): KerasLayer => ({
      class_name,
      config: { name, ...config },
      inbound_nodes: inbound ? [[[inbound, 0, 0, {}]]] : [],
    });
    const artifacts = {
      modelTopology: {
        model_config: {
          class_name: 'Model',
          config: {
            layers: [
              layer('InputLayer', 'input_1', null, { batch_input_shape: [null, 8, 8, 3] }),
              layer('LeakyReLU', 'leaky', 'input_1'),
              layer('GlobalAveragePooling2D', 'gap', 'leaky'),
            ],
          },
        },
      } as unknown as tfTypes.io.ModelArtifacts['modelTopology'],
      weightSpecs: [],
      weightData: new ArrayBuffer(0),
    };
    expectUnsupported(() => assertConvertible({ kind: 'layers', artifacts }), 'LeakyReLU', 'leaky');
  });
});

describe('ONNX converter: graph structure', () => {
  it('writes the frames → pooled/map contract for a tiny graph', () => {
    const conv = convertToOnnxDetailed(tinyGraph());
    expect(conv).toMatchObject({ inputSize: 4, channels: 8, mapSize: 4 });
    const model = decodeModel(conv.model);
    expect(model.irVersion).toBe(8);
    expect(model.opsetImport[0]?.version).toBe(13);
    const g = model.graph;
    expect(g.input.map((i) => i.name)).toEqual(['frames']);
    expect(g.output.map((o) => o.name)).toEqual(['pooled', 'map']);
    expect(g.input[0]?.type.tensorType).toEqual({ elemType: 2, shape: { dim: [{ dimParam: 'N' }, { dimValue: 4 }, { dimValue: 4 }, { dimValue: 3 }] } });
    expect(g.output[1]?.type.tensorType.shape.dim).toEqual([{ dimParam: 'N' }, { dimValue: 4 }, { dimValue: 4 }, { dimValue: 8 }]);
    expect(g.node.map((n) => n.opType)).toEqual(['Cast', 'Div', 'Transpose', 'Conv', 'Clip', 'ReduceMean', 'Squeeze', 'Transpose']);
    // deterministic bytes: the cache relies on it
    expect(Buffer.from(convertToOnnx(tinyGraph())).equals(Buffer.from(conv.model))).toBe(true);
  });

  it('runs in onnxruntime and matches a hand-written reference', async () => {
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(convertToOnnx(tinyGraph()));
    const frames = Uint8Array.from({ length: 2 * 4 * 4 * 3 }, (_, i) => (i * 37) % 256);
    const out = await session.run({ frames: new ort.Tensor('uint8', frames, [2, 4, 4, 3]) });
    const kernel = Float32Array.from({ length: 24 }, (_, i) => ((i * 7) % 11) / 10 - 0.5);
    const bias = Float32Array.from({ length: 8 }, (_, i) => i / 10 - 0.3);
    const expected: number[] = [];
    for (let f = 0; f < 2; f++) {
      for (let o = 0; o < 8; o++) {
        let sum = 0;
        for (let p = 0; p < 16; p++) {
          let y = bias[o] ?? 0;
          for (let i = 0; i < 3; i++) y += ((frames[(f * 16 + p) * 3 + i] ?? 0) / 255) * (kernel[i * 8 + o] ?? 0);
          sum += Math.min(6, Math.max(0, y));
        }
        expected.push(sum / 16);
      }
    }
    const pooled = Array.from(out.pooled?.data as Float32Array);
    pooled.forEach((v, i) => expect(v).toBeCloseTo(expected[i] ?? NaN, 5));
    expect(out.map?.dims).toEqual([2, 4, 4, 8]);
    await session.release();
  });

  it("reproduces TF's SAME padding (the odd pixel goes after)", () => {
    expect(tfSamePadding(224, 3, 2)).toEqual([0, 1]);
    expect(tfSamePadding(112, 3, 2)).toEqual([0, 1]);
    expect(tfSamePadding(7, 3, 1)).toEqual([1, 1]);
    expect(tfSamePadding(225, 3, 2)).toEqual([1, 1]);
    expect(tfSamePadding(224, 1, 2)).toEqual([0, 0]);
    expect(tfSamePadding(10, 3, 1, 2)).toEqual([2, 2]);
  });

  it('dequantises uint8 weights as v * scale + min (float32)', () => {
    const w = decodeWeights({
      weightSpecs: [{ name: 'q', shape: [3], dtype: 'float32', quantization: { dtype: 'uint8', min: -1, scale: 0.5 } }],
      weightData: new Uint8Array([0, 3, 255]).buffer,
    });
    expect(Array.from(w.get('q')?.values ?? [])).toEqual([-1, 0.5, 126.5]);
  });
});

describe('gridFeature', () => {
  it('splits a side into two halves overlapping on the middle when odd', () => {
    expect(gridHalves(7)).toEqual([[0, 3], [3, 6]]);
    expect(gridHalves(3)).toEqual([[0, 1], [1, 2]]);
    expect(gridHalves(8)).toEqual([[0, 3], [4, 7]]);
  });

  it('averages a 3×3 map over 2×2 overlapping cells, then groups of 4 channels', () => {
    // value(r, c, k) = 10r + c + 100k; 3×3 map, 4 channels → one channel group per cell
    const map = new Float32Array(3 * 3 * 4);
    for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) for (let k = 0; k < 4; k++) map[(r * 3 + c) * 4 + k] = 10 * r + c + 100 * k;
    // TL rows 0-1 cols 0-1: (0+1+10+11)/4 = 5.5, channels (0+100+200+300)/4 = 150 → 155.5
    // TR cols 1-2: (1+2+11+12)/4 = 6.5 → 156.5; BL rows 1-2: 15.5 → 165.5; BR: 16.5 → 166.5
    expect(Array.from(gridFeature(map, 1, 3, 4))).toEqual([155.5, 156.5, 165.5, 166.5]);
  });

  it('handles 7×7 maps, several frames and several channel groups', () => {
    const C = 8;
    const map = new Float32Array(2 * 49 * C);
    map[(3 * 7 + 3) * C + 0] = 1; // frame 0: centre pixel, channel 0 → in all four cells
    map[49 * C + 0 * C + 5] = 64; // frame 1: top-left pixel, channel 5 (group 1) → top-left cell only
    const out = Array.from(gridFeature(map, 2, 7, C));
    expect(out).toHaveLength(2 * C);
    // each cell averages 16 positions × 4 channels = 64 values
    expect(out.slice(0, C)).toEqual([1 / 64, 0, 1 / 64, 0, 1 / 64, 0, 1 / 64, 0]);
    expect(out.slice(C)).toEqual([0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('rejects channel counts that are not multiples of 4 and wrong sizes', () => {
    expect(() => gridFeature(new Float32Array(49 * 6), 1, 7, 6)).toThrow(RangeError);
    expect(() => gridFeature(new Float32Array(10), 1, 7, 8)).toThrow(RangeError);
  });
});
