/*
 * A writer for audit-crash.test.ts, killed with SIGKILL at random moments.
 *
 *   node audit-crash-child.js <stateDir> <first event number>
 *
 * Appends events forever; after each append has resolved (line fsynced and covered by
 * state.json) it prints the event's number on stdout, so the parent knows what must survive.
 */
import { AuditLog } from '../../src/observability/index.js';
import { event } from './helpers.js';

const [dir, first] = process.argv.slice(2);
const log = new AuditLog(dir!);
await log.open();
process.stdout.write(`opened ${JSON.stringify(log.reconciliation)}\n`);
// Lines of varying length, some large, so a kill can land inside a write.
let n = Number(first);
for (;;) {
  const batch: Promise<number>[] = [];
  for (let k = 1 + (n % 3); k > 0; k--) {
    const id = n++;
    const pad = 'x'.repeat((id * 7919) % 60_000);
    batch.push(log.append(event('CanaryStep', `patch-${id}`, { reason: `event ${id}`, detail: { pad } })).then(() => id));
  }
  for (const p of batch) process.stdout.write(`done ${await p}\n`);
}
