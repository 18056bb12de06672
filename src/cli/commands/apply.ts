import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { HotPatchError, decodeJson, isPatchId, type HotPatchEvent } from '../../core/index.js';
import { optionalString, parseCommandArgs } from '../args.js';
import { callAgent, followEvents } from '../agent-client.js';
import { CANARY_FLAGS, CANARY_HELP, CANARY_USAGE, canaryOptionsFromFlags, withCanaryFlags } from '../canary-flags.js';
import { formatCanaryStep } from '../canary-line.js';
import { EXIT_OK, UsageError } from '../cli-error.js';
import { printHelp, type Command } from '../command.js';
import type { Output } from '../output.js';
import { AGENT_FLAGS, AGENT_USAGE, agentOf } from './agent-flags.js';

export const applyCommand: Command = {
  name: 'apply',
  summary: 'apply a patch through a running agent, showing the canary live',
  usage: `hotpatch apply ${AGENT_USAGE} (--plan FILE | --plan-id ID | --target T --patch ID)
               [--repo NAME] [--verifier NAME] [--security NAME] [--installer NAME] [--approver NAME] [--dry-run]
${CANARY_USAGE.replace(/^/gm, '               ')} [--json]

Runs a plan on the agent: fetch, verify, policy, approval, stage, canary, promote or
roll back. --plan FILE is a PatchPlan JSON; --target/--patch build one whose components
default to the agent's "default" repository, verifier, security gate and installer. The
canary flags set the plan's zdt options; with --plan FILE they override the file's zdt
fields (--max-latency-shift also replaces its older maxLatencyRatio); they do not go with
--plan-id (that plan is stored already). A bad value is a usage error (exit 2): nothing runs.
Progress is shown as it happens: one live line on a terminal, plain lines otherwise, each
canary step with its verdict, the rule that decided it and the judge's figures, e.g.
  canary step 2/4 at 5.0%: Successful (no-regression) — 812 calls, 0 errors (baseline 0.00% of 15,400), p=1; latency ×1.04 p=0.62 (mann-whitney, 600 samples)
Exit 0 only if that version serves when the command returns; 1 rejected, rolled back or
waiting (a frozen target). Every --target/--patch apply is a new attempt (a plan of its own).
--dry-run runs the checks a run makes before staging (target, window, fetch and verify,
decryption, security gate, target state, approval read only) and changes nothing: exit 0 if
it would apply.

${CANARY_HELP}`,
  async run(argv, out) {
    const { values, help } = parseCommandArgs(argv, {
      ...AGENT_FLAGS,
      plan: { type: 'string' },
      'plan-id': { type: 'string' },
      'dry-run': { type: 'boolean' },
      target: { type: 'string' },
      patch: { type: 'string' },
      repo: { type: 'string' },
      verifier: { type: 'string' },
      security: { type: 'string' },
      installer: { type: 'string' },
      approver: { type: 'string' },
      ...CANARY_FLAGS,
    });
    if (help) return printHelp(out, this.usage);
    // The flags and the plan are checked before the agent is reached: a usage error changes nothing.
    const body = await requestBody(values);
    const agent = await agentOf(values);
    if (values['dry-run'] === true) {
      // Nothing runs, so there is no progress to follow: the checks are the answer.
      const report = await callAgent(agent, 'POST', '/v1/apply', { ...body, dryRun: true });
      for (const c of (report.checks ?? []) as { check: string; ok: boolean; detail: string }[]) out.line(`${c.ok ? 'ok  ' : 'FAIL'} ${c.check}: ${c.detail}`);
      out.success(String(report.message), report);
      return EXIT_OK;
    }
    const target = typeof body.plan === 'object' ? String((body.plan as { target?: unknown }).target) : undefined;

    const progress = new Progress(out);
    const controller = new AbortController();
    const stream = followEvents(agent, target, (e) => progress.show(e), controller.signal).catch((error: unknown) => {
      if (!controller.signal.aborted) out.warn(`event stream: ${(error as Error).message}`);
    });
    let result: Record<string, unknown>;
    try {
      result = await callAgent(agent, 'POST', '/v1/apply', body);
      // The event that ends the run is published before the answer is sent, but the stream
      // may deliver it a moment after: wait for it (at most 50 ms; a wait has none).
      const final = FINAL_EVENT[String(result.status)];
      if (final !== undefined) await progress.seen((e) => e.type === final && (e.detail?.plan === result.planId || e.id === result.patchId), 50);
    } finally {
      controller.abort();
      await stream;
      progress.end();
    }
    // A plan that had ended before is not run again: the agent's message says so, in text too.
    const headline = result.reused === true ? String(result.message) : `plan ${String(result.planId)}: ${String(result.status)} — ${String(result.reason)}`;
    out.success(headline, result);
    return EXIT_OK;
  },
};

