import { HotPatchError, recordCallMs, type IsolateHandle } from '../../core/index.js';
import { openChannel, type Channel } from './channel.js';
import type { ResolvedIsolation } from './limits.js';
import { errorFromInfo, type CallReply, type HookName, type LoadRequest } from './protocol.js';

interface PendingCall {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** performance.now() at the call. */
  started: number;
  promise: Promise<unknown> | undefined;
}

type State = 'loading' | 'ready' | 'dead' | 'terminated';

const MINUTE_MS = 60_000;
const OVERHEAD_RING = 128;

/**
 * The host's side of one isolated version: its current worker or child (an incarnation), the
 * calls awaiting answers, their deadline, and what happens when it dies.
 *
 * Deadlines: one sweeper timer (never a timer per call) runs while calls are pending. A call
 * past `callTimeoutMs` fails with TIMEOUT; the isolate is then pinged, and one that does not
 * answer the ping within another `callTimeoutMs` is stuck (a synchronous loop) and is killed.
 *
 * Death (exit, crash, out of memory, killed as stuck): every pending call fails with CRASHED,
 * the death listeners are told (the canary trips on a candidate's death), and the next call
 * starts a new incarnation, loading and initialising the same file again, at most
 * `maxRestartsPerMinute` times a minute; past that, calls fail with CRASHED at once.
 *
 * Each answer carries how long the call ran inside the isolate; it is recorded against the
 * caller's promise (core/call-durations.ts) for the canary's latency comparison.
 */
export class IsolateClient implements IsolateHandle {
  readonly mode: 'worker' | 'process';
  readonly #settings: ResolvedIsolation;
  readonly #load: LoadRequest;
  readonly #what: string;
  #channel!: Channel;
  #state: State = 'loading';
  #ready!: Promise<void>;
  #nextId = 0;
  readonly #pending = new Map<number, PendingCall>();
  #sweeper: NodeJS.Timeout | undefined;
  /** performance.now() of a ping not answered yet. */
  #pingSent: number | undefined;
  /** Why the current incarnation is being killed (reported instead of its exit code). */
  #killReason: string | undefined;
  #hooks: readonly HookName[] = [];
  readonly #listeners: ((reason: string) => void)[] = [];
  readonly #restartTimes: number[] = [];
  restarts = 0;
  death: string | undefined;
  timeInside = false;
  /** Recent (round trip − time inside) of answered calls, ms: a ring for `overheadMs`. */
  readonly #overheads = new Float64Array(OVERHEAD_RING);
  #overheadCount = 0;

  private constructor(settings: ResolvedIsolation, load: LoadRequest) {
    this.mode = settings.mode;
    this.#settings = settings;
    this.#load = load;
    this.#what = `${load.subject.target} ${load.subject.version} (${load.subject.patchId}) in its ${settings.mode === 'worker' ? 'worker thread' : 'child process'}`;
  }

  /** Starts an isolate and loads the payload in it; LOAD_FAILED (and nothing left running) when that fails. */
  static async start(settings: ResolvedIsolation, load: LoadRequest): Promise<IsolateClient> {
    const client = new IsolateClient(settings, load);
    await client.#incarnate();
    return client;
  }

  get id(): number {
    return this.#channel.id;
  }

  get state(): State {
    return this.#state;
  }

