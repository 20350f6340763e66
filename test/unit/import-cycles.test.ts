/**
 * The library's modules import one another without cycles: every value import (`import … from`,
 * `export … from`; type-only imports are erased and do not count) of `src/` forms a DAG. Dynamic
 * `import()` is not counted: it is how a factory loads a heavy runtime on demand.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/index.js';

const SRC = join(PROJECT_ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Relative value imports of a module's text, as paths of .ts files. */
export function valueImports(file: string, text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?'(\.[^']+)'/gm;
  for (const m of text.matchAll(re)) {
    if (m[1]) continue;
    out.push(normalize(join(dirname(file), (m[2] as string).replace(/\.js$/, '.ts'))));
  }
  return out;
}

/** Strongly connected components with more than one module (Tarjan). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) found.push(c.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('import graph of src/', () => {
  it('the cycle finder finds a cycle, and ignores type-only imports', () => {
    const a = join(SRC, 'a.ts');
    const b = join(SRC, 'b.ts');
    expect(valueImports(a, "import { x } from './b.js';\nimport type { Y } from './c.js';\nexport { z } from './d.js';")).toEqual([b, join(SRC, 'd.ts')]);
    expect(cycles(new Map([[a, [b]], [b, [a]]]))).toEqual([[a, b]]);
    expect(cycles(new Map([[a, [b]], [b, []]]))).toEqual([]);
  });

  it('has no cycles', () => {
    const files = sources(SRC);
    const graph = new Map(files.map((f) => [f, valueImports(f, readFileSync(f, 'utf8'))]));
    expect(graph.size).toBeGreaterThan(100);
    expect(cycles(graph).map((c) => c.map((f) => relative(PROJECT_ROOT, f)))).toEqual([]);
  });
});
