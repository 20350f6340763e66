/**
 * The subset of the ONNX protobuf schema (onnx.proto, proto2) that the converter writes, as a
 * protobufjs reflection root built from an inline JSON descriptor: no .proto file to ship or
 * download, and a decoder for free (tests read the produced model back).
 *
 * Field numbers follow onnx/onnx.proto; only the fields framewise uses are declared (a protobuf
 * reader skips nothing it needs: we never read foreign models with this schema except our own).
 */
import protobuf from 'protobufjs';

/** ONNX IR version 8 (2021-07-30) is read by every onnxruntime since 1.10. */
export const ONNX_IR_VERSION = 8;
/** Default-domain opset the converter targets (Squeeze/ReduceMean semantics of opset 13). */
export const ONNX_OPSET = 13;

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType values used here. */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;
export type AttributeTypeCode = (typeof AttributeType)[keyof typeof AttributeType];

export interface TensorProto {
  name: string;
  dims: number[];
  dataType: DataTypeCode;
  /** Little-endian element bytes. */
  rawData: Uint8Array;
}

export interface AttributeProto {
  name: string;
  type: AttributeTypeCode;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: number[];
}

export interface NodeProto {
  name: string;
  opType: string;
  input: string[];
  output: string[];
  attribute: AttributeProto[];
}

/** One dimension: a fixed size or a symbolic name (dynamic). */
export type DimensionProto = { dimValue: number } | { dimParam: string };

export interface ValueInfoProto {
  name: string;
  type: { tensorType: { elemType: DataTypeCode; shape: { dim: DimensionProto[] } } };
}

export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
}

export interface ModelProto {
  irVersion: number;
  opsetImport: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  docString?: string;
  graph: GraphProto;
  metadataProps?: Array<{ key: string; value: string }>;
}

const f = (type: string, id: number, repeated = false): { type: string; id: number; rule?: string } =>
  repeated ? { type, id, rule: 'repeated' } : { type, id };

/** protobufjs JSON descriptor of the declared subset (camelCase names, onnx.proto numbers). */
const DESCRIPTOR = {
  nested: {
    onnx: {
      nested: {
        StringStringEntryProto: { fields: { key: f('string', 1), value: f('string', 2) } },
        OperatorSetIdProto: { fields: { domain: f('string', 1), version: f('int64', 2) } },
        TensorProto: {
          fields: { dims: f('int64', 1, true), dataType: f('int32', 2), name: f('string', 8), rawData: f('bytes', 9) },
        },
        AttributeProto: {
          fields: {
            name: f('string', 1),
            f: f('float', 2),
            i: f('int64', 3),
            s: f('bytes', 4),
            t: f('TensorProto', 5),
            floats: f('float', 7, true),
            ints: f('int64', 8, true),
            type: f('int32', 20),
          },
        },
        NodeProto: {
          fields: {
            input: f('string', 1, true),
            output: f('string', 2, true),
            name: f('string', 3),
            opType: f('string', 4),
            attribute: f('AttributeProto', 5, true),
            domain: f('string', 7),
          },
        },
        TensorShapeProto: {
          fields: { dim: f('Dimension', 1, true) },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: { dimValue: f('int64', 1), dimParam: f('string', 2) },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ['tensorType'] } },
          fields: { tensorType: f('Tensor', 1) },
          nested: { Tensor: { fields: { elemType: f('int32', 1), shape: f('TensorShapeProto', 2) } } },
        },
        ValueInfoProto: { fields: { name: f('string', 1), type: f('TypeProto', 2) } },
        GraphProto: {
          fields: {
            node: f('NodeProto', 1, true),
            name: f('string', 2),
            initializer: f('TensorProto', 5, true),
            input: f('ValueInfoProto', 11, true),
            output: f('ValueInfoProto', 12, true),
          },
        },
        ModelProto: {
          fields: {
            irVersion: f('int64', 1),
            producerName: f('string', 2),
            producerVersion: f('string', 3),
            docString: f('string', 6),
            graph: f('GraphProto', 7),
            opsetImport: f('OperatorSetIdProto', 8, true),
            metadataProps: f('StringStringEntryProto', 14, true),
          },
        },
      },
    },
  },
};

let modelType: protobuf.Type | undefined;
function modelProtoType(): protobuf.Type {
  modelType ??= protobuf.Root.fromJSON(DESCRIPTOR).lookupType('onnx.ModelProto');
  return modelType;
}

/** Serialise a model. The bytes are deterministic for a given input (no timestamps). */
export function encodeModel(model: ModelProto): Uint8Array {
  const type = modelProtoType();
  const err = type.verify(model);
  if (err) throw new Error(`invalid ONNX ModelProto: ${err}`);
  return type.encode(model).finish();
}

/** Parse bytes written by {@link encodeModel} (int64 as numbers); used by tests and diagnostics. */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const type = modelProtoType();
  return type.toObject(type.decode(bytes), { longs: Number, arrays: true, defaults: false, oneofs: false }) as ModelProto;
}

// ---- small constructors (keep call sites short and typed) ----

export function tensorProto(name: string, dims: number[], data: Float32Array | Uint8Array | Int32Array | BigInt64Array, type?: DataTypeCode): TensorProto {
  const dataType: DataTypeCode =
    type ?? (data instanceof Float32Array ? DataType.FLOAT : data instanceof Int32Array ? DataType.INT32 : data instanceof BigInt64Array ? DataType.INT64 : DataType.UINT8);
  // raw_data must be little-endian; typed arrays are host-endian and every platform
  // onnxruntime-node ships for (x64, arm64) is little-endian.
  return { name, dims, dataType, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function nodeProto(opType: string, name: string, input: string[], output: string[], attribute: AttributeProto[] = []): NodeProto {
  return { name, opType, input, output, attribute };
}

export const attr = {
  int: (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i }),
  ints: (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints }),
  float: (name: string, value: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f: value }),
  string: (name: string, value: string): AttributeProto => ({ name, type: AttributeType.STRING, s: new TextEncoder().encode(value) }),
};

/** A tensor value description; `null` in `dims` is a dynamic dimension named `dynamicName`. */
export function valueInfo(name: string, elemType: DataTypeCode, dims: Array<number | null>, dynamicName = 'N'): ValueInfoProto {
  const dim = dims.map((d): DimensionProto => (d === null ? { dimParam: dynamicName } : { dimValue: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}
