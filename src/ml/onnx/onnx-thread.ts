/**
 * An onnxruntime session in its own thread. onnxruntime-node's `session.run` computes on the
 * calling thread: on the main thread it holds the event loop for the whole run, so decoders
 * (ffmpeg pipes), hashing and process spawns wait for every embed. Here the session lives in a
 * worker thread; the main thread only posts the frames and receives the floats. Same session
 * options, same library, same results bit for bit.
 *
 * The worker is plain CommonJS evaluated from a string (so the same code runs from the compiled
 * build and from the TypeScript sources under the test runner); it loads onnxruntime-node from
 * the path resolved here. It does not keep the process alive while no run is pending.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { FramewiseError } from '../../errors/index.js';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
let session;
parentPort.on('message', async (m) => {
  try {
    if (m.type === 'open') {
      session = await ort.InferenceSession.create(m.path, m.options);
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.type === 'run') {
      const r = await session.run({ [m.input]: new ort.Tensor('uint8', m.bytes, m.dims) }, [m.output]);
      const t = r[m.output];
      if (!t || !(t.data instanceof Float32Array)) throw new Error("the session returned no float '" + m.output + "' output");
      const data = new Float32Array(t.data);
      parentPort.postMessage({ id: m.id, ok: true, data }, [data.buffer]);
    } else if (m.type === 'release') {
      if (session) await session.release();
      session = undefined;
      parentPort.postMessage({ id: m.id, ok: true });
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, message: (e && e.message) || String(e) });
  }
});
`;

interface Reply {
  id: number;
  ok: boolean;
  data?: Float32Array;
  message?: string;
}

/** A session run on uint8 frames: `bytes` shaped `dims`, the floats of `output`. */
export interface FrameSession {
  run(input: string, bytes: Uint8Array, dims: number[], output: string): Promise<Float32Array>;
  release(): Promise<void>;
}

export class ThreadSession implements FrameSession {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private failed: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.unref();
    worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) worker.unref();
      p.resolve(r);
    });
    const fail = (e: Error): void => {
      this.failed = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', (e) => fail(e));
    worker.on('exit', (code) => fail(new Error(`the onnxruntime thread exited (code ${code})`)));
  }

  /** Start the thread and open the model there; rejects with the session's own error message. */
  static async open(modelPath: string, options: Record<string, unknown>): Promise<ThreadSession> {
    const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
    // the source is CommonJS: a parent started with `--input-type=module` (e.g. `node -e` as ESM)
    // must not pass that flag on to the thread, which would read the string as a module
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const s = new ThreadSession(new Worker(WORKER_SOURCE, { eval: true, execArgv, workerData: { ortPath } }));
    try {
      await s.call({ type: 'open', path: modelPath, options });
    } catch (err) {
      await s.worker.terminate();
      throw err;
    }
    return s;
  }

  private call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...msg, id }, transfer);
    }).then((r) => {
      if (!r.ok) throw new Error(r.message ?? 'onnxruntime failed');
      return r;
    });
  }

  async run(input: string, bytes: Uint8Array, dims: number[], output: string): Promise<Float32Array> {
    // a copy of just these frames, moved (not cloned) to the thread; never `slice()`, which
    // on a Buffer is a view, and moving its memory would empty the caller's frames
    const own = new Uint8Array(bytes);
    const r = await this.call({ type: 'run', input, bytes: own, dims, output }, [own.buffer]);
    if (!(r.data instanceof Float32Array)) throw new FramewiseError('FW_ERR_INTERNAL', `onnx: the session returned no float '${output}' output`);
    return r.data;
  }

  async release(): Promise<void> {
    try {
      if (!this.failed) await this.call({ type: 'release' });
    } finally {
      await this.worker.terminate();
    }
  }
}
