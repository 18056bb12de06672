import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

// Imports flow downward only (docs/ARCHITECTURE.md "Layering"). A module may import modules
// listed before it, never after; the folder order is the contract. The imports are read by
// the TypeScript compiler's own parser — static imports, re-exports, `import type` and
// dynamic `import()` alike — and another module is reached only through its index.
const LAYERS = [
  'core',
  'stats',
  'crypto-agile',
  'keys',
  'repo',
  'verification',
  'security',
  'rollback',
  'installer',
  'zero-downtime',
  'observability',
  'orchestration',
  'distributed',
  'agent',
  'cli',
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports, re-exports or loads with import(), with its line. */
function importsOf(file: string): { specifier: string; line: number; dynamic: boolean }[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: { specifier: string; line: number; dynamic: boolean }[] = [];
  const add = (node: ts.Node, literal: ts.Expression | undefined, dynamic: boolean): void => {
    if (literal !== undefined && ts.isStringLiteralLike(literal)) {
      out.push({ specifier: literal.text, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, dynamic });
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, false);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0], true);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal, true);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** The src module (layer folder) a relative specifier from `file` lands in, and the path inside it. */
function target(file: string, specifier: string): { module: string; inside: string } | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const parts = relative(resolve('src'), resolve(dirname(file), specifier)).split(sep);
  if (parts[0] === '..' || parts.length < 2) return undefined;
  return { module: parts[0]!, inside: parts.slice(1).join('/') };
}

test('every src module imports only modules of lower layers, through their index, dynamic imports included', () => {
  const problems: string[] = [];
  for (const layer of LAYERS) {
    for (const file of files(join('src', layer))) {
      for (const { specifier, line, dynamic } of importsOf(file)) {
        const t = target(file, specifier);
        if (t === undefined || t.module === layer) continue;
        if (!LAYERS.includes(t.module)) {
          problems.push(`${file}:${line} imports ${specifier}, outside the layered modules`);
          continue;
        }
        if (LAYERS.indexOf(t.module) > LAYERS.indexOf(layer))
          problems.push(`${file}:${line} imports ${t.module} (a higher layer)${dynamic ? ' with import()' : ''}`);
        if (t.inside !== 'index.js') problems.push(`${file}:${line} imports ${specifier}: past ${t.module}'s index`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('the import reader sees static, re-exported, type-only and dynamic imports', () => {
  const all = files('src').flatMap((f) => importsOf(f));
  assert.ok(
    all.some((i) => i.dynamic && i.specifier === './etcd-store.js'),
    'the lazy etcd import is read',
  );
  assert.ok(all.some((i) => !i.dynamic && i.specifier === '../core/index.js'));
});

test('every src folder is placed in the layer order', () => {
  const folders = readdirSync('src').filter((n) => statSync(join('src', n)).isDirectory());
  assert.deepEqual(
    folders.filter((f) => !LAYERS.includes(f)),
    [],
  );
});
