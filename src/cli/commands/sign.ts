import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { HotPatchError, isPatchId } from '../../core/index.js';
import { importPrivateKey } from '../../crypto-agile/index.js';
import { readFileBounded } from '../../repo/index.js';
import { signPatch } from '../../verification/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';

const MAX_KEY_FILE = 64 * 1024;
const KEYID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const signCommand: Command = {
  name: 'sign',
  summary: 'add a signature to a packed patch',
  usage: `hotpatch sign --repo DIR --id ID --key DIR/KEYID.key [--keyid KEYID] [--json]

Checks that DIR/ID.bin still matches the manifest's size and hash, then signs the
DSSE PAE of the manifest with the key and adds (or replaces) the signature for
KEYID (default: the key file's name without .key).`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      key: { type: 'string' },
      keyid: { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id`);
    const keyPath = requireString(values, 'key');
    const keyid = optionalString(values, 'keyid') ?? basename(keyPath).replace(/\.key$/, '');
    if (!KEYID.test(keyid)) throw new UsageError(`key id ${JSON.stringify(keyid)} must be 1-128 of [A-Za-z0-9._:@-]; pass --keyid`);

    let keyBytes: Uint8Array;
    try {
      keyBytes = await readFileBounded(keyPath, MAX_KEY_FILE, { noFollow: false, what: 'key file' });
    } catch (error) {
      // The key file is the operator's own input: a wrong one is a usage error (exit 2).
      if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--key ${keyPath}: ${error.message}`, error.code, { cause: error });
      throw error;
    }
    const keyText = new TextDecoder().decode(keyBytes);
    const keyMode = (await stat(keyPath)).mode & 0o077;
    if (keyMode !== 0) out.warn(`${keyPath} is readable by group or others (mode ${(0o600 | keyMode).toString(8)}); keep private keys 0600`);
    let privateKey;
    try {
      privateKey = importPrivateKey(keyText);
    } catch (error) {
      if (error instanceof HotPatchError) throw new UsageError(`--key ${keyPath}: ${error.message}`);
      throw error;
    }

    const signed = await signPatch(repoDir, id, privateKey, { keyid });
    if (!signed.counts) {
      out.warn(`${keyid} is not among the manifest's signers (${signed.manifest.signers.join(', ')}); its signature will not count`);
    }
    const { replaced, signatures } = signed;

    // One line for people, the same text as the --json object's message.
    out.success(`${replaced ? 're-signed' : 'signed'} ${signed.id} as ${keyid} (${signed.alg}); ${signatures.length} signature(s) now`, {
      id: signed.id,
      keyid,
      alg: signed.alg,
      signatures,
      replaced,
    });
    return EXIT_OK;
  },
};