  get overheadMs(): number | undefined {
    const n = Math.min(this.#overheadCount, OVERHEAD_RING);
    if (n === 0) return undefined;
    const sorted = this.#overheads.slice(0, n).sort();
    return sorted[n >> 1];
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
    const id = ++this.#nextId;
    let entry!: PendingCall;
    const promise = new Promise<unknown>((resolve, reject) => {
      entry = { resolve, reject, started: performance.now(), promise: undefined };
    });
    entry.promise = promise;
    try {
      this.#channel.send([id, index, args]);
    } catch (error) {
      // The arguments cannot be structured-cloned (a function, say): nothing was sent.
      entry.reject(error);
      return promise;
    }
    this.#pending.set(id, entry);
    if (this.#sweeper === undefined) this.#startSweeper();
    return promise;
  }

  async terminate(): Promise<void> {
    if (this.#state === 'terminated') return;
    const wasAlive = this.#state === 'ready' || this.#state === 'loading';
    this.#state = 'terminated';
    // A retired version is told nothing more: its listeners (and what they hold: a canary
    // route, the versions before it) must not stay reachable through it.
    this.#listeners.length = 0;
    this.#failPending(new HotPatchError('CRASHED', `${this.#what} was terminated (the version was retired)`));
    if (!wasAlive) return;
    const exited = new Promise<void>((resolve) => (this.#onExit = resolve));
    this.#killReason = 'terminated';
    // Held until it has exited: a host awaiting the end of a retired version must not exit first.
    this.#channel.hold(true);
    this.#channel.kill();
    await exited;
  }

  #onExit: (() => void) | undefined;

  async #callWhenReady(index: number, args: unknown[]): Promise<unknown> {
    if (this.#state === 'dead') {
      const now = Date.now();
      while (this.#restartTimes.length > 0 && now - this.#restartTimes[0]! > MINUTE_MS) this.#restartTimes.shift();
      if (this.#restartTimes.length >= this.#settings.maxRestartsPerMinute) {
        throw new HotPatchError(
          'CRASHED',
          `${this.#what} died (${this.death ?? 'unknown'}) and was restarted ${this.#restartTimes.length} times in the last minute (maxRestartsPerMinute ${this.#settings.maxRestartsPerMinute}): not restarted again yet`,
        );
      }
      this.#restartTimes.push(now);
      this.restarts += 1;
      this.#incarnate().catch(() => undefined); // the failure is the death it records, seen below
    }
    if (this.#state === 'terminated') throw new HotPatchError('CRASHED', `${this.#what} was terminated (the version was retired)`);
    try {
      await this.#ready;
    } catch (error) {
      throw new HotPatchError('CRASHED', `${this.#what} could not be started again: ${(error as Error).message}`);
    }
    return this.call(index, args);
  }

  /** A new worker or child with the payload loaded in it. */
  #incarnate(): Promise<void> {
    this.#state = 'loading';
    this.#killReason = undefined;
    this.#pingSent = undefined;
    let loaded!: () => void;
    let failed!: (error: Error) => void;
    let loadSettled = false;
    this.#ready = new Promise<void>((resolve, reject) => {
      loaded = resolve;
      failed = reject;
    });
    const loadTimer = setTimeout(() => {
      this.#killReason = `did not finish loading within ${this.#settings.loadTimeoutMs} ms (loadTimeoutMs): its import or init() never settled`;
      this.#channel.kill();
    }, this.#settings.loadTimeoutMs);
    const channel = openChannel(this.#settings, {
      message: (message) => {
        if (channel !== this.#channel) return;
        if (Array.isArray(message)) return this.#answer(message);
        if (message.t === 'pong') {
          this.#pingSent = undefined;
          return;
        }
        clearTimeout(loadTimer);
        channel.hold(this.#pending.size > 0);
        if (message.t === 'loaded') {
          loadSettled = true;
          this.#hooks = message.hooks;
          this.#state = 'ready';
          loaded();
        } else {
          this.#killReason = `failed to load: ${message.message}`;
          channel.kill();
        }
      },
      exit: (reason) => {
        clearTimeout(loadTimer);
        if (channel !== this.#channel) return;
        const why = this.#killReason ?? reason;
        if (!loadSettled) {
          loadSettled = true;
          failed(new HotPatchError('LOAD_FAILED', `${this.#what} ${why}`));
        }
        if (this.#state === 'terminated') {
          this.#onExit?.();
          return;
        }
        this.#state = 'dead';
        this.death = why;
        this.#stopSweeper();
        this.#failPending(new HotPatchError('CRASHED', `${this.#what} ${why}`));
        for (const listener of this.#listeners) listener(why);
      },
    });
    this.#channel = channel;
    // Held while loading: a host awaiting the load must not exit under it.
    channel.hold(true);
    channel.send(this.#load);
    return this.#ready;
  }

  #answer([id, ok, value, ms]: CallReply): void {
    const call = this.#pending.get(id);
    if (call === undefined) return; // answered after its deadline: the caller already has its error
    this.#pending.delete(id);
    // The sweeper is not stopped here but at its next tick with nothing pending: calls made
    // one at a time would otherwise start and stop a timer each.
    if (this.timeInside && call.promise !== undefined && typeof ms === 'number') {
      recordCallMs(call.promise, ms);
      this.#overheads[this.#overheadCount++ % OVERHEAD_RING] = performance.now() - call.started - ms;
    }
    if (ok === 1) call.resolve(value);
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
    this.#channel.hold(true);
  }

  #stopSweeper(): void {
    if (this.#sweeper === undefined) return;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    if (this.#state === 'ready') this.#channel.hold(false);
  }

  #sweep(): void {
    const now = performance.now();
    const timeout = this.#settings.callTimeoutMs;
    // Calls sit in the map in the order they started, and all share one deadline.
    for (const [id, call] of this.#pending) {
      if (now - call.started < timeout) break;
      this.#pending.delete(id);
      call.reject(new HotPatchError('TIMEOUT', `${this.#what} did not answer within ${timeout} ms (callTimeoutMs)`));
      if (this.#pingSent === undefined && this.#state === 'ready') {
        this.#pingSent = now;
        this.#channel.send({ t: 'ping' });
      }
    }
    if (this.#pingSent !== undefined && now - this.#pingSent >= timeout && this.#state === 'ready') {
      this.#killReason = `stopped answering: a call passed its ${timeout} ms deadline and a ping got no answer for ${timeout} ms more (stuck in a loop?)`;
      this.#pingSent = undefined;
      this.#channel.kill();
    }
    if (this.#pending.size === 0 && this.#pingSent === undefined) this.#stopSweeper();
  }
}
