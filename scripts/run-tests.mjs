#!/usr/bin/env node
// Runs every compiled test file under dist/test with Node's test runner. Node 20's
// `--test` takes no globs, so the files are listed here. Extra arguments narrow the run:
// `node scripts/run-tests.mjs verification` runs the files whose path contains "verification".
//
// `--only unit` runs the files that need nothing outside this Node process; `--only
// integration` runs the others: those that start programs (openssl, etcd, prometheus, mount,
// mkfifo, the `hotpatch` binary, agent hosts or other node child processes). They are listed
// below by hand, with what each needs; a listed file that no longer exists fails the run, so
// the list cannot rot silently. `--list` prints the classification instead of running.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ensureOutsidePrograms } from './outside-programs.mjs';

/** test/… path without extension → what it needs from outside the test process. */
const INTEGRATION = new Map([
  ['test/agent/agent-crash.test', 'agent-host child processes, the hotpatch binary'],
  ['test/agent/agent-disk-full.test', 'mount (tmpfs, root), agent-host child processes'],
  ['test/agent/agent-encrypted.test', 'mkfifo'],
  ['test/agent/agent-http.test', 'the hotpatch binary'],
  ['test/agent/agent-logs.test', 'node child processes'],
  ['test/agent/agent-sigstop.test', 'agent-host child processes'],
  ['test/agent/agent-socket.test', 'node child processes'],
  ['test/agent/crash-loop.test', 'agent-host child processes'],
  ['test/agent/lifecycle.test', 'agent-host child processes, the hotpatch binary'],
  ['test/agent/named-tokens.test', 'the hotpatch binary'],
  ['test/agent/operator-cli.test', 'agent-host child processes, the hotpatch binary'],
  ['test/agent/operator-record.test', 'the hotpatch binary'],
  ['test/agent/plan-pages.test', 'the hotpatch binary'],
  ['test/agent/dashboard.test', 'chromium (Debian, driven by Playwright)'],
  ['test/agent/prometheus.test', 'prometheus'],
  ['test/observability/monitoring-assets.test', 'prometheus (and its promtool)'],
  ['test/agent/read-only-token.test', 'the hotpatch binary'],
  ['test/api/exports.test', 'node child process (imports the package by name)'],
  ['test/cli/agent-auth.test', 'the hotpatch binary'],
  ['test/cli/agent-config.test', 'the hotpatch binary'],
  ['test/cli/canary-flags.test', 'the hotpatch binary'],
  ['test/cli/cli.test', 'the hotpatch binary'],
  ['test/cli/demo-noisy.test', 'node child processes (the demo, CPU burners)'],
  ['test/cli/epipe.test', 'the hotpatch binary'],
  ['test/cli/index-command.test', 'the hotpatch binary'],
  ['test/cli/output-lines.test', 'the hotpatch binary'],
  ['test/cli/pack-encrypted.test', 'the hotpatch binary'],
  ['test/cli/readme-quick-start.test', 'bash, the hotpatch binary'],
  ['test/cli/serve.test', 'the hotpatch binary'],
  ['test/cli/trust.test', 'the hotpatch binary'],
  ['test/crypto-agile/openssl-interop.test', 'openssl'],
  ['test/distributed/approval-cli.test', 'the hotpatch binary'],
  ['test/distributed/approval-etcd.test', 'etcd'],
  ['test/distributed/fleet-cli-etcd.test', 'etcd, the hotpatch binary'],
  ['test/distributed/fleet-cli-process.test', 'the hotpatch binary'],
  ['test/distributed/fleet-etcd.test', 'etcd'],
  ['test/distributed/fleet-processes.test', 'etcd, the hotpatch binary'],
  ['test/distributed/store-conformance.test', 'etcd'],
  ['test/distributed/store-embedded-fencing.test', 'node child processes'],
  ['test/distributed/store-embedded.test', 'node child processes'],
  ['test/distributed/store-etcd.test', 'etcd'],
  ['test/examples/example-service.test', 'node child processes, the hotpatch binary'],
  ['test/integration/hostile-corpus.test', 'mkfifo, the hotpatch binary'],
  ['test/integration/openssl-interop.test', 'openssl, the hotpatch binary'],
  ['test/keys/pkcs11.test', 'softhsm2 (a token made by the test), openssl, the hotpatch binary'],
  ['test/keys/pkcs11-recipient.test', 'softhsm2 (a token made by the test), openssl, the hotpatch binary'],
  ['test/observability/audit-crash.test', 'node child processes'],
  ['test/observability/audit-log-disk-full.test', 'mount (tmpfs, root)'],
  ['test/observability/history.test', 'agent-host child processes, the hotpatch binary'],
  ['test/orchestration/disk-full.test', 'mount (tmpfs, root)'],
  ['test/repo/atomic-file.test', 'mkfifo'],
  ['test/repo/filesystem-repository.test', 'mkfifo'],
  ['test/repo/http-repository.test', 'openssl (a test CA)'],
  ['test/verification/exact-optional-types.test', 'node child process (tsc)'],
  ['test/verification/timestamps.test', 'openssl (a test CA and TSA: openssl ts, openssl cms), the hotpatch binary'],
  ['test/zero-downtime/canary-faults.test', 'node child processes (CPU burners)'],
  ['test/zero-downtime/crash-recovery.test', 'node child processes (crash-child)'],
  ['test/zero-downtime/crash-recovery-worker.test', 'node child processes (crash-child)'],
  ['test/zero-downtime/crash-recovery-process.test', 'node child processes (crash-child, its isolates)'],
  ['test/zero-downtime/isolation-containment.test', 'node child processes (isolates), a C compiler (Node-API addons)'],
  ['test/zero-downtime/isolation-hostile.test', 'node child processes (isolates, a host process)'],
  ['test/zero-downtime/isolation-lifecycle.test', 'node child processes (isolates)'],
  ['test/zero-downtime/isolation-unload.test', 'node child processes (isolates)'],
]);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

