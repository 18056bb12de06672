import { join } from 'node:path';
import { HotPatchError, decodeJson } from '../core/index.js';
import { readFileBounded } from '../repo/index.js';
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
    return parse(bytes);
  } catch (error) {
    if (error instanceof HotPatchError) throw new UsageError(`${flag} ${path}: ${error.message}`, error.code, { cause: error });
    throw error;
  }
}

export function loadTrustStore(path: string): Promise<TrustStore> {
  return loadConfig('--trust', path, (bytes) => parseTrustStore(bytes));
}

export function loadSecurityPolicy(path: string): Promise<SecurityGate> {
  return loadConfig('--policy', path, (bytes) => SecurityGate.fromJSON(decodeJson(bytes, 'policy')));
}

/**
 * Highest versions recorded per target in a state directory's state.json (anti-downgrade).
 * A missing state.json means nothing was ever recorded.
 */
export async function loadHighestVersions(stateDir: string): Promise<Map<string, string>> {
  const path = join(stateDir, 'state.json');
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(path, 16 * MAX_CONFIG_BYTES, { noFollow: true });
  } catch (error) {
    if (error instanceof HotPatchError && error.code === 'NOT_FOUND') return new Map();
    throw error;
  }
  const state = decodeJson(bytes, path) as { targets?: Record<string, { highest_version?: unknown }> } | null;
  const out = new Map<string, string>();
  if (typeof state !== 'object' || state === null || typeof state.targets !== 'object' || state.targets === null) {
    throw new HotPatchError('PARSE', `${path} has no "targets" object`);
  }
  for (const [target, entry] of Object.entries(state.targets)) {
    if (typeof entry?.highest_version === 'string') out.set(target, entry.highest_version);
  }
  return out;
}
