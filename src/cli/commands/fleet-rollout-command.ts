import { HotPatchError, isPatchId } from '../../core/index.js';
import { createRollout, type KvStore, type RolloutActionOptions, type RolloutDocument, type RolloutSigner, type RolloutSpec } from '../../distributed/index.js';
import type { TrustStore } from '../../verification/index.js';
import { integerFlag, optionalString, requireString } from '../args.js';
import { canaryOptionsFromFlags } from '../canary-flags.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import type { Output } from '../output.js';
import { verifyRepoPatch } from '../patch-check.js';
import { canaryText } from './fleet-format.js';
import { followRollout } from './fleet-rollout-watch.js';

/**
 * `hotpatch fleet rollout`: what to roll out, signed by the operators' keys and created at
 * ring 0; with --watch, followed to its end.
 */

type PatchFields = Pick<RolloutSpec, 'target' | 'patchId' | 'version' | 'payloadHash'>;

/**
 * The patch half of the spec: with --repo, the patch's signed manifest as an agent will
 * verify it (the same `verifyPatch`, against the same trust store) says the target, version
 * and payload hash, and a flag given as well must say the same; without --repo the three
 * flags say it. Nothing is decoded by hand: only a manifest that verified is read. The flags
 * are checked at once; the returned function reads the repository (once the trust store is).
 */
function patchOf(values: Record<string, unknown>): (trust: TrustStore) => Promise<PatchFields> {
  const patchId = requireString(values, 'patch');
  const repo = optionalString(values, 'repo');
  if (repo === undefined) {
    const fields = {
      patchId,
      target: requireString(values, 'target'),
      version: requireString(values, 'version'),
      payloadHash: requireString(values, 'payload-hash'),
    };
    return async () => fields;
  }
  if (!isPatchId(patchId)) throw new UsageError(`--patch ${JSON.stringify(patchId)} is not a valid patch id`);
  const target = optionalString(values, 'target');
  const version = optionalString(values, 'version');
  const payloadHash = optionalString(values, 'payload-hash');
  return async (trust) => {
    const { manifest } = (await verifyRepoPatch(repo, patchId, trust)).verified;
    const differs: string[] = [];
    if (target !== undefined && target !== manifest.target) differs.push(`targets ${manifest.target}, not --target ${target}`);
    if (version !== undefined && version !== manifest.version) differs.push(`is version ${manifest.version}, not --version ${version}`);
    const hashDiffers = payloadHash !== undefined && payloadHash.toLowerCase() !== manifest.payload_hash.toLowerCase();
    if (hashDiffers) differs.push(`has payload hash ${manifest.payload_hash}, not --payload-hash ${payloadHash}`);
    if (differs.length > 0) {
      // Same id and version, other bytes: the flags name another build of this patch.
      const code = hashDiffers && differs.length === 1 ? 'HASH_MISMATCH' : 'INVALID';
      throw new HotPatchError(code, `the signed manifest of ${patchId} in ${repo} ${differs.join('; ')}: nothing written`, {
        detail: { target: manifest.target, version: manifest.version, payloadHash: manifest.payload_hash },
      });
    }
    return { patchId, target: manifest.target, version: manifest.version, payloadHash: manifest.payload_hash };
  };
}

export interface RolloutRun {
  spec: RolloutSpec;
  options: RolloutActionOptions;
  watch: boolean;
}

/**
 * Every flag checked first (usage errors before anything is read), then the trust store and
 * keys read (`sign`), then the patch verified (with --repo): all before the store is opened.
 */
export async function prepareRollout(
  values: Record<string, unknown>,
  base: { prefix?: string },
  sign: () => Promise<{ trust: TrustStore; signers: RolloutSigner[]; actor: string }>,
): Promise<RolloutRun> {
  const id = optionalString(values, 'id');
  const zdt = canaryOptionsFromFlags(values);
  const rings = integerFlag(values, 'rings', 1);
  const soakMs = integerFlag(values, 'soak', 0);
  const patch = patchOf(values);
  const options: RolloutActionOptions = { ...base, ...(await sign()) };
  const spec: RolloutSpec = {
    ...(id === undefined ? {} : { id }),
    ...(await patch(options.trust)),
    rings,
    soakMs,
    emptyRings: values['skip-empty-rings'] === true ? 'skip' : 'wait',
    ...(Object.keys(zdt).length === 0 ? {} : { zdt }),
  };
  return { spec, options, watch: values.watch === true };
}

function created(doc: RolloutDocument): string {
  return `rollout ${doc.id} created: ${doc.patchId} (${doc.version}) on ${doc.target} over ${doc.rings} ring(s), soak ${doc.soakMs} ms${canaryText(doc)}`;
}

export async function runRollout(store: KvStore, out: Output, run: RolloutRun, onFailure: (error: unknown) => unknown): Promise<number> {
  const doc = await createRollout(store, run.spec, run.options);
  if (!run.watch) {
    out.success(created(doc), { rollout: doc });
    return EXIT_OK;
  }
  out.line(created(doc));
  return followRollout(store, out, doc, run.options, onFailure);
}
