import { HotPatchError } from '../core/index.js';
import type { StateStore, VersionRecord } from '../rollback/index.js';
import type { RuntimeVersion } from './runtime-version.js';
import type { Target } from './target.js';

/**
 * The version `to` among those kept for `target`: warm previous, built-in, last good, recorded
 * previous (from `store`, when the runtime persists). A recorded one is reloaded by `load`.
 */
export async function retainedVersion(
  target: Target<object>,
  to: string,
  store: StateStore | undefined,
  load: (record: VersionRecord) => Promise<RuntimeVersion>,
): Promise<RuntimeVersion> {
  if (typeof to !== 'string' || to.length === 0) throw new HotPatchError('INVALID', `to must be a version string, got ${String(to)}`);
  if (target.active.version === to) throw new HotPatchError('INVALID', `${target.name} already serves ${to}`);
  if (target.previous?.version === to) return target.previous;
  if (target.builtin.version === to) return target.builtin;
  const saved = store === undefined ? undefined : (await store.read()).targets[target.name];
  for (const record of [saved?.last_good ?? null, saved?.previous ?? null]) {
    if (record === null || record.version !== to || record.id === null) continue;
    return await load(record);
  }
  throw new HotPatchError('NOT_FOUND', `version ${to} of ${target.name} is not retained; retained: ${(await retainedList(target, store)).join(', ')}`);
}

/** The versions a rollback of `target` could go to, each with where it is kept (for error messages). */
export async function retainedList(target: Target<object>, store: StateStore | undefined): Promise<string[]> {
  const saved = store === undefined ? undefined : (await store.read()).targets[target.name];
  const out = new Set<string>();
  if (target.previous !== undefined) out.add(`${target.previous.version} (previous)`);
  if (saved?.last_good != null && saved.last_good.version !== target.active.version) out.add(`${saved.last_good.version} (last good)`);
  if (saved?.previous != null && saved.previous.version !== target.previous?.version) out.add(`${saved.previous.version} (recorded previous)`);
  if (target.builtin.version !== target.active.version) out.add(`${target.builtin.version} (built-in)`);
  return out.size === 0 ? ['none'] : [...out];
}
