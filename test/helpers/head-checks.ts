/** Checks shared by the head tests on synthetic two-class sequences. */
import { createHash } from 'node:crypto';

/** Share of rows whose larger of the two class probabilities is the label's. */
export const binaryAccuracy = (probs: Float32Array[], labels: number[]): number => probs.filter((p, i) => ((p[1] as number) > (p[0] as number) ? 1 : 0) === labels[i]).length / probs.length;

/** sha256 of the rows' bytes: equal digests, bit-identical predictions. */
export const rowsDigest = (rows: Float32Array[]): string => createHash('sha256').update(Buffer.concat(rows.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength)))).digest('hex');
