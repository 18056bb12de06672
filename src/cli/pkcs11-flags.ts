import { HotPatchError } from '../core/index.js';
import { readPinFile, type Pkcs11KeyOptions } from '../keys/index.js';
import { optionalString } from './args.js';
import { UsageError } from './cli-error.js';

/** The flags that name a key on a PKCS#11 token (`hotpatch sign`, `hotpatch keygen`). */
export const PKCS11_FLAGS = {
  'pkcs11-module': { type: 'string' },
  token: { type: 'string' },
  'key-label': { type: 'string' },
  'pin-file': { type: 'string' },
} as const;

export const PKCS11_USAGE = '--pkcs11-module LIB --token LABEL --key-label LABEL --pin-file FILE';

/**
 * The token key the flags name, or undefined without --pkcs11-module. The PIN is read from a
 * file (never a flag: it would sit in the process list and the shell history), its last line
 * break dropped; a PIN file others may read is refused.
 */
export async function pkcs11Options(values: Record<string, unknown>): Promise<Pkcs11KeyOptions | undefined> {
  const module = optionalString(values, 'pkcs11-module');
  const rest = ['token', 'key-label', 'pin-file'].filter((f) => values[f] !== undefined);
  if (module === undefined) {
    if (rest.length > 0) throw new UsageError(`--${rest[0]!} is for a key on a PKCS#11 token: add --pkcs11-module`);
    return undefined;
  }
  const need = (flag: string): string => {
    const v = optionalString(values, flag);
    if (v === undefined) throw new UsageError(`a key on a PKCS#11 token needs ${PKCS11_USAGE} (--${flag} is missing)`);
    return v;
  };
  const pinFile = need('pin-file');
  let pin: string;
  try {
    pin = await readPinFile(pinFile);
  } catch (error) {
    if (error instanceof HotPatchError)
      throw new UsageError(`--pin-file: ${error.message}`, error.code === 'NOT_FOUND' ? 'INVALID' : error.code, { cause: error });
    throw error;
  }
  return { module, token: need('token'), keyLabel: need('key-label'), pin };
}
