/**
 * `mkdir -p` that reports the real cause. Node's recursive `mkdir` answers ENOENT when a folder
 * cannot be created on a read-only file system (EROFS is not passed on), which would hide the
 * storage error; on ENOENT the first missing folder is created on its own, which fails with the
 * real code.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function makeDir(path: string): Promise<void> {
  try {
    await mkdir(path, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    let missing = path;
    for (let parent = dirname(missing); parent !== missing; missing = parent, parent = dirname(parent)) {
      if (await stat(parent).then(() => true, () => false)) break;
    }
    await mkdir(missing); // throws the real error (EROFS, EACCES, ENOSPC…)
    await mkdir(path, { recursive: true }); // it could be made after all: finish
  }
}
