/**
 * The agent's dashboard: targets, the live canary, the timeline, plans, approvals and the audit
 * chain, from the admin API and its event stream; operator actions behind a confirmation.
 */
import { Lost, SignedOut, follow, getJson, post, session, type Fleet, type HotPatchEvent, type PlanRow, type Status } from './api.js';
import { el, fill } from './dom.js';
import { approvalsView, canaryView, fleetView, lookOf, plansView, summaryView, targetsView, timelineView, type Action, type CanaryLook } from './views.js';

const app = document.getElementById('app')!;
const live = document.getElementById('live')!;
const signOutButton = document.getElementById('sign-out') as HTMLButtonElement;

interface View {
  status: Status | undefined;
  plans: PlanRow[];
  events: HotPatchEvent[];
  looks: Map<string, CanaryLook[]>;
  focus: string | undefined;
  operate: boolean;
  stop: AbortController;
  error: string | undefined;
  /** In a fleet: the fleet as its store holds it (read every few seconds: its changes are not this agent's events). */
  fleet: Fleet | undefined;
  followingFleet: boolean;
}
let view: View | undefined;
let refreshing: Promise<void> | undefined;
let again = false;

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function badge(text: string, ok: boolean | undefined): void {
  live.textContent = text;
  live.className = `badge${ok === undefined ? '' : ok ? ' ok' : ' bad'}`;
}

function showSignIn(message?: string): void {
  view?.stop.abort();
  view = undefined;
  signOutButton.hidden = true;
  fill(document.getElementById('who')!, '');
  badge('signed out', undefined);
  const input = el('input', { id: 'token', name: 'token', type: 'password', required: '', autocomplete: 'off' });
  const error = el('p', { id: 'sign-in-error', class: 'error', role: 'alert' }, message ?? '');
  const form = el('form', { id: 'sign-in' }, el('label', { for: 'token' }, 'Token'), input, el('button', { type: 'submit' }, 'Sign in'), error);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    performance.mark('hotpatch-sign-in-submitted');
    session.set(input.value);
    void start().catch((err: unknown) => {
      session.clear();
      fill(error, err instanceof SignedOut ? 'The agent refused this token.' : `The agent cannot be reached: ${(err as Error).message}`);
    });
  });
  fill(
    app,
    el(
      'section',
      { class: 'sign-in' },
      el('h2', {}, 'Sign in'),
      el(
        'p',
        {},
        "This agent's dashboard needs one of its tokens: the operator's, or a read-only one. The page keeps it in memory only, and forgets it when the page closes or the connection to the agent is lost.",
      ),
      form,
    ),
  );
  input.focus();
  // What the dashboard-render benchmark times (with the two marks below).
  if (performance.getEntriesByName('hotpatch-sign-in-shown').length === 0) performance.mark('hotpatch-sign-in-shown');
}

function record(v: View, e: HotPatchEvent): void {
  v.events.push(e);
  if (v.events.length > 500) v.events.splice(0, v.events.length - 500);
  if (e.type === 'CanaryStarted') v.looks.set(e.target, []);
  if (e.type === 'CanaryStep') v.looks.set(e.target, [...(v.looks.get(e.target) ?? []), lookOf(e)]);
}

function render(): void {
  const v = view;
  if (v === undefined || v.status === undefined) return;
  const targets = targetsView(v.status, v.operate);
  for (const row of targets.querySelectorAll<HTMLTableRowElement>('tbody tr')) {
    row.addEventListener('click', (ev) => {
      if ((ev.target as HTMLElement).closest('button') !== null) return;
      v.focus = v.focus === row.dataset.target ? undefined : row.dataset.target;
      render();
    });
  }
  fill(
    app,
    v.error === undefined ? null : el('p', { class: 'error', role: 'alert' }, v.error),
    summaryView(v.status),
    targets,
    canaryView(v.status, v.looks),
    v.fleet === undefined ? null : fleetView(v.fleet),
    el('div', { class: 'columns' }, timelineView(v.events, v.focus), el('div', {}, plansView(v.plans), approvalsView(v.events))),
  );
}

/** The view ends: the token is dropped and the sign-in form shown (only for the view still current). */
function end(v: View, error: unknown): void {
  if (v !== view) return;
  session.clear();
  showSignIn(
    error instanceof SignedOut
      ? 'The agent no longer accepts this token: sign in again.'
      : `The connection to the agent was lost (${(error as Error).message}); sign in again once it is back.`,
  );
}

