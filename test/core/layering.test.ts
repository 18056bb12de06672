import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

// Imports flow downward only (README "Project layout"). A module may import modules listed
// before it, never after; the folder order is the contract.
const LAYERS = ['core', 'stats', 'crypto-agile', 'repo', 'verification', 'security', 'rollback', 'installer', 'zero-downtime', 'observability', 'orchestration', 'distributed', 'agent', 'cli'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('every src module imports only modules of lower layers', () => {
  const problems: string[] = [];
  for (const layer of LAYERS) {
    for (const file of files(join('src', layer))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/from '\.\.\/(?:\.\.\/)?([a-z-]+)\/[^']*'/g)) {
        const imported = m[1]!;
        if (!LAYERS.includes(imported)) continue;
        if (LAYERS.indexOf(imported) > LAYERS.indexOf(layer)) problems.push(`${file} imports ${imported}`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('every src folder is placed in the layer order', () => {
  const folders = readdirSync('src').filter((n) => statSync(join('src', n)).isDirectory());
  assert.deepEqual(folders.filter((f) => !LAYERS.includes(f)), []);
});
