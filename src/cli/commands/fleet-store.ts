import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HotPatchError } from '../../core/index.js';
import { openStore, type KvStore } from '../../distributed/index.js';
import { UsageError } from '../cli-error.js';

/** The end etcd-operations.ts gives every failure that may come from a cluster without quorum (with a "; …" note for writes). */
const QUORUM_HINT = / \(etcd unreachable or without quorum(?:; ([^)]*))?\)$/;

/**
 * A failure of the shared store as an operator should read it. The etcd store's errors say
 * what failed (`list /xps/hotpatch/fleet/agents/ failed: 4 DEADLINE_EXCEEDED: …`) and end with
 * a hint; on the command line, what matters first is that the store itself cannot answer, and
 * which members were tried: `the fleet store etcd://… cannot be reached or has no quorum (no
 * answer from a majority of its members http://…, http://…): list … failed: …`. Still IO (exit
 * 3), with the same detail (`endpoints`, `outcome` of a write). Other errors are returned as
 * they are (an embedded store's IO errors already name its directory).
 */
export function storeFailure(error: unknown, spec: string): unknown {
  if (!(error instanceof HotPatchError) || error.code !== 'IO') return error;
  const endpoints = error.detail?.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0 || error.detail?.store !== undefined) return error;
  const what = error.message.replace(QUORUM_HINT, (_all, note: string | undefined) => (note === undefined ? '' : ` (${note})`));
  return new HotPatchError(
    'IO',
    `the fleet store ${spec} cannot be reached or has no quorum (no answer from a majority of its members ${endpoints.join(', ')}): ${what}`,
    { cause: error, detail: { ...error.detail, store: spec } },
  );
}

/** Opens `--store SPEC`: a malformed spec is a usage error (exit 2); the store itself is reached lazily. */
export async function openFleetStore(spec: string): Promise<KvStore> {
  try {
    return await openStore(spec);
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'INVALID') throw new UsageError(`--store ${spec}: ${error.message}`, error.code, { cause: error });
    throw storeFailure(error, spec);
  }
}

/**
 * The directory of an embedded store spec (`file:/DIR`, `file:///DIR`, or a plain path), as
 * openStore reads it; undefined for an etcd spec or one openStore refuses (it says why).
 */
export function embeddedStoreDir(spec: string): string | undefined {
  if (spec.trim().length === 0 || spec.includes('\0') || spec.startsWith('etcd://')) return undefined;
  let dir: string;
  if (spec.startsWith('file://')) {
    try {
      dir = fileURLToPath(spec);
    } catch {
      return undefined;
    }
  } else if (spec.startsWith('file:')) {
    dir = spec.slice('file:'.length);
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(spec)) {
    return undefined;
  } else {
    dir = spec;
  }
  return dir.length === 0 ? undefined : path.resolve(dir);
}

/**
 * Opening an embedded store creates its directory: only `fleet controller` may do that. Every
 * other fleet command needs a store that exists, so a mistyped --store is NOT_FOUND (exit 3),
 * with nothing created, rather than an empty fleet.
 */
export async function requireExistingStore(spec: string): Promise<void> {
  const dir = embeddedStoreDir(spec);
  if (dir === undefined) return;
  try {
    await stat(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return; // openStore reports what else is wrong
    throw new HotPatchError('NOT_FOUND', `no fleet store at ${spec} (${dir} does not exist; hotpatch fleet controller creates it)`, {
      cause: error,
      detail: { store: spec, dir },
    });
  }
}
