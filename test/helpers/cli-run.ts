/**
 * The CLI run in this process (`main` with string sinks), and its JSON Lines output parsed with
 * every line checked against the v1 result schema.
 */
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { assertValidResult } from '../../src/jobs/result-schema.js';

/** Run `framewise ARGS… --json --log-level warn EXTRA…` in this process. */
export async function runCliInProcess(args: string[], extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (add: (s: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        add(chunk.toString());
        cb();
      },
    });
  const code = await main(['node', 'framewise', ...args, '--json', '--log-level', 'warn', ...extra], {
    stdout: sink((s) => (stdout += s)),
    stderr: sink((s) => (stderr += s)),
  });
  return { code, stdout, stderr };
}

/** The JSON lines of `stdout`, each checked against the result schema. */
export function resultLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>;
      assertValidResult(r);
      return r;
    });
}
