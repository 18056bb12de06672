import { HotPatchError, boundMessage, recordCallMs, type IsolateHandle } from '../../core/index.js';
import { openChannel, type Channel } from './channel.js';
import type { ResolvedIsolation } from './limits.js';
import { asBuffer, bufferMask, errorFromInfo, errorInfo, type CallReply, type HookName, type LoadRequest } from './protocol.js';

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** performance.now() at the call. */
  started: number;
  promise: Promise<unknown> | undefined;
}

type State = 'loading' | 'ready' | 'dead' | 'terminated';

const MINUTE_MS = 60_000;
/** Idle pings timed when an isolate has loaded: the boundary's own round trip, for the canary's noise floor. */
const OVERHEAD_PINGS = 16;
/** A ping unanswered this long (ms; at most half the call deadline) makes new calls fail at once. */
const STUCK_SUSPECT_MS = 250;
/** A ping unanswered this long (ms; at most the call deadline) after a missed deadline: the isolate is killed as stuck. */
const STUCK_KILL_MS = 1_000;

/**
 * The host's side of one isolated version: its current worker or child (an incarnation), the
 * calls awaiting answers, their deadline, and what happens when it dies.
 *
 * Deadlines: one sweeper timer (never a timer per call) runs while calls are pending. A call
 * past `callTimeoutMs` fails with TIMEOUT; the isolate is then pinged, and once that ping has
 * gone unanswered for 250 ms new calls fail at once (TIMEOUT) rather than pile up in the
 * host's memory; one that does not answer it within a second (or `callTimeoutMs`, if shorter)
 * is stuck (a synchronous loop) and is killed. At most `maxPendingCalls` calls wait at a time (TOO_LARGE past it).
 *
 * Death (exit, crash, out of memory, killed as stuck, a message outside the protocol): every
 * pending call fails with CRASHED, the death listeners are told (the canary trips on a
 * candidate's death), and the next call starts a new incarnation, loading and initialising the
 * same file again, at most `maxRestartsPerMinute` times a minute; past that, calls fail with
 * CRASHED at once. A call waiting for a restart is still held to `callTimeoutMs`.
 *
 * During a canary (`timeInside`), each answer's time inside the isolate is recorded against the
 * caller's promise (core/call-durations.ts) for the judge; `overheadMs` is the boundary's idle
 * round trip, timed with pings when each incarnation has loaded.
 */
export class IsolateClient implements IsolateHandle {
  readonly mode: 'worker' | 'process';
  readonly #settings: ResolvedIsolation;
  readonly #load: LoadRequest;
  /** "xps.a.b 1.0.1 (patch-id)" */
  readonly #what: string;
  /** "in its worker thread" / "in its child process" */
  readonly #where: string;
  #channel: Channel | undefined;
  #state: State = 'loading';
  #ready: Promise<void> = Promise.resolve();
  #nextId = 0;
  readonly #pending = new Map<number, PendingCall>();
  /** Calls waiting for a restart to finish loading (counted against maxPendingCalls too). */
  #waiting = 0;
  #sweeper: NodeJS.Timeout | undefined;
  /** performance.now() of a ping not answered yet (suspected stuck). */
  #pingSent: number | undefined;
  /** Pending pings of the overhead measurement, answered in order. */
  #measuring: ((at: number) => void)[] = [];
  /** Why a child said it was about to die (an uncaught error), reported as its death. */
  #fatal: string | undefined;
  #hooks: readonly HookName[] = [];
  readonly #listeners: ((reason: string) => void)[] = [];
  readonly #restartTimes: number[] = [];
  #onTerminated: (() => void) | undefined;
  restarts = 0;
  death: string | undefined;
  timeInside = false;
  overheadMs: number | undefined;

  private constructor(settings: ResolvedIsolation, load: LoadRequest) {
    this.mode = settings.mode;
    this.#settings = settings;
    this.#load = load;
    this.#what = `${load.subject.target} ${load.subject.version} (${load.subject.patchId})`;
    this.#where = settings.mode === 'worker' ? 'in its worker thread' : 'in its child process';
  }

