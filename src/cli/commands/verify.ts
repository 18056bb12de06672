import { isPatchId } from '../../core/index.js';
import { trustForTarget, type TrustStore } from '../../verification/index.js';
import { SecurityGate } from '../../security/index.js';
import { optionalString, parseCommandArgs, requireString } from '../args.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { loadHighestVersions, loadSecurityPolicy, loadTrustStore } from '../config-files.js';
import { verifyRepoPatch } from '../patch-check.js';

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check a patch: signatures, threshold, expiry, payload hash, policy',
  usage: `hotpatch verify --repo DIR --id ID --trust FILE [--policy FILE] [--state DIR] [--json]

Runs the full trust pipeline on DIR/ID.json and DIR/ID.bin against the trust store
FILE: envelope type, manifest, signatures, threshold over distinct keys, target
authorisation, manifest signers, expiry, anti-downgrade (against the highest
versions recorded in DIR/state.json with --state), payload size and hash, then the
security policy (--policy FILE). When the trust store has an index role, the patch must
be the one DIR/index.json (signed by that role, unexpired) lists, and the index no older
than the one the agent accepted (STATE/repository-index.json with --state DIR). Exit 0 accepted,
1 rejected, 2 usage, 3 I/O.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      repo: { type: 'string' },
      id: { type: 'string' },
      trust: { type: 'string' },
      policy: { type: 'string' },
      state: { type: 'string' },
    });
    if (help) return printHelp(out, this.usage);
    const repoDir = requireString(values, 'repo');
    const id = requireString(values, 'id');
    if (!isPatchId(id)) throw new UsageError(`--id ${JSON.stringify(id)} is not a valid patch id`);
    const trust = await loadTrustStore(requireString(values, 'trust'));
    const policyPath = optionalString(values, 'policy');
    // Without --policy the default gate still applies the manifest's own platform constraints
    // and the default payload size limit: a patch is never accepted for a host it excludes.
    const gate = policyPath === undefined ? new SecurityGate() : await loadSecurityPolicy(policyPath);
    const statePath = optionalString(values, 'state');
    const highest = statePath === undefined ? undefined : await loadHighestVersions(statePath);

    const { verified, index } = await verifyRepoPatch(repoDir, id, trust, highest, statePath);
    gate.check(verified);

    const { manifest } = verified;
    out.line(`patch:     ${manifest.id}`);
    out.line(`target:    ${manifest.target} ${manifest.version} (${manifest.payload_type})`);
    const trusted = trustedKeys(trust, manifest.target);
    const n = verified.signers.length;
    out.line(`signed by: ${verified.signers.join(', ')} (${n} key${n === 1 ? '' : 's'}, threshold ${verified.threshold} of ${trusted} trusted)`);
    out.line(`payload:   ${manifest.payload_hash} (${manifest.payload_size} bytes) matches`);
    out.line(`expires:   ${manifest.expires ?? 'never'}`);
    if (index !== undefined)
      out.line(
        `index:     version ${index.index.version}, signed by ${index.signers.join(', ')}, expires ${index.index.expires}; the manifest matches its entry`,
      );
    out.line(`policy:    allowed${policyPath === undefined ? ' (default policy: platform constraints, 64 MiB limit)' : ''}`);
    out.success(`OK: ${manifest.id} verified`, {
      id: manifest.id,
      target: manifest.target,
      version: manifest.version,
      signers: verified.signers,
      threshold: verified.threshold,
      trusted,
      payload_hash: manifest.payload_hash,
      payload_size: manifest.payload_size,
      expires: manifest.expires,
      ...(index === undefined ? {} : { index: { version: index.index.version, expires: index.index.expires, signers: index.signers } }),
    });
    return EXIT_OK;
  },
};

/**
 * How many distinct keys the store trusts for `target` (the matching rule's keys, or every key,
 * minus those whose own target patterns exclude it): the "3" of "threshold 2 of 3 trusted".
 */
function trustedKeys(trust: TrustStore, target: string): number {
  const ids = trustForTarget(trust, target).authorized;
  return new Set([...ids].map((id) => trust.keys.get(id)!.key.fingerprint)).size;
}
