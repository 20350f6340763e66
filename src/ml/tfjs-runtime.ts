/**
 * TensorFlow.js and its backend, chosen once per process.
 *
 * `auto` tries `tensorflow` (tfjs-node-gpu, then tfjs-node: optional packages whose install
 * downloads libtensorflow and so often is absent), then `wasm` (SIMD), then `cpu` with a warning
 * (~0.7 frames/s for MobileNetV2: unusable for the backbone, fine for the small temporal head).
 */
import * as tf from '@tensorflow/tfjs';
import { FramewiseError } from '../errors/index.js';
import type { TfjsBackendChoice } from '../config/index.js';
import { getLogger } from '../config/log.js';

export { tf };

let chosen: Promise<string> | undefined;

async function tryNative(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
    } catch {
      /* not installed or not loadable: try the next */
    }
  }
  return undefined;
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

async function select(choice: TfjsBackendChoice): Promise<string> {
  const log = getLogger();
  if (choice === 'tensorflow' || choice === 'auto') {
    const pkg = await tryNative();
    if (pkg) {
      await tf.ready();
      log.info({ backend: 'tensorflow', package: pkg }, 'tfjs backend');
      return 'tensorflow';
    }
    if (choice === 'tensorflow') {
      throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', "tfjs backend 'tensorflow' requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node can be loaded");
    }
  }
  if (choice === 'wasm' || choice === 'auto') {
    if (await tryWasm()) {
      await tf.ready();
      log.info({ backend: 'wasm' }, 'tfjs backend');
      return 'wasm';
    }
    if (choice === 'wasm') throw new FramewiseError('FW_ERR_BACKBONE_UNAVAILABLE', "tfjs backend 'wasm' requested but @tensorflow/tfjs-backend-wasm cannot be loaded");
  }
  await tf.setBackend('cpu');
  await tf.ready();
  if (choice === 'auto') log.warn({ backend: 'cpu' }, 'tfjs falls back to the pure-JS cpu backend: the backbone will run at about 0.7 frames/s');
  else log.info({ backend: 'cpu' }, 'tfjs backend');
  return 'cpu';
}

/**
 * Set the TensorFlow.js backend once per process and return its name. Later calls return the
 * first choice (one process has one backend).
 */
export function initTfjs(choice: TfjsBackendChoice = 'auto'): Promise<string> {
  if (!chosen) {
    chosen = select(choice);
    chosen.catch(() => {
      chosen = undefined;
    });
  }
  return chosen;
}
