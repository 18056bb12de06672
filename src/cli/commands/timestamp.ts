import { isPatchId } from '../../core/index.js';
import { readFileBounded } from '../../repo/index.js';
import { timestampPatch } from '../../verification/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { loadTrustStore } from '../config-files.js';

export const timestampCommand: Command = {
  name: 'timestamp',
  summary: "add RFC 3161 timestamps to a packed patch's signatures",
  usage: `hotpatch timestamp --repo DIR --id ID --tsa URL [--keyid KEYID] [--trust FILE] [--json]
hotpatch timestamp --repo DIR --id ID --reply FILE --keyid KEYID [--trust FILE] [--json]

Asks the time-stamping authority at URL (RFC 3161 over HTTP) for a token over each
signature of DIR/ID.json that has none (or only KEYID's), and stores it beside the
signature; or stores a reply (or bare token) obtained already, e.g. with openssl ts.
A timestamp proves when a signature existed: a signature made before its key was
revoked (or expired) keeps counting, one made after does not. With --trust, each token
must verify against the trust store's timestamping authorities before it is written.
The envelope is replaced atomically; nothing is written on any failure.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      tsa: { type: 'string' },
      reply: { type: 'string' },
      keyid: { type: 'string' },
      trust: { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id`);
    const tsaUrl = optionalString(values, 'tsa');
    const replyFile = optionalString(values, 'reply');
    const keyid = optionalString(values, 'keyid');
    if ((tsaUrl === undefined) === (replyFile === undefined)) throw new UsageError('give --tsa URL or --reply FILE, one of the two');
    if (replyFile !== undefined && keyid === undefined) throw new UsageError('--reply timestamps one signature: name it with --keyid');
    const trustFile = optionalString(values, 'trust');
    const trust = trustFile === undefined ? undefined : await loadTrustStore(trustFile);
    const reply = replyFile === undefined ? undefined : await readFileBounded(replyFile, 256 * 1024, { noFollow: false, what: 'timestamp reply' });
    const done = await timestampPatch(repoDir, id, {
      ...(tsaUrl === undefined ? {} : { tsaUrl }),
      ...(reply === undefined ? {} : { reply }),
      ...(keyid === undefined ? {} : { keyid }),
      ...(trust === undefined ? {} : { trust }),
    });
    for (const d of done) out.line(`${d.keyid}: timestamped${d.info === undefined ? '' : ` at ${new Date(d.info.genTime).toISOString()} by ${d.info.tsa}`}`);
    out.success(`timestamped ${done.length} signature(s) of ${id}`, {
      id,
      timestamps: done.map((d) => ({
        keyid: d.keyid,
        ...(d.info === undefined ? {} : { at: new Date(d.info.genTime).toISOString(), tsa: d.info.tsa, serial: d.info.serial }),
      })),
    });
    return EXIT_OK;
  },
};
