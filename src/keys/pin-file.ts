import { HotPatchError } from '../core/index.js';
import { readSecretFile } from './secret-file.js';

const MAX_PIN_FILE_BYTES = 4096;

/**
 * A token's user PIN from a file (never a flag or an option in a config: it would sit in the
 * process list, the shell history or a world-readable file), its last line break dropped. A PIN
 * file others may read is INVALID, a missing one NOT_FOUND, an empty one INVALID.
 */
export async function readPinFile(file: string): Promise<string> {
  const bytes = await readSecretFile(file, 'PIN file', MAX_PIN_FILE_BYTES);
  const pin = bytes.toString('utf8').replace(/\r?\n$/, '');
  bytes.fill(0);
  if (pin.length === 0) throw new HotPatchError('INVALID', `PIN file ${file} is empty`);
  return pin;
}
