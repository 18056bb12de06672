import { HotPatchError } from '../../core/index.js';
import { parseCommandArgs } from '../args.js';
import { callAgent, type AgentAddress } from '../agent-client.js';
import { EXIT_OK } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import { AGENT_FLAGS, AGENT_HELP, AGENT_USAGE, agentOf } from './agent-flags.js';

interface VersionView {
  version: string;
  patchId: string | null;
  inflight: number;
  isolate?: { mode: 'worker' | 'process'; id: number; state?: string; restarts: number; death?: string };
}
interface TargetView {
  target: string;
  isolation?: 'inline' | 'worker' | 'process';
  active: VersionView;
  previous?: VersionView;
  frozen?: string;
  probation?: { good: true } | { good: false; leftMs: number };
  canary?: { patchId: string; version: string; ratio: number; candidateCalls: number; candidateErrors: number; baselineCalls: number };
}

interface PlanView {
  id: string;
  target: string;
  status: string;
  patch?: string;
  version?: string;
  reason?: string;
}

/** Where an isolated version runs, and whether it had to be started again. */
function isolateText(i: NonNullable<VersionView['isolate']>): string {
  const where = i.mode === 'worker' ? `worker thread ${i.id}` : `child pid ${i.id}`;
  const state = i.state === undefined || i.state === 'ready' ? '' : ` ${i.state}`;
  const died = i.death === undefined ? '' : `, restarted ${i.restarts}× (last death: ${i.death})`;
  return `, ${where}${state}${died}`;
}

/** Plans per request: the agent's largest page. */
const PAGE = 1000;

/**
 * The agent serves plans a page at a time (GET /v1/plans?limit&after); status lists them all,
 * so it follows `next` to the end. An agent that does not page sends no `next`.
 */
async function laterPages(agent: AgentAddress, next: unknown): Promise<PlanView[]> {
  const plans: PlanView[] = [];
  const seen = new Set<string>();
  while (typeof next === 'string') {
    // A cursor seen before would loop for ever: a broken agent is an I/O failure, not a hang.
    if (seen.has(next)) throw new HotPatchError('IO', `the agent's plan pages do not advance (${JSON.stringify(next)} came back)`);
    seen.add(next);
    const page = await callAgent(agent, 'GET', `/v1/plans?limit=${PAGE}&after=${encodeURIComponent(next)}`);
    plans.push(...(page.plans as PlanView[]));
    next = page.next;
  }
  return plans;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'targets, versions, canary progress and plans of a running agent',
  usage: `hotpatch status ${AGENT_USAGE} [--json]

Shows each target's active and previous version (with calls in flight, and for an
isolated target the worker thread or child process each runs in), a running
canary's ratio and figures, frozen targets, and the plans with their status (all of
them: the agent serves plans a page at a time, and status reads every page). A read-only
token (the agent's http.readTokenFile) is enough.

${AGENT_HELP}`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, AGENT_FLAGS);
    if (help) return printHelp(out, this.usage);
    const agent = await agentOf(values);
    const status = await callAgent(agent, 'GET', `/v1/status?limit=${PAGE}`);
    const targets = status.targets as TargetView[];
    const plans = [...(status.plans as PlanView[]), ...(await laterPages(agent, status.next))];
    for (const t of targets) {
      const v = (x: VersionView): string =>
        `${x.version} ${x.patchId === null ? '(built-in)' : `(${x.patchId})`} in flight ${x.inflight}${x.isolate === undefined ? '' : isolateText(x.isolate)}`;
      out.line(`${t.target}${t.isolation === undefined || t.isolation === 'inline' ? '' : `  (isolation: ${t.isolation})`}`);
      const standing =
        t.probation === undefined
          ? ''
          : t.probation.good
            ? ', good'
            : `, in probation ${Math.ceil(t.probation.leftMs / 1000)} s more (a crash before then reverts it; hotpatch confirm ends it)`;
      out.line(`  active:   ${v(t.active)}${standing}`);
      if (t.previous !== undefined) out.line(`  previous: ${v(t.previous)}`);
      if (t.frozen !== undefined) out.line(`  frozen:   ${t.frozen}`);
      if (t.canary !== undefined) {
        const c = t.canary;
        out.line(
          `  canary:   ${c.version} (${c.patchId}) at ${(c.ratio * 100).toFixed(1)}%: ${c.candidateCalls} calls, ${c.candidateErrors} errors; baseline ${c.baselineCalls} calls`,
        );
      }
    }
    if (plans.length > 0) out.line('plans:');
    for (const p of plans)
      out.line(`  ${p.id}  ${p.target}  ${p.status}${p.patch === undefined ? '' : `  ${p.patch}`}${p.reason === undefined ? '' : `  — ${p.reason}`}`);
    out.success(`${targets.length} target(s), ${plans.length} plan(s)`, { targets, plans });
    return EXIT_OK;
  },
};
