/**
 * The `onnx` engine: the converted MobileNetV2 (see convert.ts) run by onnxruntime-node.
 *
 * One InferenceSession per backbone, created once and warmed up with one dummy batch. Frames go
 * in as the caller's rgb24 bytes without a copy (uint8 tensors are views of the input; the
 * graph itself casts, scales and transposes), in batches of `batchSize` (8: larger batches did
 * not help on CPU). Session runs are serialised: a second concurrent `embed` would only fight
 * the first for the same intra-op threads.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { getLogger } from '../../config/log.js';
import { FramewiseError } from '../../errors/index.js';
import type { Backbone, BackboneInfo, FeatureKind } from '../backbone.js';
import { gridFeature } from '../grid-feature.js';
import type { NsfwjsModelName } from '../pretrained-weights.js';
import { ONNX_INPUT_NAME, ONNX_MAP_OUTPUT, ONNX_POOLED_OUTPUT } from './convert.js';
import { ensureOnnxModel, type CacheLog, type OnnxModelFile } from './onnx-cache.js';

export type OnnxProvider = 'cpu' | 'cuda' | 'auto';
export type OnnxLog = CacheLog;

export interface OnnxBackboneOptions {
  id: NsfwjsModelName;
  featureKind: FeatureKind;
  /** Holds `onnx/` with the converted models. */
  cacheDir: string;
  /** onnxruntime intra-op threads (default: os.availableParallelism()). */
  threads?: number;
  /** Frames per session run (default 8). */
  batchSize?: number;
  /** Execution provider: `cpu` (default), `cuda`, or `auto` (CUDA when it loads, else CPU). */
  provider?: OnnxProvider;
  log?: OnnxLog;
}

export const DEFAULT_ONNX_BATCH_SIZE = 8;

type OrtModule = typeof Ort;

/**
 * onnxruntime (1.2x+) starts Microsoft's 1DS telemetry with its first environment on Linux and
 * macOS; that SDK leaves an empty `/tmp/mat-debug-<pid>.log` behind for every process (and keeps
 * a device id under ~/.cache/Microsoft/DeveloperTools). The runtime reads ORT_DISABLE_TELEMETRY
 * when it creates that environment (the first session), so it is set here, before the binding is
 * loaded, unless the user set it. Not configuration of framewise: an instruction to the library.
 */
export function disableOrtTelemetry(env: NodeJS.ProcessEnv = process.env): void {
  env.ORT_DISABLE_TELEMETRY ??= '1';
}

async function loadOrt(): Promise<OrtModule> {
  disableOrtTelemetry();
  try {
    return await import('onnxruntime-node');
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `onnxruntime-node cannot be loaded (${err instanceof Error ? err.message : String(err)}); use --engine tfjs`, { cause: err });
  }
}

function defaultLog(): OnnxLog {
  return (level, msg) => getLogger()[level]({ engine: 'onnx' }, msg);
}

/**
 * Whether onnxruntime-node's CUDA provider library is installed next to its binding. The npm
 * package bundles only the CPU provider (its install script fetches CUDA on demand), and trying
 * to append a missing CUDA provider makes the native layer print an error on stderr.
 */
