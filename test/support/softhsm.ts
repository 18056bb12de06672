/*
 * A SoftHSM2 token for tests: a temporary token directory and config (SOFTHSM2_CONF, set for
 * this process before the PKCS#11 library is first initialised, and passed to softhsm2-util),
 * one token initialised with a known user PIN. Debian's library path; a missing softhsm2 fails
 * the run saying how to install it (the test runner installs it as root).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  module: string;
  token: string;
  pin: string;
  conf: string;
}

/** A fresh token labelled `label` under `dir`. */
export async function softHsmToken(dir: string, label = 'hotpatch-test'): Promise<SoftHsmToken> {
  if (!existsSync(SOFTHSM_MODULE)) throw new Error(`SoftHSM2 is missing (${SOFTHSM_MODULE}): apt-get install -y softhsm2`);
  const tokens = join(dir, 'tokens');
  await mkdir(tokens, { recursive: true });
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  // Read by the library at C_Initialize: one config per test process, set before the first use.
  process.env.SOFTHSM2_CONF = conf;
  const pin = '4711-user';
  await run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', '1234-so'], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
  });
  return { module: SOFTHSM_MODULE, token: label, pin, conf };
}
