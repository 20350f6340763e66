/**
 * docker-compose.yml sets only variables framewise's configuration accepts (ENV_SCHEMA), and
 * their values parse. The YAML is read with a small line reader: the `environment:` blocks and
 * the `x-*-env` anchor they merge.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_SCHEMA, loadConfig, PROJECT_ROOT } from '../../src/config/index.js';

interface EnvEntry {
  key: string;
  value: string;
  line: number;
}

/** Services that run other programs (their environment is theirs, not framewise's). */
const NOT_FRAMEWISE = new Set(['postgres']);

/** KEY: value and - KEY=value entries under `environment:` (and `x-…env…: &anchor`) blocks of framewise's services. */
function composeEnvironment(yaml: string): EnvEntry[] {
  const out: EnvEntry[] = [];
  let blockIndent: number | undefined;
  let service = '';
  yaml.split('\n').forEach((raw, i) => {
    const text = raw.replace(/\s+#.*$/, '');
    if (text.trim() === '' || text.trim().startsWith('#')) return;
    const indent = text.length - text.trimStart().length;
    if (blockIndent !== undefined && indent <= blockIndent) blockIndent = undefined;
    const name = /^ {2}([\w-]+):\s*$/.exec(text);
    if (name) service = name[1] as string;
    else if (indent === 0) service = '';
    if (NOT_FRAMEWISE.has(service)) return;
    if (/^\s*environment:\s*(&[\w-]+)?\s*$/.test(text) || /^x-[\w-]*env[\w-]*:\s*&[\w-]+\s*$/.test(text)) {
      blockIndent = indent;
      return;
    }
    if (blockIndent === undefined) return;
    const entry = text.trim();
    if (entry.startsWith('<<:')) return; // merge of an anchor, checked where it is defined
    const m = /^-\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(entry) ?? /^([A-Za-z_][A-Za-z0-9_]*):\s*(.*)$/.exec(entry);
    if (!m) throw new Error(`docker-compose.yml:${i + 1}: cannot read environment entry '${entry}'`);
    out.push({ key: m[1] as string, value: (m[2] as string).replace(/^"(.*)"$/, '$1'), line: i + 1 });
  });
  return out;
}

describe('docker-compose.yml', () => {
  it('sets only variables ENV_SCHEMA accepts, with values it accepts', async () => {
    const yaml = await readFile(join(PROJECT_ROOT, 'docker-compose.yml'), 'utf8');
    const env = composeEnvironment(yaml);
    expect(env.length).toBeGreaterThan(15);
    const known = new Set(Object.keys(ENV_SCHEMA.shape));
    for (const e of env) expect(known.has(e.key), `docker-compose.yml:${e.line}: ${e.key} is not in ENV_SCHEMA`).toBe(true);
    // values with compose interpolation (${VAR:-default}) are checked with their default
    const values = Object.fromEntries(env.map((e) => [e.key, e.value.replace(/^\$\{[A-Z_]+:-(.*)\}$/, '$1')]));
    expect(() => loadConfig(values)).not.toThrow();
  });

  it('has the services the deployment needs', async () => {
    const yaml = await readFile(join(PROJECT_ROOT, 'docker-compose.yml'), 'utf8');
    for (const s of ['redis:', 'postgres:', 'api:', 'ingest:', 'decode:', 'gpu-worker:', 'cpu-worker:']) expect(yaml).toMatch(new RegExp(`^  ${s}`, 'm'));
    expect(yaml).toMatch(/pg_isready/);
    expect(yaml).toMatch(/postgres-data:\/var\/lib\/postgresql\/data/);
    expect(yaml).toMatch(/--appendonly", "yes"/);
    expect(yaml).toMatch(/driver: nvidia/);
    expect(yaml).toMatch(/profiles: \["cpu"\]/);
  });

  it('the reader rejects what it cannot read and ignores other blocks', () => {
    expect(composeEnvironment('services:\n  a:\n    environment:\n      - FOO=1\n      BAR: "2"\n    command: ["x"]\n')).toEqual([
      { key: 'FOO', value: '1', line: 4 },
      { key: 'BAR', value: '2', line: 5 },
    ]);
    expect(() => composeEnvironment('environment:\n  - not an entry\n')).toThrow(/cannot read/);
  });
});
