import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HotPatchError, decodeJson } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';
import { parseStateFile } from '../rollback/index.js';
import { SecurityGate } from '../security/index.js';
import { parseTrustStore, type TrustStore } from '../verification/index.js';
import { UsageError } from './cli-error.js';

const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * A trust store or policy file named on the command line is the operator's own input: when
 * it is broken the command was misused (exit 2), whatever the patch is. The error keeps its
 * code (PARSE, INVALID, …) so scripts can still tell why.
 */
async function loadConfig<T>(flag: string, path: string, parse: (bytes: Uint8Array) => T): Promise<T> {
  return (await loadConfigBytes(flag, path, parse)).value;
}

async function loadConfigBytes<T>(flag: string, path: string, parse: (bytes: Uint8Array) => T): Promise<{ bytes: Uint8Array; value: T }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, MAX_CONFIG_BYTES, { noFollow: false });
  } catch (error) {
    if (error instanceof HotPatchError && error.code !== 'IO') {
      throw new UsageError(`${flag} ${path}: ${error.message}`, error.code, { cause: error });
    }
    throw error;
  }
  try {
    return { bytes, value: parse(bytes) };
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`${flag} ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

export function loadTrustStore(path: string): Promise<TrustStore> {
  return loadConfig('--trust', path, (bytes) => parseTrustStore(bytes));
}

/** A trust store file and the exact bytes it was read from (to edit it, or sign those bytes). */
export function loadTrustStoreFile(path: string, flag = '--trust'): Promise<{ bytes: Uint8Array; value: TrustStore }> {
  return loadConfigBytes(flag, path, (bytes) => parseTrustStore(bytes));
}

export function loadSecurityPolicy(path: string): Promise<SecurityGate> {
  return loadConfig('--policy', path, (bytes) => SecurityGate.fromJSON(decodeJson(bytes, 'policy')));
}

/**
 * Highest versions recorded per target in a state directory's state.json (anti-downgrade),
 * parsed as strictly as the runtime parses it: a broken state file must never switch the
 * downgrade check off. The directory must exist; a missing state.json means nothing was
 * ever recorded there.
 */
export async function loadHighestVersions(stateDir: string): Promise<Map<string, string>> {
  try {
    const info = await stat(stateDir);
    if (!info.isDirectory()) throw new UsageError(`--state ${stateDir} is not a directory`);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--state ${stateDir}: ${(error as Error).message}`, 'NOT_FOUND', { cause: error });
  }
  const path = join(stateDir, 'state.json');
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, 16 * MAX_CONFIG_BYTES, { noFollow: true, what: 'state file' });
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return new Map();
    if (error instanceof HotPatchError && error.code !== 'IO') throw new UsageError(`--state ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  let state;
  try {
    state = parseStateFile(bytes, path);
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`--state ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
  const out = new Map<string, string>();
  for (const [target, entry] of Object.entries(state.targets)) {
    if (entry.highest_version !== undefined) out.set(target, entry.highest_version);
  }
  return out;
}
