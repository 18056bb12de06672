/*
 * What pack and sign print, line by line (each said once), and every command's --help laid out
 * within 100 columns with its synopsis aligned.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HELP_WIDTH, formatHelp, formatTable } from '../../src/cli/help-format.js';
import { hotpatch } from './run-cli.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-lines-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lines = (text: string): string[] => text.trimEnd().split('\n');

test('pack prints its headline once, then the hash and expiry; sign prints one line; with --json only the object', async () => {
  const payload = join(dir, 'p.mjs');
  const source = 'export const api = { f: () => 1 };\n';
  await writeFile(payload, source);
  const hash = createHash('sha256').update(source).digest('hex');
  const repo = join(dir, 'repo');
  assert.equal(hotpatch(['keygen', '--alg', 'ed25519', '--out', join(dir, 'keys'), '--name', 'k1']).status, 0);
  const pack = [
    'pack',
    '--repo',
    repo,
    '--id',
    'p1',
    '--target',
    'xps.a',
    '--version',
    '1.0.0',
    '--type',
    'esm',
    '--payload',
    payload,
    '--created-at',
    '2030-01-01T00:00:00Z',
    '--expires',
    '2030-02-01T00:00:00Z',
  ];

  const packed = hotpatch(pack);
  assert.equal(packed.status, 0, packed.stderr);
  assert.deepEqual(lines(packed.stdout), [
    `packed p1 into ${repo}: xps.a 1.0.0 (esm, ${Buffer.byteLength(source)} bytes), unsigned: run hotpatch sign`,
    `payload_hash: sha256:${hash}`,
    'expires:      2030-02-01T00:00:00Z',
  ]);
  assert.equal(packed.stderr, '');

  const signed = hotpatch(['sign', '--repo', repo, '--id', 'p1', '--key', join(dir, 'keys', 'k1.key')]);
  assert.equal(signed.status, 0, signed.stderr);
  assert.deepEqual(lines(signed.stdout), ['signed p1 as k1 (ed25519); 1 signature(s) now']);
  const again = hotpatch(['sign', '--repo', repo, '--id', 'p1', '--key', join(dir, 'keys', 'k1.key'), '--json']);
  assert.equal(lines(again.stdout).length, 1, again.stdout);
  assert.equal(again.json?.message, 're-signed p1 as k1 (ed25519); 1 signature(s) now');
  assert.equal(again.json?.replaced, true);

  // Another key given k1's id does not silently replace k1's valid signature (exit 2, nothing
  // written); --replace-other-key does it on purpose.
  assert.equal(hotpatch(['keygen', '--alg', 'ecdsa-p256-sha256', '--out', join(dir, 'keys'), '--name', 'k2']).status, 0);
  const envelopeBefore = await readFile(join(repo, 'p1.json'), 'utf8');
  const wrongKey = hotpatch(['sign', '--repo', repo, '--id', 'p1', '--key', join(dir, 'keys', 'k2.key'), '--keyid', 'k1', '--json']);
  assert.equal(wrongKey.status, 2, wrongKey.stdout);
  assert.match(String(wrongKey.json?.message), /^--keyid k1: p1 already carries a signature by k1 that this ecdsa-p256-sha256 key did not make/);
  assert.equal(await readFile(join(repo, 'p1.json'), 'utf8'), envelopeBefore);
  const onPurpose = hotpatch(['sign', '--repo', repo, '--id', 'p1', '--key', join(dir, 'keys', 'k2.key'), '--keyid', 'k1', '--replace-other-key', '--json']);
  assert.equal(onPurpose.status, 0, onPurpose.stdout);
  assert.equal(onPurpose.json?.message, 're-signed p1 as k1 (ecdsa-p256-sha256); 1 signature(s) now');

  const packedJson = hotpatch([...pack, '--force', '--json']);
  assert.equal(lines(packedJson.stdout).length, 1, packedJson.stdout);
  assert.equal(packedJson.json?.payload_hash, `sha256:${hash}`);
  assert.match(String(packedJson.json?.message), /^packed p1 into .*, unsigned: run hotpatch sign$/);
});

/** Every command and subcommand's --help, by its argv. */
function helpCommands(): string[][] {
  const top = hotpatch(['--help']);
  assert.equal(top.status, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1]!);
  assert.ok(names.includes('trust') && names.includes('fleet') && names.length >= 18, names.join(' '));
  return [['--help'], ...names.map((n) => [n, '--help']), ['fleet', 'rollout', '--help'], ['audit', 'verify', '--help'], ['trust', 'rotate', '--help']];
}

test("every command's --help fits in 100 columns, and each synopsis continues under its first option", () => {
  for (const argv of helpCommands()) {
    const r = hotpatch(argv);
    assert.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
    const text = lines(r.stdout);
    for (const line of text) assert.ok([...line].length <= HELP_WIDTH, `${argv.join(' ')}: ${[...line].length} columns: ${line}`);
    if (argv[0] === '--help') continue;
    // The synopsis: from the first line to the first blank one.
    const synopsis = text.slice(0, text.indexOf('') === -1 ? text.length : text.indexOf(''));
    const starts = synopsis.filter((l) => l.startsWith('hotpatch ')).map((l) => /^hotpatch(?: [a-z][a-z-]*)+ +(?=[-[(A-Z])/.exec(l)?.[0].length);
    assert.ok(
      starts.every((s) => s !== undefined && s === starts[0]),
      `${argv.join(' ')}: forms start their options at one column: ${starts.join(', ')}`,
    );
    for (const l of synopsis.filter((x) => !x.startsWith('hotpatch '))) {
      assert.equal(/^ */.exec(l)![0].length, starts[0], `${argv.join(' ')}: continuation aligned: ${l}`);
    }
  }
});

test('formatHelp keeps a flag with its value and a bracketed group whole, and wraps long table rows under their column', () => {
  const usage = `hotpatch demo-cmd --alpha VALUE [--bravo B] (--charlie C | --delta D) ${'[--echo E] '.repeat(12).trim()}

A paragraph that is short stays as written.
Its second line too.

  --flag X      ${'word '.repeat(30).trim()}`;
  const out = formatHelp(usage, 60).split('\n');
  assert.equal(out[0], 'hotpatch demo-cmd --alpha VALUE [--bravo B]');
  assert.equal(out[1], '                  (--charlie C | --delta D) [--echo E]');
  assert.equal(out[2], '                  [--echo E] [--echo E] [--echo E]');
  assert.ok(
    out.every((l) => [...l].length <= 60),
    out.join('\n'),
  );
  assert.ok(out.includes('A paragraph that is short stays as written.'));
  assert.ok(out.includes('Its second line too.'));
  const row = out.slice(out.findIndex((l) => l.startsWith('  --flag X')));
  assert.ok(row.length > 1 && row.slice(1).every((l) => l.startsWith(' '.repeat(16) + 'word')), row.join('\n'));
  assert.equal(
    formatTable(
      [
        ['a', 'one two three'],
        ['long', 'x'],
      ],
      12,
    ),
    '  a     one\n        two\n        three\n  long  x',
  );
});