/** dist/test/a/b.test.js → test/a/b.test */
const keyOf = (file) => file.slice('dist/'.length, -'.js'.length);

const args = process.argv.slice(2);
let only;
let list = false;
const filters = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--only') {
    only = args[++i];
    if (only !== 'unit' && only !== 'integration') {
      console.error(`--only takes "unit" or "integration", got ${JSON.stringify(only)}`);
      process.exit(2);
    }
  } else if (args[i] === '--list') list = true;
  else filters.push(args[i]);
}

if (!existsSync('dist/test')) {
  console.error('no test files found under dist/test (did the build run?)');
  process.exit(1);
}
const all = walk('dist/test');
const known = new Set(all.map(keyOf));
const stale = [...INTEGRATION.keys()].filter((k) => !known.has(k));
if (stale.length > 0) {
  console.error(`scripts/run-tests.mjs lists integration test files that do not exist (renamed or removed? update INTEGRATION):\n  ${stale.join('\n  ')}`);
  process.exit(1);
}

const files = all
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .filter((f) => only === undefined || INTEGRATION.has(keyOf(f)) === (only === 'integration'));
if (list) {
  for (const f of files)
    console.log(`${INTEGRATION.has(keyOf(f)) ? 'integration' : 'unit       '}  ${f}${INTEGRATION.has(keyOf(f)) ? `  (${INTEGRATION.get(keyOf(f))})` : ''}`);
  process.exit(0);
}
if (files.length === 0) {
  console.error('no test files match (did the build run?)');
  process.exit(1);
}
// The programs the chosen files start are there (installed now, as root on Debian), or the run stops here, saying how.
ensureOutsidePrograms(files.map((f) => INTEGRATION.get(keyOf(f)) ?? ''));
// A test still running after 5 minutes fails by name instead of holding the whole run (and CI)
// forever: no test here needs more than a minute on this machine.
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
