import { HotPatchError, describe, type PatchRepository } from '../core/index.js';
import { FileSystemRepository } from './filesystem-repository.js';
import { safeUrl } from './http-fetch.js';
import { HttpRepository } from './http-repository.js';
import { RepositoryMirrors } from './repository-mirrors.js';

/** One place a repository may be read from, in a list of mirrors. */
export type RepositoryLocation = string | { location: string; priority?: number };

/**
 * The repository a location names: an `https://` or `http://` URL is served over HTTP
 * (`HttpRepository`: trust a private CA with Node's own `NODE_EXTRA_CA_CERTS`), anything else
 * is a directory (`FileSystemRepository`). A list of locations is a `RepositoryMirrors` (tried
 * by priority, default their order; each named by its location, URLs without credentials).
 * What `--repo` and the agent's `defaults.repository` accept.
 */
export function openRepository(location: string | readonly RepositoryLocation[]): PatchRepository {
  if (typeof location === 'string') return openOne(location);
  if (!Array.isArray(location) || location.length === 0) {
    throw new HotPatchError('INVALID', `a repository is a location or a non-empty list of them, got ${describe(location)}`);
  }
  return new RepositoryMirrors(
    location.map((entry: RepositoryLocation, i) => {
      const where = typeof entry === 'string' ? entry : entry?.location;
      if (typeof where !== 'string' || where.length === 0) throw new HotPatchError('INVALID', `repository list [${i}] has no location`);
      const repository = openOne(where);
      const name = repository instanceof HttpRepository ? safeUrl(repository.base) : where;
      return typeof entry === 'string' || entry.priority === undefined ? { name, repository } : { name, repository, priority: entry.priority };
    }),
  );
}

function openOne(location: string): PatchRepository {
  return /^https?:\/\//i.test(location) ? new HttpRepository(location) : new FileSystemRepository(location);
}
