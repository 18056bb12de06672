import { parseCommandArgs } from '../args.js';
import { callAgent } from '../agent-client.js';
import { EXIT_OK } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { AGENT_FLAGS, AGENT_USAGE, agentOf } from './agent-flags.js';

interface VersionView { version: string; patchId: string | null; inflight: number }
interface TargetView {
  target: string;
  active: VersionView;
  previous?: VersionView;
  frozen?: string;
  canary?: { patchId: string; version: string; ratio: number; candidateCalls: number; candidateErrors: number; baselineCalls: number };
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'targets, versions, canary progress and plans of a running agent',
  usage: `hotpatch status ${AGENT_USAGE} [--json]

Shows each target's active and previous version (with calls in flight), a running
canary's ratio and figures, frozen targets, and the plans with their status.`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, AGENT_FLAGS);
    if (help) return printHelp(out, this.usage);
    const status = await callAgent(await agentOf(values), 'GET', '/v1/status');
    const targets = status.targets as TargetView[];
    const plans = status.plans as { id: string; target: string; status: string; patch?: string; version?: string; reason?: string }[];
    for (const t of targets) {
      const v = (x: VersionView): string => `${x.version} ${x.patchId === null ? '(built-in)' : `(${x.patchId})`} in flight ${x.inflight}`;
      out.line(`${t.target}`);
      out.line(`  active:   ${v(t.active)}`);
      if (t.previous !== undefined) out.line(`  previous: ${v(t.previous)}`);
      if (t.frozen !== undefined) out.line(`  frozen:   ${t.frozen}`);
      if (t.canary !== undefined) {
        const c = t.canary;
        out.line(`  canary:   ${c.version} (${c.patchId}) at ${(c.ratio * 100).toFixed(1)}%: ${c.candidateCalls} calls, ${c.candidateErrors} errors; baseline ${c.baselineCalls} calls`);
      }
    }
    if (plans.length > 0) out.line('plans:');
    for (const p of plans) out.line(`  ${p.id}  ${p.target}  ${p.status}${p.patch === undefined ? '' : `  ${p.patch}`}${p.reason === undefined ? '' : `  — ${p.reason}`}`);
    out.success(`${targets.length} target(s), ${plans.length} plan(s)`, { targets, plans });
    return EXIT_OK;
  },
};
