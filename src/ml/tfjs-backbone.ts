/**
 * The `tfjs` engine: MobileNetV2 through TensorFlow.js (backend `tensorflow`, `wasm` or `cpu`).
 * Frames go in as rgb24 bytes, in batches, inside `tf.tidy`; nothing leaks between calls.
 */
import { FramewiseError } from '../errors/index.js';
import type { TfjsBackendChoice } from '../config/index.js';
import type { Backbone, BackboneId, BackboneInfo, FeatureKind } from './backbone.js';
import { BACKBONE_SPECS, backboneVersion, DEFAULT_TFHUB_MOBILENET_URL, featureDim } from './backbone-specs.js';
import { gridFeature } from './grid-feature.js';
import { loadNsfwjsArtifacts } from './pretrained-weights.js';
import { folderLoader } from './tf-io.js';
import { initTfjs, tf } from './tfjs-runtime.js';

export interface TfjsBackboneOptions {
  id: BackboneId;
  featureKind: FeatureKind;
  backend?: TfjsBackendChoice;
  batchSize?: number;
  /** For `tfhub_mobilenet_v2`: a TF Hub / http(s) model URL, or a local folder holding model.json. */
  modelUrl?: string;
}

/** Runs one batch: float input [n,S,S,3] in [0,1] → the last feature map [n,m,m,C]. */
type MapFn = (x: tf.Tensor4D) => tf.Tensor4D;


async function buildMapFn(opts: TfjsBackboneOptions): Promise<{ run: MapFn; version: string; dispose: () => void }> {
  if (opts.id === 'mobilenet_v2_mid') {
    const { artifacts, packageVersion } = await loadNsfwjsArtifacts('mobilenet_v2_mid');
    const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
    const nodes = (artifacts.modelTopology as { node: Array<{ name: string; op: string; input?: string[] }> }).node;
    const pool = nodes.find((n) => n.op === 'AvgPool');
    const mapNode = pool?.input?.[0];
    if (!mapNode) throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', 'mobilenet_v2_mid: no AvgPool node found in the graph');
    return {
      run: (x) => model.execute({ input: x }, mapNode) as tf.Tensor4D,
      version: `nsfwjs@${packageVersion}`,
      dispose: () => model.dispose(),
    };
  }
  if (opts.id === 'mobilenet_v2') {
    const { artifacts, packageVersion } = await loadNsfwjsArtifacts('mobilenet_v2');
    const full = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const poolLayer = full.layers.find((l) => l.getClassName() === 'AveragePooling2D' || l.getClassName() === 'GlobalAveragePooling2D');
    if (!poolLayer) throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', 'mobilenet_v2: no pooling layer found');
    const trunk = tf.model({ inputs: full.inputs, outputs: poolLayer.input as tf.SymbolicTensor });
    return {
      run: (x) => trunk.predict(x) as tf.Tensor4D,
      version: `nsfwjs@${packageVersion}`,
      dispose: () => full.dispose(),
    };
  }
  // tfhub_mobilenet_v2: the TF Hub ImageNet feature-vector model (needs internet, or a local copy)
  const url = opts.modelUrl ?? DEFAULT_TFHUB_MOBILENET_URL;
  let model: tf.GraphModel;
  try {
    model = /^https?:\/\//.test(url) ? await tf.loadGraphModel(url, { fromTFHub: url.includes('tfhub.dev') }) : await tf.loadGraphModel(folderLoader(url));
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `cannot load the TF Hub MobileNetV2 from ${url} (no internet? set FRAMEWISE_TFHUB_MOBILENET_URL to a local folder with model.json)`, { cause: err });
  }
  // The feature-vector model outputs the pooled vector only: expose it as a 1×1 map.
  return {
    run: (x) => (model.predict(x) as tf.Tensor2D).expandDims(1).expandDims(1) as tf.Tensor4D,
    version: `tfhub:${url}`,
    dispose: () => model.dispose(),
  };
}

class TfjsBackbone implements Backbone {
  constructor(
    readonly info: BackboneInfo,
    private readonly run: MapFn,
    private readonly batchSize: number,
    private readonly release: () => void,
  ) {}

  async embed(frames: Uint8Array, count: number): Promise<Float32Array> {
    const { inputSize: s, dim, featureKind } = this.info;
    const frameBytes = s * s * 3;
    if (frames.length < count * frameBytes) throw new FramewiseError('FW_ERR_INTERNAL', `embed: expected ${count * frameBytes} bytes, got ${frames.length}`);
    const out = new Float32Array(count * dim);
    for (let start = 0; start < count; start += this.batchSize) {
      const n = Math.min(this.batchSize, count - start);
      const bytes = frames.subarray(start * frameBytes, (start + n) * frameBytes);
      const result = tf.tidy(() => {
        const x = tf.tensor4d(Float32Array.from(bytes), [n, s, s, 3]).div(255) as tf.Tensor4D;
        const map = this.run(x);
        return featureKind === 'pooled' ? map.mean([1, 2]) : map;
      });
      try {
        const values = (await result.data()) as Float32Array;
        if (featureKind === 'pooled') out.set(values, start * dim);
        else {
          const [, m, , c] = result.shape as number[];
          out.set(gridFeature(values, n, m ?? 7, c ?? dim), start * dim);
        }
      } finally {
        result.dispose();
      }
    }
    return out;
  }

  async dispose(): Promise<void> {
    this.release();
  }
}

export async function createTfjsBackbone(opts: TfjsBackboneOptions): Promise<Backbone> {
  const backend = await initTfjs(opts.backend ?? 'auto');
  const spec = BACKBONE_SPECS[opts.id];
  if (opts.id === 'tfhub_mobilenet_v2' && opts.featureKind !== 'pooled') {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', "tfhub_mobilenet_v2 gives only the pooled feature (use --feature pooled)");
  }
  const { run, version, dispose } = await buildMapFn(opts);
  const info: BackboneInfo = {
    id: opts.id,
    version: backboneVersion(opts.id, version),
    featureKind: opts.featureKind,
    dim: featureDim(spec, opts.featureKind),
    inputSize: spec.inputSize,
    engine: 'tfjs',
    backend,
  };
  const backbone = new TfjsBackbone(info, run, opts.batchSize ?? 8, dispose);
  // warm up once so the first real call is not slow (kernel compilation, weight upload)
  await backbone.embed(new Uint8Array(spec.inputSize * spec.inputSize * 3), 1);
  return backbone;
}