async function requestBody(values: Record<string, unknown>): Promise<Record<string, unknown>> {
  const planFile = optionalString(values, 'plan');
  const planId = optionalString(values, 'plan-id');
  const target = optionalString(values, 'target');
  const patch = optionalString(values, 'patch');
  const chosen = [planFile, planId, target ?? patch].filter((x) => x !== undefined).length;
  if (chosen !== 1) throw new UsageError('give exactly one of --plan FILE, --plan-id ID, or --target T --patch ID');
  // Every flag is checked before anything is read or sent.
  const canary = canaryOptionsFromFlags(values);
  const withCanary = Object.keys(canary).length > 0;
  if (planId !== undefined) {
    if (withCanary) throw new UsageError('canary flags go with --plan FILE or --target/--patch, not --plan-id (that plan is stored already)');
    return { planId };
  }
  if (planFile !== undefined) {
    let text: string;
    try {
      text = await readFile(planFile, 'utf8');
    } catch (cause) {
      throw new UsageError(`--plan ${planFile}: ${(cause as Error).message}`, 'NOT_FOUND', { cause });
    }
    let plan: unknown;
    try {
      plan = decodeJson(text, `plan file ${planFile}`);
    } catch (error) {
      if (error instanceof HotPatchError) throw new UsageError(error.message, error.code, { cause: error });
      throw error;
    }
    if (!withCanary) return { plan };
    if (typeof plan !== 'object' || plan === null || Array.isArray(plan))
      throw new UsageError(`plan file ${planFile} must hold a plan object to take canary flags`);
    const fromFile = plan as Record<string, unknown>;
    return { plan: { ...fromFile, zdt: withCanaryFlags(fromFile.zdt, canary, `plan file ${planFile}: zdt with the canary flags`) } };
  }
  if (target === undefined || patch === undefined) throw new UsageError('--target and --patch go together');
  if (!isPatchId(patch))
    throw new UsageError(
      `--patch ${JSON.stringify(patch.slice(0, 140))} is not a valid patch id (1-128 of [A-Za-z0-9._-], starting with a letter or digit, no "..")`,
    );
  const plan: Record<string, unknown> = {
    // Every apply is a new attempt: a plan id of its own, never an earlier plan's outcome.
    id: attemptId(patch),
    target,
    patch,
    repo: optionalString(values, 'repo') ?? 'default',
    verifier: optionalString(values, 'verifier') ?? 'default',
    security: optionalString(values, 'security') ?? 'default',
    installer: optionalString(values, 'installer') ?? 'default',
  };
  const approver = optionalString(values, 'approver');
  if (approver !== undefined) plan.approver = approver;
  if (withCanary) plan.zdt = canary;
  return { plan };
}

/** On a terminal one line is rewritten as the canary moves; elsewhere each event is a line. */
/** The event a run ending in this plan status publishes (a plan left waiting publishes none). */
const FINAL_EVENT: Readonly<Record<string, string>> = { activated: 'Activated', 'rolled-back': 'RolledBack', failed: 'Failed' };
const FINAL_TYPES = new Set(Object.values(FINAL_EVENT));

class Progress {
  readonly #out: Output;
  readonly #tty: boolean;
  #live = false;
  /** The run-ending events seen so far. */
  readonly #events: HotPatchEvent[] = [];
  #onEvent: (() => void) | undefined;

  /** Resolves once an event matching `match` has arrived (or had already), or after `ms`. */
  seen(match: (e: HotPatchEvent) => boolean, ms: number): Promise<void> {
    if (this.#events.some(match)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#onEvent = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#onEvent = () => {
        if (this.#events.some(match)) done();
      };
    });
  }

  constructor(out: Output) {
    this.#out = out;
    this.#tty = process.stdout.isTTY === true && !out.json;
  }

  show(e: HotPatchEvent): void {
    if (FINAL_TYPES.has(e.type)) {
      this.#events.push(e);
      this.#onEvent?.();
    }
    if (this.#out.json) return;
    const d = e.detail ?? {};
    if (e.type === 'CanaryStep') {
      const text = formatCanaryStep(d);
      if (this.#tty) {
        // One terminal row, so the carriage return rewrites all of it.
        const width = process.stdout.columns ?? 0;
        process.stdout.write(`\r\x1b[K${width > 1 && text.length >= width ? `${text.slice(0, width - 2)}…` : text}`);
        this.#live = true;
        return;
      }
      this.#out.line(text);
      return;
    }
    this.end();
    this.#out.line(`${e.type.padEnd(13)} ${e.id} ${e.version}${e.reason === '' ? '' : `: ${e.reason}`}`);
  }

  end(): void {
    if (this.#live) process.stdout.write('\n');
    this.#live = false;
  }
}

/** `apply-<patch>-<UTC time>-<random>`: unique per attempt, within the 128-character id grammar. */
function attemptId(patch: string): string {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const suffix = `-${stamp}-${randomBytes(2).toString('hex')}`;
  return `apply-${patch.slice(0, 128 - 'apply-'.length - suffix.length)}${suffix}`;
}
