import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HotPatchError } from '../../core/index.js';
import { parseCommandArgs } from '../args.js';
import { EXIT_OK } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { Output } from '../output.js';
import { keygenCommand } from './keygen.js';
import { packCommand } from './pack.js';
import { signCommand } from './sign.js';
import { verifyCommand } from './verify.js';

/**
 * The sign-and-verify walkthrough: real keys, a real repository on disk, real signatures,
 * then two attacks that must be refused. Runs the CLI commands themselves in-process, so
 * what it shows is exactly what an operator would type.
 */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'walk through keygen, pack, sign and verify, then two refused attacks',
  usage: `hotpatch demo [--keep] [--json]

In a temporary directory: creates three keys (Ed25519, ECDSA P-256, ML-DSA-65), a
2-of-3 trust store, packs a payload for xps.crypto.hash.sha256, signs it with two
keys, verifies it, then shows a tampered payload (HASH_MISMATCH) and a patch with one
signature (THRESHOLD_NOT_MET) being refused. --keep leaves the directory in place.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, { keep: { type: 'boolean' } });
    if (help) return printHelp(out, this.usage);
    const dir = await mkdtemp(join(tmpdir(), 'hotpatch-demo-'));
    const quiet = new Output(true, { stdout: { write: () => true } as unknown as NodeJS.WritableStream, stderr: process.stderr });
    const step = async (title: string, command: Command, args: string[], expectCode?: string): Promise<void> => {
      out.line(`\n$ hotpatch ${command.name} ${args.join(' ')}`);
      const shown = new Output(false, { stdout: { write: (s: string) => (out.line(`  ${s.trimEnd().replace(/\n/g, '\n  ')}`), true) } as unknown as NodeJS.WritableStream, stderr: process.stderr });
      try {
        await command.run(args, out.json ? quiet : shown);
        if (expectCode !== undefined) throw new HotPatchError('INVALID', `demo step "${title}" was accepted but must be refused with ${expectCode}`);
      } catch (error) {
        if (expectCode === undefined || !(error instanceof HotPatchError) || error.code !== expectCode) throw error;
        out.line(`  refused as expected: ${error.code}: ${error.message}`);
      }
    };
    try {
      const keys = join(dir, 'keys');
      const repo = join(dir, 'repo');
      out.line(`working in ${dir}`);
      await step('key 1', keygenCommand, ['--alg', 'ed25519', '--out', keys, '--name', 'team-key-1']);
      await step('key 2', keygenCommand, ['--alg', 'ecdsa-p256-sha256', '--out', keys, '--name', 'build-bot']);
      await step('key 3', keygenCommand, ['--alg', 'ml-dsa-65', '--out', keys, '--name', 'pq-officer']);
      const trust = {
        keys: {
          'team-key-1': { alg: 'ed25519', public_key: await readFile(join(keys, 'team-key-1.pub'), 'utf8'), targets: ['xps.crypto.*'] },
          'build-bot': { alg: 'ecdsa-p256-sha256', public_key: await readFile(join(keys, 'build-bot.pub'), 'utf8') },
          'pq-officer': { alg: 'ml-dsa-65', public_key: await readFile(join(keys, 'pq-officer.pub'), 'utf8') },
        },
        threshold: 2,
      };
      const trustPath = join(dir, 'trust.json');
      await writeFile(trustPath, JSON.stringify(trust, null, 2));
      out.line(`\nwrote ${trustPath}: 3 keys, threshold 2`);
      const payload = join(dir, 'sha256-fix.mjs');
      await writeFile(
        payload,
        "import { createHash } from 'node:crypto';\nexport const api = { digest: (data) => createHash('sha256').update(data).digest() };\nexport function selfTest() { if (api.digest('abc').toString('hex') !== 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') throw new Error('KAT failed'); }\n",
      );
      const pack = ['--repo', repo, '--target', 'xps.crypto.hash.sha256', '--version', '1.2.3', '--type', 'esm', '--payload', payload, '--meta', 'ticket=SEC-1234'];
      await step('pack', packCommand, [...pack, '--id', 'hotfix-sha256']);
      await step('sign 1', signCommand, ['--repo', repo, '--id', 'hotfix-sha256', '--key', join(keys, 'team-key-1.key')]);
      await step('sign 2', signCommand, ['--repo', repo, '--id', 'hotfix-sha256', '--key', join(keys, 'pq-officer.key')]);
      await step('verify', verifyCommand, ['--repo', repo, '--id', 'hotfix-sha256', '--trust', trustPath]);

      out.line('\nattack 1: someone swaps the payload after signing (same size, sha512 instead of sha256)');
      await writeFile(join(repo, 'hotfix-sha256.bin'), (await readFile(payload, 'utf8')).replace('sha256', 'sha512'));
      await step('verify tampered', verifyCommand, ['--repo', repo, '--id', 'hotfix-sha256', '--trust', trustPath], 'HASH_MISMATCH');

      out.line('\nattack 2: a patch signed by one key only');
      await step('pack 2', packCommand, [...pack, '--id', 'lone-signer']);
      await step('sign lone', signCommand, ['--repo', repo, '--id', 'lone-signer', '--key', join(keys, 'build-bot.key')]);
      await step('verify lone', verifyCommand, ['--repo', repo, '--id', 'lone-signer', '--trust', trustPath], 'THRESHOLD_NOT_MET');
      out.success('demo finished: 1 patch verified, 2 attacks refused', { dir: values.keep === true ? dir : undefined });
      return EXIT_OK;
    } finally {
      if (values.keep !== true) await rm(dir, { recursive: true, force: true });
    }
  },
};
