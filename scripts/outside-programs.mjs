// What the integration tests need from the machine, checked before they run: a missing
// program is installed when this runs as root on Debian (as `.ci/run` does), or the run stops
// at once with one line saying how — never a test failing halfway for want of a binary.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** need (as named in run-tests.mjs's INTEGRATION list) → the program and its Debian package. */
const PROGRAMS = [
  { need: 'openssl', command: 'openssl', paths: [], apt: 'openssl' },
  { need: 'etcd', command: 'etcd', paths: ['/usr/bin/etcd'], apt: 'etcd-server' },
  { need: 'prometheus', command: 'prometheus', paths: ['/usr/bin/prometheus'], apt: 'prometheus' },
  { need: 'mkfifo', command: 'mkfifo', paths: [], apt: 'coreutils' },
  { need: 'a C compiler', command: 'cc', paths: [], apt: 'gcc' },
  { need: 'softhsm2', command: 'softhsm2-util', paths: [], apt: 'softhsm2' },
  { need: 'chromium', command: 'chromium', paths: ['/usr/bin/chromium'], apt: 'chromium' },
];

const has = (p) => p.paths.some((x) => existsSync(x)) || spawnSync('sh', ['-c', `command -v ${p.command}`], { stdio: 'ignore' }).status === 0;

/**
 * `needs`: the "what it needs" texts of the test files about to run. Installs what is missing
 * when it can; otherwise prints one line and exits 1.
 */
export function ensureOutsidePrograms(needs) {
  const text = needs.join(', ');
  const missing = PROGRAMS.filter((p) => text.includes(p.need) && !has(p));
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (text.includes('mount (tmpfs, root)') && !isRoot) {
    console.error('the disk-full tests mount a small tmpfs and need root: run the tests as root (as CI does), or run `npm run test:unit`');
    process.exit(1);
  }
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((p) => p.apt))];
  const line = `apt-get install -y --no-install-recommends ${packages.join(' ')}`;
  const canInstall = isRoot && spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (!canInstall) {
    console.error(
      `the integration tests need ${missing.map((p) => p.command).join(', ')}: install them as root with \`${line}\`, or run \`npm run test:unit\``,
    );
    process.exit(1);
  }
  console.error(`installing what the integration tests need: ${line}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...packages]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) {
      console.error(`\`apt-get ${args.join(' ')}\` failed (exit ${r.status}): install ${packages.join(' ')} by hand, or run \`npm run test:unit\``);
      process.exit(1);
    }
  }
  const still = missing.filter((p) => !has(p));
  if (still.length > 0) {
    console.error(`still missing after apt-get: ${still.map((p) => p.command).join(', ')}`);
    process.exit(1);
  }
}
