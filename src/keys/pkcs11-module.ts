import { createRequire } from 'node:module';
import type * as Pkcs11js from 'pkcs11js';
import { HotPatchError, messageOf } from '../core/index.js';

/*
 * The PKCS#11 library, through pkcs11js (an optional dependency: a native addon built at
 * install). One initialised module per library path in a process, shared by every session and
 * finalised when the last user closes.
 */
export type Pkcs11 = Pkcs11js.PKCS11;
export type Pkcs11Api = typeof Pkcs11js;

const require = createRequire(import.meta.url);
const loaded = new Map<string, { module: Pkcs11; users: number }>();

/** pkcs11js itself, or a clear error saying how to get it. */
export function pkcs11Api(): Pkcs11Api {
  try {
    return require('pkcs11js') as Pkcs11Api;
  } catch (cause) {
    throw new HotPatchError(
      'NOT_FOUND',
      'PKCS#11 needs the optional dependency pkcs11js (a native addon): `npm install pkcs11js` with a C++ compiler at hand',
      {
        cause,
      },
    );
  }
}

/** The initialised module of `library` (e.g. /usr/lib/softhsm/libsofthsm2.so); release it with `releaseModule`. */
export function openModule(library: string): Pkcs11 {
  const known = loaded.get(library);
  if (known !== undefined) {
    known.users += 1;
    return known.module;
  }
  const api = pkcs11Api();
  const module = new api.PKCS11();
  try {
    module.load(library);
    module.C_Initialize();
  } catch (cause) {
    try {
      module.close();
    } catch {
      // Not loaded at all: nothing to close; the load error is the one to report.
    }
    throw new HotPatchError('IO', `the PKCS#11 library ${library} cannot be loaded: ${messageOf(cause)}`, { cause });
  }
  loaded.set(library, { module, users: 1 });
  return module;
}

export function releaseModule(library: string): void {
  const known = loaded.get(library);
  if (known === undefined) return;
  known.users -= 1;
  if (known.users > 0) return;
  loaded.delete(library);
  try {
    known.module.C_Finalize();
  } finally {
    known.module.close();
  }
}