function cudaProviderInstalled(): boolean {
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    const dir = join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
    return existsSync(join(dir, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

function sessionOptions(threads: number, providers: readonly string[]): Ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providers,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // flush denormals to zero: measured steadier frame rates on CPU (values are unaffected at cos 1.000000)
    extra: { session: { set_denormal_as_zero: '1' } },
  };
}

async function openSession(ort: OrtModule, model: OnnxModelFile, threads: number, provider: OnnxProvider, log: OnnxLog): Promise<{ session: Ort.InferenceSession; backend: string }> {
  if (provider !== 'cpu') {
    if (!cudaProviderInstalled()) {
      log('warn', `onnx: provider '${provider}' asked for CUDA, but onnxruntime-node's CUDA provider is not installed; running on CPU`);
    } else {
      try {
        return { session: await ort.InferenceSession.create(model.path, sessionOptions(threads, ['cuda', 'cpu'])), backend: 'onnx-cuda' };
      } catch (err) {
        log('warn', `onnx: the CUDA provider failed to load (${err instanceof Error ? err.message : String(err)}); running on CPU`);
      }
    }
  }
  try {
    return { session: await ort.InferenceSession.create(model.path, sessionOptions(threads, ['cpu'])), backend: 'onnx-cpu' };
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `onnxruntime cannot open ${model.path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

class OnnxBackbone implements Backbone {
  private queue: Promise<unknown> = Promise.resolve();
  private released = false;

  constructor(
    readonly info: BackboneInfo,
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    private readonly model: OnnxModelFile,
    private readonly batchSize: number,
  ) {}

  /** One session run on n frames; returns the requested output's floats. */
  async runBatch(bytes: Uint8Array, n: number, output: string): Promise<Float32Array> {
    const s = this.info.inputSize;
    const input = new this.ort.Tensor('uint8', bytes, [n, s, s, 3]); // a view, no copy
    const result = await this.session.run({ [ONNX_INPUT_NAME]: input }, [output]);
    const t = result[output];
    if (!t || !(t.data instanceof Float32Array)) throw new FramewiseError('FW_ERR_INTERNAL', `onnx: the session returned no float '${output}' output`);
    return t.data; // a CPU tensor: plain JS memory, collected with the array
  }

  embed(frames: Uint8Array, count: number): Promise<Float32Array> {
    // checked at call time: work queued before dispose() still completes
    if (this.released) return Promise.reject(new FramewiseError('FW_ERR_INTERNAL', 'onnx backbone used after dispose()'));
    const run = this.queue.then(() => this.embedNow(frames, count));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async embedNow(frames: Uint8Array, count: number): Promise<Float32Array> {
    const { inputSize: s, dim, featureKind } = this.info;
    const frameBytes = s * s * 3;
    if (!Number.isInteger(count) || count < 0 || frames.length < count * frameBytes) {
      throw new FramewiseError('FW_ERR_INTERNAL', `embed: expected ${count} frames (${count * frameBytes} bytes), got ${frames.length} bytes`);
    }
    const out = new Float32Array(count * dim);
    const { channels, mapSize } = this.model;
    for (let start = 0; start < count; start += this.batchSize) {
      const n = Math.min(this.batchSize, count - start);
      const bytes = frames.subarray(start * frameBytes, (start + n) * frameBytes);
      if (featureKind === 'pooled') {
        out.set(await this.runBatch(bytes, n, ONNX_POOLED_OUTPUT), start * dim);
      } else {
        const map = await this.runBatch(bytes, n, ONNX_MAP_OUTPUT);
        out.set(gridFeature(map, n, mapSize, channels), start * dim);
      }
    }
    return out;
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.queue; // let a running embed finish before the session goes away
    await this.session.release();
  }
}

/** Open the onnx engine for a nsfwjs MobileNetV2 (converting it into `cacheDir` on first use). */
export async function createOnnxBackbone(opts: OnnxBackboneOptions): Promise<Backbone> {
  const log = opts.log ?? defaultLog();
  const batchSize = opts.batchSize ?? DEFAULT_ONNX_BATCH_SIZE;
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `onnx: batchSize must be a positive integer, got ${batchSize}`);
  if (!Number.isInteger(threads) || threads < 1) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `onnx: threads must be a positive integer, got ${threads}`);

  const ort = await loadOrt();
  const model = await ensureOnnxModel(opts.id, opts.cacheDir, log);
  const { session, backend } = await openSession(ort, model, threads, opts.provider ?? 'cpu', log);
  const info: BackboneInfo = {
    id: opts.id,
    version: model.version,
    featureKind: opts.featureKind,
    // pooled: C; grid: 4 cells × C/4 channel groups = C
    dim: model.channels,
    inputSize: model.inputSize,
    engine: 'onnx',
    backend,
  };
  const backbone = new OnnxBackbone(info, ort, session, model, batchSize);
  try {
    // warm-up: the first run allocates buffers and pre-packs weights; keep that out of timings
    await backbone.embed(new Uint8Array(batchSize * model.inputSize * model.inputSize * 3), batchSize);
  } catch (err) {
    await backbone.dispose();
    throw err;
  }
  log('debug', `onnx: ${opts.id} ready on ${backend} (${threads} threads, batch ${batchSize}, ${model.path})`);
  return backbone;
}