  /** Starts an isolate and loads the payload in it; rejects (nothing left running) when that fails. */
  static async start(settings: ResolvedIsolation, load: LoadRequest): Promise<IsolateClient> {
    const client = new IsolateClient(settings, load);
    await client.#incarnate();
    return client;
  }

  get id(): number {
    return this.#channel?.id ?? -1;
  }

  get state(): State {
    return this.#state;
  }

  get suspectedStuck(): boolean {
    return this.#pingSent !== undefined;
  }

  /** Which lifecycle hooks the payload exports. */
  get hooks(): readonly HookName[] {
    return this.#hooks;
  }

  onDeath(listener: (reason: string) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const at = this.#listeners.indexOf(listener);
      if (at >= 0) this.#listeners.splice(at, 1);
    };
  }

  /** Calls function (or hook) `index`; the answer, or its error as thrown in the isolate. */
  call(index: number, args: unknown[]): Promise<unknown> {
    if (this.#state !== 'ready') return this.#callWhenReady(index, args);
    const refused = this.#refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const id = ++this.#nextId;
    let entry!: PendingCall;
    const promise = new Promise<unknown>((resolve, reject) => {
      entry = { resolve, reject, started: performance.now(), promise: undefined };
    });
    entry.promise = promise;
    try {
      this.#channel!.send([id, index, args, bufferMask(args)]);
    } catch (error) {
      // The arguments cannot be cloned (a function, say): nothing was sent.
      entry.reject(new HotPatchError('INVALID', `an argument of this call cannot cross into ${this.#what} ${this.#where}: ${errorInfo(error).message}`));
      return promise;
    }
    this.#pending.set(id, entry);
    if (this.#sweeper === undefined) this.#startSweeper();
    return promise;
  }

  /** Why a new call is refused at once, if it is: the isolate looks stuck, or too many calls wait. */
  #refusal(): HotPatchError | undefined {
    // A responsive isolate answers a ping within milliseconds; one silent for longer after a
    // missed deadline is taken for stuck until it answers, and new calls are not queued on it.
    if (this.#pingSent !== undefined && performance.now() - this.#pingSent >= Math.min(STUCK_SUSPECT_MS, this.#settings.callTimeoutMs / 2)) {
      return new HotPatchError(
        'TIMEOUT',
        `${this.#what} is not answering ${this.#where}: a call passed its ${this.#settings.callTimeoutMs} ms deadline and the isolate has not answered a ping since`,
      );
    }
    if (this.#pending.size + this.#waiting >= this.#settings.maxPendingCalls) {
      return new HotPatchError('TOO_LARGE', `${this.#what} already has ${this.#settings.maxPendingCalls} calls waiting ${this.#where} (maxPendingCalls)`, {
        detail: { limit: this.#settings.maxPendingCalls },
      });
    }
    return undefined;
  }

  async terminate(): Promise<void> {
    if (this.#state === 'terminated') return;
    const alive = this.#state === 'ready' || this.#state === 'loading';
    this.#state = 'terminated';
    // A retired version is told nothing more: its listeners (and what they hold: a canary
    // route, the versions before it) must not stay reachable through it.
    this.#listeners.length = 0;
    this.#failPending(new HotPatchError('CRASHED', `${this.#what} was ended (the version was retired, or runtime.endIsolates())`));
    this.#stopSweeper();
    if (!alive || this.#channel === undefined) return;
    const exited = new Promise<void>((resolve) => (this.#onTerminated = resolve));
    // Held until it has exited: a host awaiting the end of a retired version must not exit first.
    this.#channel.hold(true);
    this.#channel.kill('terminated (the version was retired)');
    await exited;
  }

  async #callWhenReady(index: number, args: unknown[]): Promise<unknown> {
    if (this.#state === 'terminated') throw new HotPatchError('CRASHED', `${this.#what} was ended (the version was retired, or runtime.endIsolates())`);
    if (this.#state === 'dead') this.#restart();
    if (this.#pending.size + this.#waiting >= this.#settings.maxPendingCalls) throw this.#refusal()!;
    this.#waiting += 1;
    const timeout = this.#settings.callTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      // Held to the call's deadline like any call: a slow init() on restart must not make it wait longer.
      await Promise.race([
        this.#ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new HotPatchError('TIMEOUT', `${this.#what} was still starting again ${this.#where} after ${timeout} ms (callTimeoutMs)`)),
            timeout,
          );
        }),
      ]);
    } catch (error) {
      if (error instanceof HotPatchError && error.code === 'TIMEOUT') throw error;
      throw new HotPatchError('CRASHED', `${this.#what} could not be started again ${this.#where}: ${boundMessage(errorInfo(error).message, 500)}`);
    } finally {
      clearTimeout(timer);
      this.#waiting -= 1;
    }
    return this.call(index, args);
  }

  /** Starts a new incarnation after a death, within the restart budget (else the budget's error). */
  #restart(): void {
    const now = Date.now();
    while (this.#restartTimes.length > 0 && now - this.#restartTimes[0]! > MINUTE_MS) this.#restartTimes.shift();
    const budget = this.#settings.maxRestartsPerMinute;
    if (this.#restartTimes.length >= budget) {
      throw new HotPatchError(
        'CRASHED',
        budget === 0
          ? `${this.#what} died ${this.#where} (${this.death ?? 'unknown'}) and is not restarted (maxRestartsPerMinute 0)`
          : `${this.#what} died ${this.#where} (${this.death ?? 'unknown'}) after ${this.#restartTimes.length} restarts in the last minute (maxRestartsPerMinute ${budget}): not restarted again yet`,
      );
    }
    this.#restartTimes.push(now);
    this.restarts += 1;
    this.#incarnate().catch(() => undefined); // a failed restart is a death, recorded by #incarnate
  }

  /** A new worker or child with the payload loaded in it; resolves when it answers calls. */
  #incarnate(): Promise<void> {
    this.#state = 'loading';
    this.#pingSent = undefined;
    this.#fatal = undefined;
    this.#measuring = [];
    let loaded!: () => void;
    let failed!: (error: Error) => void;
    let settled = false;
    this.#ready = new Promise<void>((resolve, reject) => {
      loaded = resolve;
      failed = reject;
    });
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      failed(new HotPatchError('LOAD_FAILED', why));
    };
    let channel: Channel;
    try {
      channel = openChannel(this.#settings, {
        message: (message) => {
          if (channel !== this.#channel) return;
          if (Array.isArray(message)) return this.#answer(message);
          switch (message.t) {
            case 'pong':
              return this.#pong();
            case 'fatal':
              this.#fatal = boundMessage(message.message, 1000);
              return;
            case 'loaded':
              if (this.#state !== 'loading') return channel.kill('sent a second "loaded" outside the protocol');
              this.#hooks = message.hooks;
              // Still under the load deadline: an isolate that stops answering right after init is not ready.
              this.#measureOverhead(channel).then(() => {
                clearTimeout(loadTimer);
                if (channel !== this.#channel || this.#state !== 'loading') return;
                settled = true;
                this.#state = 'ready';
                channel.hold(this.#pending.size > 0);
                loaded();
              });
              return;
            case 'load-failed':
              clearTimeout(loadTimer);
              return channel.kill(`failed to load: ${message.message}`);
          }
        },
        exit: (reason) => {
          clearTimeout(loadTimer);
          if (channel !== this.#channel) return;
          const why = boundMessage(this.#fatal === undefined ? reason : `${reason}: ${this.#fatal}`, 1000);
          fail(why);
          for (const resolve of this.#measuring.splice(0)) resolve(Number.NaN);
          if (this.#state === 'terminated') return this.#onTerminated?.();
          this.#died(why);
        },
      });
    } catch (error) {
      // The thread or process could not even be created (EAGAIN under a thread or pid limit …).
      const why = boundMessage(`could not be started: ${errorInfo(error).message}`, 1000);
      this.#channel = undefined;
      fail(why);
      this.#died(why);
      return this.#ready;
    }
    this.#channel = channel;
    const loadTimer = setTimeout(
      () => channel.kill(`did not finish loading within ${this.#settings.loadTimeoutMs} ms (loadTimeoutMs): its import or init() never settled`),
      this.#settings.loadTimeoutMs,
    );
    // Held while loading: a host awaiting the load must not exit under it.
    channel.hold(true);
    channel.send(this.#load);
    return this.#ready;
  }

  /** The end of an incarnation that was not asked for: calls fail, listeners are told, the next call may restart it. */
  #died(why: string): void {
    this.#state = 'dead';
    this.death = why;
    this.#pingSent = undefined;
    this.#stopSweeper();
    this.#failPending(new HotPatchError('CRASHED', `${this.#what} died ${this.#where}: ${why}`));
    for (const listener of [...this.#listeners]) listener(why);
  }

  /**
   * Times OVERHEAD_PINGS idle pings, one after another; `overheadMs` is the fastest. The
   * boundary's own cost is what every trip pays; a busy host (a new child still compiling, a
   * loaded CPU) only ever adds to a trip, and a median taken then made the judge's noise floor
   * (maxLatencyShift × overheadMs) wide enough to promote a 1 ms slowdown.
   */
  async #measureOverhead(channel: Channel): Promise<void> {
    const trips: number[] = [];
    for (let i = 0; i < OVERHEAD_PINGS; i++) {
      const sent = performance.now();
      const answered = await new Promise<number>((resolve) => {
        this.#measuring.push(resolve);
        channel.send({ t: 'ping' });
      });
      if (Number.isNaN(answered)) return;
      trips.push(answered - sent);
    }
    this.overheadMs = Math.min(...trips);
  }

  #pong(): void {
    const measured = this.#measuring.shift();
    if (measured !== undefined) measured(performance.now());
    else this.#pingSent = undefined;
  }

  #answer([id, ok, value, ms, buffer]: CallReply): void {
    const call = this.#pending.get(id);
    if (call === undefined) return; // answered after its deadline: the caller already has its error
    this.#pending.delete(id);
    // The sweeper is not stopped here but at its next tick with nothing pending: calls made
    // one at a time would otherwise start and stop a timer each.
    if (this.timeInside && call.promise !== undefined) recordCallMs(call.promise, ms);
    if (ok === 1) call.resolve(buffer === 1 ? asBuffer(value) : value);
    else call.reject(errorFromInfo(value));
  }

  #failPending(error: HotPatchError): void {
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of calls) call.reject(error);
  }

  #startSweeper(): void {
    const timeout = this.#settings.callTimeoutMs;
    // Not unref'd: a caller awaiting an answer is owed one by its deadline.
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(250, Math.max(5, timeout / 4)));
    this.#channel?.hold(true);
  }

  #stopSweeper(): void {
    if (this.#sweeper === undefined) return;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    if (this.#state === 'ready') this.#channel?.hold(false);
  }

  #sweep(): void {
    const now = performance.now();
    const timeout = this.#settings.callTimeoutMs;
    // Calls sit in the map in the order they started, and all share one deadline.
    for (const [id, call] of this.#pending) {
      if (now - call.started < timeout) break;
      this.#pending.delete(id);
      call.reject(new HotPatchError('TIMEOUT', `${this.#what} did not answer within ${timeout} ms (callTimeoutMs) ${this.#where}`));
      if (this.#pingSent === undefined && this.#state === 'ready') {
        this.#pingSent = now;
        this.#channel?.send({ t: 'ping' });
      }
    }
    // A ping is answered within milliseconds by any isolate whose event loop turns: one silent
    // for a second (or the call deadline, if shorter) after a missed deadline is stuck.
    const patience = Math.min(timeout, STUCK_KILL_MS);
    if (this.#pingSent !== undefined && now - this.#pingSent >= patience && this.#state === 'ready') {
      this.#pingSent = undefined;
      this.#channel?.kill(
        `stopped answering: a call passed its ${timeout} ms deadline and a ping got no answer for ${Math.round(patience)} ms more (stuck in a loop?)`,
      );
    }
    if (this.#pending.size === 0 && this.#pingSent === undefined) this.#stopSweeper();
  }
}
