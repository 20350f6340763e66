/**
 * The vendored keypoint models (`pretrained/keypoints/<id>/`, provenance and licences in the
 * README there) and their conversion to ONNX, cached like the backbone's:
 *   `${cacheDir}/onnx/keypoints/<id>-<weights sha256 prefix>-<input shape>-g<graph converter version>.onnx`
 *   + `<same>.json` (sidecar with the model's sha256, checked on every open; a mismatch reconverts).
 *
 * Conversion traces the graph once with TF.js (see convert-graph.ts), writes through a private
 * temporary file and renames into place, so concurrent converters race harmlessly.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../config/index.js';
import { FramewiseError, toStorageError } from '../../errors/index.js';
import type { TfNode } from '../onnx/convert.js';
import { convertGraphToOnnx, GRAPH_CONVERTER_VERSION, traceGraphModel, type GraphInputSpec } from '../onnx/convert-graph.js';
import { sha256, writeAtomic } from '../onnx/onnx-cache.js';
import { folderLoader } from '../tf-io.js';
import { initTfjs, tf } from '../tfjs-runtime.js';

export type KeypointModelId = 'movenet-multipose' | 'handdetect' | 'handlandmark-lite';

export interface KeypointModelSpec {
  id: KeypointModelId;
  /** File name → sha256, exactly as vendored (the README lists the same). */
  files: Record<string, string>;
  /** The weight shard whose sha256 prefix versions the model. */
  weights: string;
  /** Where the converted graph starts for frames of `height` × `width`, and the dtype it takes. */
  input(height: number, width: number): Omit<GraphInputSpec, 'name'>;
  /** Tensors the converted part ends at (before any control flow), with their ONNX names. */
  outputs: Array<{ ref: string; name: string }>;
}

export const KEYPOINT_MODELS: Record<KeypointModelId, KeypointModelSpec> = {
  'movenet-multipose': {
    id: 'movenet-multipose',
    files: {
      'model.json': '3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de',
      'movenet-multipose.bin': '19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118',
    },
    weights: 'movenet-multipose.bin',
    // int32 pixels 0…255 in the graph; the ONNX model takes the uint8 frame and casts
    // (any height and width that are multiples of 32, the longer side 256)
    input: (h, w) => ({ node: 'input', dtype: 'uint8', shape: [1, h, w, 3] }),
    // [1, 6, 56]: 6 candidates × (17 × (y, x, score), ymin, xmin, ymax, xmax, score), decoded in the graph
    outputs: [{ ref: 'Identity', name: 'poses' }],
  },
  handdetect: {
    id: 'handdetect',
    files: {
      'model.json': '1d57c77a8695a0748883aea76f49620ab68cb8a79d7b93700108b09b3c53e2dd',
      'handdetect.bin': 'e513404cfc52fcc2bb8e8c1a17d88b7bc1e7d531125a14f126b60500e8352438',
    },
    weights: 'handdetect.bin',
    // MediaPipe palm detection: float x/127.5 − 1 at 256²; the ONNX model takes the uint8 frame and scales it
    input: (h, w) => ({ node: 'input', dtype: 'uint8', shape: [1, h, w, 3], prelude: { fromShape: [1, h, w, 3], scale: 1 / 127.5, offset: -1 } }),
    // [1, 2944, 19] per anchor: score logit, box (dx, dy, w, h), 7 palm keypoints (x, y), in input pixels
    outputs: [{ ref: 'Identity', name: 'palms' }],
  },
  'handlandmark-lite': {
    id: 'handlandmark-lite',
    files: {
      'model.json': '8478ec3224129957f1436194738ad26ac78bbac8ea3be1730399ccad6964a27f',
      'handlandmark-lite.bin': '3dbf92db39720eac7f88aff322a24d3f4ed3ba1f54aa7a8a37b704f14cb76c0e',
    },
    weights: 'handlandmark-lite.bin',
    // float 0…1 in the graph; the ONNX model takes a uint8 224² crop and scales it
    input: () => ({ node: 'input_1', dtype: 'uint8', shape: [1, 224, 224, 3], prelude: { fromShape: [1, 224, 224, 3], scale: 1 / 255, offset: 0 } }),
    // 21 × (x, y, z) in crop pixels (224²), hand-presence logit, handedness (1 = right hand)
    outputs: [
      { ref: 'Identity', name: 'landmarks' },
      { ref: 'Identity_1', name: 'presence' },
      { ref: 'Identity_2', name: 'handedness' },
    ],
  },
};

export const KEYPOINTS_DIR = join(PROJECT_ROOT, 'pretrained', 'keypoints');

export function keypointModelDir(id: KeypointModelId): string {
  return join(KEYPOINTS_DIR, id);
}

/** `<id>@<sha256 prefix of the weights>`: the version string a stream reports. */
export function keypointModelVersion(id: KeypointModelId): string {
  const spec = KEYPOINT_MODELS[id];
  return `${id}@${(spec.files[spec.weights] ?? '').slice(0, 12)}`;
}

