import type { PatchRepository } from '../core/index.js';
import { FileSystemRepository } from './filesystem-repository.js';
import { HttpRepository } from './http-repository.js';

/**
 * The repository a location names: an `https://` or `http://` URL is served over HTTP
 * (`HttpRepository`: trust a private CA with Node's own `NODE_EXTRA_CA_CERTS`), anything else
 * is a directory (`FileSystemRepository`). What `--repo` and the agent's `repository` accept.
 */
export function openRepository(location: string): PatchRepository {
  return /^https?:\/\//i.test(location) ? new HttpRepository(location) : new FileSystemRepository(location);
}
