#!/usr/bin/env node
// Builds the example patch into one self-contained ES module, the form a payload must take:
// the service imports it from its staging directory, where nothing but `node:` built-ins
// can be resolved (there is no node_modules beside it, and no sibling files).
//
//   node examples/patch/build.mjs [ENTRY.ts] [--out FILE]   (defaults: patch.ts → dist/examples/patch/patch.mjs)
//   node examples/patch/build.mjs --check BUNDLE.mjs         (only the import check, e.g. on esbuild's output)
//
// A real project bundles, so a patch may use libraries and several files:
//   esbuild patch.ts --bundle --format=esm --platform=node --outfile=patch.mjs
// This repository has no bundler among its dependencies, so the example is written as one
// file and this script does the rest of a bundler's job: it strips the types with the
// TypeScript compiler (types are checked by `tsc -p .`, which `npm test` runs; this step does
// not check them) and refuses output that still imports anything other than `node:` built-ins
// — what a bundle would have inlined. --check runs that check alone, e.g. on an esbuild bundle.
//
// Prints one JSON line {"ok":true,"out":…,"bytes":N,"sha256":…}; exit 1 when an import
// remains ({"ok":false,"problems":[…]}), 2 on bad arguments.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url));

/** Every module specifier `code` loads, or a problem when one cannot be known statically. */
function importsOf(code, fileName = 'patch.mjs') {
  const file = ts.createSourceFile(fileName, code, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const found = [];
  const at = (node) => `${fileName}:${file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1}`;
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      found.push({ specifier: node.moduleSpecifier.text, where: at(node) });
    } else if (ts.isCallExpression(node)) {
      const dynamic = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      const required = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      if (dynamic || required) {
        const [arg] = node.arguments;
        const specifier = arg !== undefined && ts.isStringLiteralLike(arg) ? arg.text : undefined;
        found.push({ specifier, where: at(node), kind: dynamic ? 'import()' : 'require()' });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

/** What keeps `code` from being a self-contained payload (empty: nothing). */
function payloadProblems(code, fileName) {
  return importsOf(code, fileName)
    .filter((i) => i.specifier === undefined || !i.specifier.startsWith('node:'))
    .map((i) =>
      i.specifier === undefined
        ? `${i.where}: a computed ${i.kind} cannot be checked; import what you need statically`
        : `${i.where}: imports ${JSON.stringify(i.specifier)}; a payload may import node: built-ins only (bundle the rest)`,
    );
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { out: { type: 'string' }, check: { type: 'boolean' } } });
  } catch (error) {
    console.error(`build.mjs: ${error.message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) {
    console.error('usage: node build.mjs [ENTRY.ts] [--out FILE] | node build.mjs --check FILE.mjs');
    return 2;
  }
  const entry = resolve(positionals[0] ?? join(here, 'patch.ts'));
  const source = await readFile(entry, 'utf8');
  let code = source;
  if (values.check !== true) {
    const result = ts.transpileModule(source, {
      fileName: entry,
      reportDiagnostics: true,
      // Types are erased; `import type` lines disappear, any other import is kept as written.
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, sourceMap: false },
    });
    const errors = (result.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    if (errors.length > 0) {
      console.log(JSON.stringify({ ok: false, problems: errors }));
      return 1;
    }
    code = result.outputText;
  }
  const problems = payloadProblems(code, entry);
  if (problems.length > 0) {
    console.log(JSON.stringify({ ok: false, problems }));
    return 1;
  }
  const bytes = Buffer.from(code, 'utf8');
  // The default output sits under dist/ (never committed) rather than beside the source.
  const out = values.check === true ? entry : resolve(values.out ?? join(here, '..', '..', 'dist', 'examples', 'patch', 'patch.mjs'));
  if (values.check !== true) {
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, bytes);
  }
  console.log(JSON.stringify({ ok: true, out, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') }));
  return 0;
}

process.exitCode = await main();
