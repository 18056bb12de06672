import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HotPatchError, describe } from '../core/index.js';
import { EmbeddedStore, type EmbeddedStoreOptions } from './embedded-store.js';
import type { EtcdStoreOptions } from './etcd-store.js';
import type { KvStore } from './kv-store.js';

export interface OpenStoreOptions {
  embedded?: EmbeddedStoreOptions;
  etcd?: Omit<EtcdStoreOptions, 'endpoints'>;
}

/** `host:port`: a DNS name or IPv4 address, or a bracketed IPv6 address; port 1-65535. */
const HOST_PORT = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$/;

/**
 * Opens the store a `--store` option names:
 * - `etcd://host:port[,host:port…]` → `EtcdStore` on `http://host:port` for each member;
 * - `file:/path/dir`, `file:///path/dir`, or a plain path → `EmbeddedStore` in that directory;
 * - anything else (another scheme, an empty spec, a bad host list) → `INVALID`.
 * An etcd store connects lazily (its first operation reports an unreachable cluster as `IO`);
 * an embedded store creates its directory and checks an existing `store.json` now.
 *
 * The etcd client (`etcd3`, and gRPC under it) is imported here, the first time an etcd store
 * is opened: importing the package, or using only embedded stores, never loads it.
 */
export async function openStore(spec: string, options: OpenStoreOptions = {}): Promise<KvStore> {
  if (typeof spec !== 'string' || spec.trim().length === 0) {
    throw new HotPatchError('INVALID', `store must be etcd://host:port[,…] or a directory, got ${describe(spec)}`);
  }
  if (spec.includes('\0')) throw new HotPatchError('INVALID', 'store must not contain a NUL character');
  if (spec.startsWith('etcd://')) {
    const hosts = spec.slice('etcd://'.length).split(',');
    const endpoints = hosts.map((host, i) => {
      const m = HOST_PORT.exec(host);
      const port = m === null ? 0 : Number(m[1]);
      if (port < 1 || port > 65535) {
        throw new HotPatchError('INVALID', `store etcd host ${i + 1} must be host:port (port 1-65535), got ${describe(host)}`);
      }
      return `http://${host}`;
    });
    const { EtcdStore } = await loadEtcdStore();
    return new EtcdStore({ ...options.etcd, endpoints });
  }
  let dir: string;
  if (spec.startsWith('file://')) {
    try {
      dir = fileURLToPath(spec);
    } catch (cause) {
      throw new HotPatchError('INVALID', `store ${describe(spec)} is not a valid file URL`, { cause });
    }
  } else if (spec.startsWith('file:')) {
    dir = spec.slice('file:'.length);
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(spec)) {
    throw new HotPatchError('INVALID', `store scheme of ${describe(spec)} is not supported: use etcd://host:port[,…] or a directory (file:/path)`);
  } else {
    dir = spec;
  }
  if (dir.length === 0) throw new HotPatchError('INVALID', `store ${describe(spec)} names no directory`);
  return EmbeddedStore.open(path.resolve(dir), options.embedded);
}

/** The etcd store module, imported on first use (it loads `etcd3` and `@grpc/grpc-js`). */
async function loadEtcdStore(): Promise<typeof import('./etcd-store.js')> {
  try {
    return await import('./etcd-store.js');
  } catch (cause) {
    const e = cause as NodeJS.ErrnoException;
    if (e?.code === 'ERR_MODULE_NOT_FOUND' && /'etcd3'/.test(String(e.message))) {
      throw new HotPatchError('NOT_FOUND', 'an etcd:// store needs the etcd3 package, which is not installed (npm install etcd3)', { cause });
    }
    throw cause;
  }
}
