/**
 * onnxruntime-node sessions for the converted keypoint models: the backbone's CPU session
 * options (see src/ml/onnx/onnx-backbone.ts) except that idle intra-op threads sleep instead of
 * spinning (`intra_op.allow_spinning = 0`). The streams run beside ffmpeg and the rgb backbone,
 * and on the shared 2-core machine spinning threads steal the cores the work needs: measured
 * with 5 concurrent jobs, MultiPose went from 10.8 to 24.6 frames/s and the palm detector from
 * 19.4 to 34.1. One session per model, runs serialised by the stream that owns it.
 */
import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';
import { FramewiseError } from '../../errors/index.js';

export type OrtModule = typeof Ort;

export async function loadOrt(): Promise<OrtModule> {
  try {
    return await import('onnxruntime-node');
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `onnxruntime-node cannot be loaded (${err instanceof Error ? err.message : String(err)}); use the tfjs engine`, { cause: err });
  }
}

/** Positive integer thread count (default: os.availableParallelism()). */
export function streamThreads(threads: number | undefined): number {
  const t = threads ?? availableParallelism();
  if (!Number.isInteger(t) || t < 1) throw new FramewiseError('FW_ERR_CONFIG_INVALID', `threads must be a positive integer, got ${t}`);
  return t;
}

export async function openStreamSession(ort: OrtModule, path: string, threads: number): Promise<Ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      extra: { session: { set_denormal_as_zero: '1', 'intra_op.allow_spinning': '0' } },
    });
  } catch (err) {
    throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', `onnxruntime cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The float32 data of a session output (throws FW_ERR_INTERNAL if it is missing). */
export function floatOutput(result: Ort.InferenceSession.OnnxValueMapType, name: string): Float32Array {
  const t = result[name];
  if (!t || !(t.data instanceof Float32Array)) throw new FramewiseError('FW_ERR_INTERNAL', `onnx: the session returned no float '${name}' output`);
  return t.data;
}

/** Validate a LetterboxedFrames batch against the stream's input size. */
export function checkFrames(frames: { data: Uint8Array; count: number; size: number; content: { x0: number; y0: number; w: number; h: number } }, inputSize: number, stream: string): void {
  const { data, count, size, content } = frames;
  if (size !== inputSize) throw new FramewiseError('FW_ERR_INTERNAL', `${stream} stream: frames are ${size}² but the stream takes ${inputSize}²`);
  if (!Number.isInteger(count) || count < 0 || data.length < count * size * size * 3) {
    throw new FramewiseError('FW_ERR_INTERNAL', `${stream} stream: expected ${count} frames of ${size}² rgb24 (${count * size * size * 3} bytes), got ${data.length} bytes`);
  }
  if (!(content.w > 0 && content.h > 0)) throw new FramewiseError('FW_ERR_INTERNAL', `${stream} stream: empty content rectangle`);
}
