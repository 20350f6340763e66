/**
 * Which server paths the API may read: only files below FRAMEWISE_PATH_ROOTS, judged on the real
 * path (symlinks and `..` resolved), so neither traversal nor a symlink leads outside. A path
 * outside the roots is refused (403) whether or not it exists, so the API does not reveal what
 * exists elsewhere.
 */
import { realpath } from 'node:fs/promises';
import { isAbsolute, resolve, sep } from 'node:path';
import { FramewiseError } from '../errors/index.js';
import type { PathGuard } from '../jobs/queue/batches.js';

/** Whether `p` is `root` or below it (both real, absolute paths). */
export const isWithin = (p: string, root: string): boolean => p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);

/** A guard for these roots; relative paths are taken relative to the first root. */
export function createPathGuard(roots: readonly string[]): PathGuard {
  let realRoots: Promise<string[]> | undefined;
  const getRealRoots = (): Promise<string[]> => {
    realRoots ??= Promise.all(roots.map((r) => realpath(r).catch(() => undefined))).then((rs) => rs.filter((r): r is string => r !== undefined));
    return realRoots;
  };
  return async (given: string) => {
    if (roots.length === 0) throw new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'reading server paths is disabled (FRAMEWISE_PATH_ROOTS is not set)');
    if (given.includes('\0')) throw new FramewiseError('FW_ERR_PATH_FORBIDDEN', 'invalid path');
    const real = await getRealRoots();
    const lexical = isAbsolute(given) ? resolve(given) : resolve(roots[0] as string, given);
    const forbidden = (): FramewiseError => new FramewiseError('FW_ERR_PATH_FORBIDDEN', `${given} is outside the allowed roots (FRAMEWISE_PATH_ROOTS)`);
    if (![...roots, ...real].some((r) => isWithin(lexical, r))) throw forbidden();
    let target: string;
    try {
      target = await realpath(lexical);
    } catch (err) {
      throw new FramewiseError('FW_ERR_INPUT_NOT_FOUND', `no such file or folder: ${given}`, { cause: err });
    }
    if (!real.some((r) => isWithin(target, r))) throw forbidden();
    return target;
  };
}
