import { HotPatchError, describe, type PatchRepository } from '../core/index.js';
import { FileSystemRepository } from './filesystem-repository.js';
import { safeUrl } from './http-fetch.js';
import { HttpRepository } from './http-repository.js';
import { RepositoryMirrors } from './repository-mirrors.js';
import { TufRepository, type TufRepositoryOptions } from './tuf-repository.js';

/** A repository behind TUF metadata, as configuration names it (`trustedRoot`: a file). */
export interface TufLocation {
  tuf: Omit<TufRepositoryOptions, 'trustedRoot'> & { trustedRoot: string };
}

/** One place a repository may be read from: a directory, an http(s) URL, or TUF; in a list, with a priority. */
export type RepositoryLocation = string | TufLocation | { location: string | TufLocation; priority?: number };

/**
 * The repository a location names: an `https://` or `http://` URL is served over HTTP
 * (`HttpRepository`: trust a private CA with Node's own `NODE_EXTRA_CA_CERTS`), `{ tuf: {…} }`
 * is read through TUF metadata (`TufRepository`), anything else is a directory
 * (`FileSystemRepository`). A list of locations is a `RepositoryMirrors` (tried by priority,
 * default their order; each named by its location, URLs without credentials). What `--repo`
 * and the agent's `defaults.repository` accept.
 */
export function openRepository(location: RepositoryLocation | readonly RepositoryLocation[]): PatchRepository {
  if (!Array.isArray(location)) return openOne(location as RepositoryLocation, 'repository').repository;
  if (location.length === 0) throw new HotPatchError('INVALID', 'a repository list must name at least one location');
  return new RepositoryMirrors(
    location.map((entry: RepositoryLocation, i) => {
      const { repository, name } = openOne(entry, `repository list [${i}]`);
      const priority = typeof entry === 'object' && 'priority' in entry ? entry.priority : undefined;
      return priority === undefined ? { name, repository } : { name, repository, priority };
    }),
  );
}

function openOne(entry: RepositoryLocation, field: string): { repository: PatchRepository; name: string } {
  const where = typeof entry === 'object' && entry !== null && 'location' in entry ? entry.location : entry;
  if (typeof where === 'string' && where.length > 0) {
    if (/^https?:\/\//i.test(where)) {
      const repository = new HttpRepository(where);
      return { repository, name: safeUrl(repository.base) };
    }
    return { repository: new FileSystemRepository(where), name: where };
  }
  if (typeof where === 'object' && where !== null && 'tuf' in where && typeof where.tuf === 'object' && where.tuf !== null) {
    const repository = new TufRepository(where.tuf);
    return { repository, name: `tuf:${safeUrl(repository.metadataUrl)}` };
  }
  throw new HotPatchError('INVALID', `${field} must be a directory, an http(s) URL or { tuf: {…} }, got ${describe(where)}`);
}