/** Status and plans again: at most one fetch at a time and one every 300 ms (events arriving meanwhile ask for one more). */
function refresh(): Promise<void> {
  if (refreshing !== undefined) {
    again = true;
    return refreshing;
  }
  const v = view;
  if (v === undefined) return Promise.resolve();
  refreshing = (async () => {
    try {
      const [s, p] = await Promise.all([getJson<Status>('/v1/status'), getJson<{ plans: PlanRow[] }>('/v1/plans?limit=50')]);
      if (v !== view) return;
      const first = v.status === undefined;
      v.status = s;
      v.plans = p.plans;
      v.error = undefined;
      render();
      if (first) performance.mark('hotpatch-first-render');
      if (s.fleet !== undefined && !v.followingFleet) void followFleet(v);
    } catch (error) {
      if (error instanceof SignedOut || error instanceof Lost) return end(v, error);
      v.error = `Cannot read the agent's status: ${(error as Error).message}`;
      render();
    } finally {
      await pause(300);
      refreshing = undefined;
      if (again) {
        again = false;
        void refresh();
      }
    }
  })();
  return refreshing;
}

const QUESTIONS: Record<Action, (t: string) => string> = {
  promote: (t) => `Promote the canary of ${t} now, to every call?`,
  abort: (t) => `Abort the canary of ${t}? Every call goes back to the baseline.`,
  rollback: (t) => `Roll ${t} back to its previous version?`,
  freeze: (t) => `Freeze ${t}? No patch is applied to it until it is unfrozen.`,
  unfreeze: (t) => `Unfreeze ${t}? Plans waiting for it go on.`,
  confirm: (t) => `Confirm the active version of ${t} good now (end its probation)?`,
};

function ask(question: string): Promise<boolean> {
  const dialog = document.getElementById('confirm') as HTMLDialogElement;
  fill(document.getElementById('confirm-text')!, question);
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

app.addEventListener('click', (ev) => {
  const button = (ev.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
  if (button === null || view === undefined) return;
  const action = button.dataset.action as Action;
  const target = button.dataset.target!;
  void (async () => {
    if (!(await ask(QUESTIONS[action](target)))) return;
    const reason = `${action} from the dashboard`;
    const body = action === 'promote' || action === 'unfreeze' ? { target } : { target, reason };
    const v = view!;
    try {
      const reply = await post(`/v1/${action}`, body);
      toast(reply.ok ? reply.message : `${reply.code ?? 'refused'}: ${reply.message}`, reply.ok);
    } catch (error) {
      if (error instanceof SignedOut || error instanceof Lost) return end(v, error);
      toast(`not sent: ${(error as Error).message}`, false);
    }
    await refresh();
  })();
});

function toast(text: string, ok: boolean): void {
  const note = el('div', { class: `toast ${ok ? 'ok' : 'bad'}`, role: 'status' }, text);
  document.body.appendChild(note);
  setTimeout(() => note.remove(), 6000);
}

signOutButton.addEventListener('click', () => {
  session.clear();
  showSignIn();
});

/** The event stream, for as long as the view lives: its end (the agent stopped?) ends the view. */
async function stream(v: View): Promise<void> {
  try {
    await follow(
      (e) => {
        if (v !== view) return;
        record(v, e);
        render();
        void refresh();
      },
      () => {
        badge('live', true);
        void refresh();
      },
      v.stop.signal,
    );
  } catch (error) {
    if (!v.stop.signal.aborted) end(v, error);
  }
}

/** Signed in: the recent events, who we are, then the stream and the status. Throws when the token or the agent fails. */
async function start(): Promise<void> {
  const v: View = {
    status: undefined,
    plans: [],
    events: [],
    looks: new Map(),
    focus: undefined,
    operate: false,
    stop: new AbortController(),
    error: undefined,
    fleet: undefined,
    followingFleet: false,
  };
  const who = await getJson<{ role?: string; tokenName?: string }>('/v1/whoami');
  const recent = await getJson<{ events: HotPatchEvent[] }>('/v1/events/recent?limit=500');
  view?.stop.abort();
  view = v;
  for (const e of recent.events) record(v, e);
  v.operate = who.role === 'operate';
  signOutButton.hidden = false;
  badge('connecting…', undefined);
  fill(document.getElementById('who')!, `signed in as ${who.tokenName ?? '?'} (${v.operate ? 'operator' : 'read-only'})`);
  void stream(v);
  await refresh();
}

/** While the agent is in a fleet, its agents and rollouts every 5 s. */
async function followFleet(v: View): Promise<void> {
  v.followingFleet = true;
  while (v === view && v.status?.fleet !== undefined) {
    try {
      v.fleet = await getJson<Fleet>('/v1/fleet');
      render();
    } catch (error) {
      if (error instanceof SignedOut || error instanceof Lost) return end(v, error);
    }
    await pause(5_000);
  }
  v.followingFleet = false;
}

showSignIn();