/** Check the vendored files against their recorded sha256 (FW_ERR_MODEL_NOT_FOUND / FW_ERR_MODEL_INVALID). */
export async function verifyKeypointFiles(id: KeypointModelId): Promise<void> {
  const dir = keypointModelDir(id);
  for (const [file, want] of Object.entries(KEYPOINT_MODELS[id].files)) {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(dir, file));
    } catch (err) {
      throw new FramewiseError('FW_ERR_MODEL_NOT_FOUND', `keypoint model file ${join(dir, file)} cannot be read (pretrained/keypoints is part of the repository)`, { cause: err });
    }
    const got = sha256(bytes);
    if (got !== want) throw new FramewiseError('FW_ERR_MODEL_INVALID', `keypoint model file ${join(dir, file)} has sha256 ${got.slice(0, 12)}…, expected ${want.slice(0, 12)}… (see pretrained/keypoints/README.md)`);
  }
}

export interface LoadedGraph {
  model: tf.GraphModel;
  nodes: TfNode[];
}

/** The vendored model as a TF.js graph model (files verified first). */
export async function loadKeypointGraph(id: KeypointModelId): Promise<LoadedGraph> {
  await verifyKeypointFiles(id);
  await initTfjs();
  const handler = folderLoader(keypointModelDir(id));
  const artifacts = await handler.load!();
  const model = await tf.loadGraphModel({ load: () => Promise.resolve(artifacts) });
  const topo = artifacts.modelTopology as { node?: TfNode[] } | undefined;
  if (!topo?.node) throw new FramewiseError('FW_ERR_MODEL_INVALID', `keypoint model ${id} is not a graph model`);
  return { model, nodes: topo.node };
}

export interface ConvertedKeypointModel {
  path: string;
  sha256: string;
  inputShape: number[];
  outputs: Array<{ name: string; shape: number[]; dtype: string }>;
}

interface Sidecar {
  format: 'framewise-onnx-keypoints';
  model: KeypointModelId;
  version: string;
  graphConverterVersion: number;
  inputShape: number[];
  outputs: ConvertedKeypointModel['outputs'];
  sha256: string;
  bytes: number;
  createdAt: string;
}

/** Input side(s): a square side, or height × width. */
export type KeypointInputSize = number | { height: number; width: number };
const hw = (size: KeypointInputSize): [number, number] => (typeof size === 'number' ? [size, size] : [size.height, size.width]);

export function keypointOnnxPath(id: KeypointModelId, size: KeypointInputSize, cacheDir: string): string {
  const sha = keypointModelVersion(id).split('@')[1] ?? '';
  const [h, w] = hw(size);
  return join(cacheDir, 'onnx', 'keypoints', `${id}-${sha}-${h === w ? h : `${h}x${w}`}-g${GRAPH_CONVERTER_VERSION}.onnx`);
}

async function cached(path: string): Promise<ConvertedKeypointModel | undefined> {
  try {
    const side = JSON.parse(await readFile(`${path}.json`, 'utf8')) as Partial<Sidecar>;
    if (side.format !== 'framewise-onnx-keypoints' || side.graphConverterVersion !== GRAPH_CONVERTER_VERSION || !side.inputShape || !side.outputs) return undefined;
    if (sha256(await readFile(path)) !== side.sha256) return undefined;
    return { path, sha256: side.sha256, inputShape: side.inputShape, outputs: side.outputs };
  } catch {
    return undefined;
  }
}

const inFlight = new Map<string, Promise<ConvertedKeypointModel>>();

/**
 * The ONNX model of a vendored keypoint model for frames of side `size` (or height × width;
 * input [1, h, w, 3] uint8), converted on first use (TF.js traces it once; needs a TF.js
 * backend) and verified by sha256 on every later open.
 */
export function ensureKeypointOnnx(id: KeypointModelId, size: KeypointInputSize, cacheDir: string): Promise<ConvertedKeypointModel> {
  const path = keypointOnnxPath(id, size, cacheDir);
  let pending = inFlight.get(path);
  if (!pending) {
    pending = (async () => {
      const hit = await cached(path);
      if (hit) return hit;
      const spec = KEYPOINT_MODELS[id];
      const input = spec.input(...hw(size));
      const inputShape = input.prelude?.fromShape ?? input.shape;
      const { model, nodes } = await loadKeypointGraph(id);
      try {
        // the graph's own input dtype: int32 for pixel placeholders, float after preprocessing
        const feed = tf.zeros(input.shape, input.prelude ? 'float32' : input.dtype === 'uint8' ? 'int32' : 'float32');
        let trace;
        try {
          trace = await traceGraphModel(tf, model, nodes, { node: input.node, tensor: feed }, spec.outputs.map((o) => o.ref));
        } finally {
          feed.dispose();
        }
        const conv = convertGraphToOnnx({
          nodes,
          trace,
          input: { ...input, name: 'input' },
          outputs: spec.outputs,
          source: keypointModelVersion(id),
        });
        const side: Sidecar = {
          format: 'framewise-onnx-keypoints',
          model: id,
          version: keypointModelVersion(id),
          graphConverterVersion: GRAPH_CONVERTER_VERSION,
          inputShape,
          outputs: conv.outputs,
          sha256: sha256(conv.model),
          bytes: conv.model.byteLength,
          createdAt: new Date().toISOString(),
        };
        try {
          await writeAtomic(path, conv.model);
          await writeAtomic(`${path}.json`, `${JSON.stringify(side, null, 2)}\n`);
        } catch (err) {
          throw toStorageError(err, `the converted ${id} model (${path})`);
        }
        return { path, sha256: side.sha256, inputShape, outputs: conv.outputs };
      } finally {
        model.dispose();
      }
    })();
    inFlight.set(path, pending);
    void pending.finally(() => inFlight.delete(path)).catch(() => undefined);
  }
  return pending;
}
