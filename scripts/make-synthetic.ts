/**
 * Write a labelled set of synthetic camera-motion clips and its manifest:
 *   node dist/scripts/make-synthetic.js --out DIR --per-class N [--seed BASE]
 * Clips are DIR/<motion>/<motion>-<k>.mp4; DIR/manifest.csv lists path,label. Clip k of every
 * motion shares its scene, colours, rate and length (the same seed): only the motion differs,
 * so a model must learn the direction of change rather than recognise scenery.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MOTIONS, makeClip, randomClipSpec } from '../src/media/synthetic.js';

const { values } = parseArgs({ options: { out: { type: 'string' }, 'per-class': { type: 'string', default: '10' }, seed: { type: 'string', default: '1000' } } });
if (!values.out) throw new Error('--out DIR is required');
const out = values.out;
const perClass = Number(values['per-class']);
const seed = Number(values.seed);
const rows = ['path,label'];
for (const motion of MOTIONS) {
  for (let k = 0; k < perClass; k++) {
    const rel = join(motion, `${motion}-${String(k).padStart(3, '0')}.mp4`);
    await makeClip(randomClipSpec(motion, seed + k), join(out, rel));
    rows.push(`${rel},${motion}`);
  }
  process.stderr.write(`${motion}: ${perClass} clips\n`);
}
await writeFile(join(out, 'manifest.csv'), `${rows.join('\n')}\n`);
