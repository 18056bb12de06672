import { messageOf } from '../../core/index.js';
import { fleetStatus, type FleetStatus, type FleetStoreOptions, type KvStore } from '../../distributed/index.js';
import { EXIT_OK } from '../cli-error.js';
import type { Output } from '../output.js';
import { describeRollout, describeTarget, printable } from './fleet-format.js';
import { followStore, interruption } from './fleet-watch.js';

/** `hotpatch fleet status [--watch]`: the alive agents by ring, the rollouts, the leading controller. */

export interface StatusRun {
  options: FleetStoreOptions;
  /** Whether rollouts are verified (a trust store was given). */
  verified: boolean;
  watch: boolean;
  onFailure: (error: unknown) => unknown;
}

/** What one read shows: lines for people, warnings, and the JSON fields. */
interface StatusView {
  lines: string[];
  warnings: string[];
  summary: string;
  fields: Record<string, unknown>;
}

function view(status: FleetStatus, verified: boolean): StatusView {
  const lines = [printable(`controller: ${status.controller ?? 'none leading'}`)];
  if (!verified) lines.push('rollouts: signatures not checked (pass --trust to verify them)');
  const rings = [...new Set(status.agents.map((a) => a.ring))].sort((a, b) => a - b);
  if (rings.length === 0) lines.push('agents: none alive');
  for (const ring of rings) {
    const agents = status.agents.filter((a) => a.ring === ring);
    lines.push(`ring ${ring}: ${agents.length} agent(s)`);
    for (const a of agents) {
      const targets = Object.entries(a.targets);
      if (targets.length === 0) lines.push(`  ${printable(a.agentId)}  (no target reported)`);
      for (const [name, t] of targets) lines.push(`  ${describeTarget(a.agentId, name, t)}`);
    }
  }
  lines.push(status.rollouts.length === 0 ? 'rollouts: none' : 'rollouts:');
  for (const r of status.rollouts) lines.push(`  ${describeRollout(r)}`);
  // `verified`: the report's signature was checked against the trust store's agents role (without one, nothing is).
  const agents = status.agents.map(({ key: _key, ...a }) => ({ ...a, verified: a.signedBy !== undefined }));
  const rollouts = status.rollouts.map(({ key: _key, raw: _raw, ...r }) => r);
  return {
    lines,
    warnings: status.problems.map((p) => printable(`ignored ${p.key}: ${p.error}`)),
    summary: `${status.agents.length} agent(s) in ${rings.length} ring(s), ${status.rollouts.length} rollout(s)`,
    fields: { controller: status.controller ?? null, verified, agents, rollouts, problems: status.problems },
  };
}

/** A view's fields without the times agents stamp on their reports: what a watcher calls a change. */
function changeKey(fields: Record<string, unknown>): string {
  return JSON.stringify(fields, (key, value: unknown) => (key === 'updatedAt' ? undefined : value));
}

/** Clears a terminal and puts the cursor top left, for a redraw. */
const CLEAR = '\x1b[H\x1b[2J';

export async function runStatus(store: KvStore, out: Output, run: StatusRun): Promise<number> {
  if (!run.watch) {
    const v = view(await fleetStatus(store, run.options), run.verified);
    for (const line of v.lines) out.line(line);
    for (const w of v.warnings) out.warn(w);
    out.success(v.summary, v.fields);
    return EXIT_OK;
  }
  const stop = interruption(out);
  let last: string | undefined;
  let shown = 0;
  try {
    await followStore({
      store,
      prefix: run.options.prefix,
      signal: stop.signal,
      read: () => fleetStatus(store, run.options),
      onRead: (status) => {
        const v = view(status, run.verified);
        const key = changeKey(v.fields);
        if (key === last) return;
        last = key;
        shown += 1;
        if (out.json) {
          out.raw(`${JSON.stringify({ event: 'status', at: new Date().toISOString(), ...v.fields })}\n`);
          return;
        }
        // A terminal is redrawn in place; a pipe or a file gets one block per change.
        out.raw(out.tty ? CLEAR : `${shown === 1 ? '' : '\n'}fleet status at ${new Date().toISOString()}\n`);
        out.raw(`${[...v.lines, ...v.warnings.map((w) => `warning: ${w}`), v.summary].join('\n')}\n`);
      },
      onError: (error) => out.warn(`cannot read the fleet: ${messageOf(run.onFailure(error))}`),
    });
  } finally {
    stop.dispose();
  }
  out.success(`stopped watching the fleet (${shown} change(s) shown)`, { changes: shown });
  return EXIT_OK;
}
