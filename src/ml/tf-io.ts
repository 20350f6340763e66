/** Reading a tfjs model (model.json + weight shards) from a local folder. tfjs' own file:// handler exists only in tfjs-node. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tf } from './tfjs-runtime.js';

export function folderLoader(dir: string): tf.io.IOHandler {
  return {
    async load() {
      const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as {
        modelTopology: tf.io.ModelArtifacts['modelTopology'];
        weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
        format?: string;
      };
      const parts: Buffer[] = [];
      for (const g of json.weightsManifest) for (const p of g.paths) parts.push(await readFile(join(dir, p)));
      const all = Buffer.concat(parts);
      const artifacts: tf.io.ModelArtifacts = {
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer,
      };
      if (json.format !== undefined) artifacts.format = json.format;
      return artifacts;
    },
  };
}
