import type { Watcher } from 'etcd3';
import type { EtcdOperations } from './etcd-operations.js';

/**
 * The etcd3 watchers of one store: the prefix watches it hands out, and the key watches its
 * campaigns and leaderships wait on.
 *
 * A watcher counts as open once etcd confirmed it, within the operation deadline (a watch
 * stream has no gRPC deadline: the operation's timeout ends the wait). etcd3 resumes a
 * watcher after a disconnection from the last revision it saw, so no event is lost unless etcd
 * compacted it meanwhile (then the watcher reports an error). A watch served by a member that
 * is cut off from the quorum receives nothing until it reconnects (etcd3 cannot ask etcd to
 * cancel watches without a leader), which is why a leadership never relies on its watch
 * alone (`etcd-lease.ts`). Cancelling is bounded: a dead connection may never confirm it.
 */
export class EtcdWatchers {
  readonly #open = new Set<Watcher>();

  constructor(private readonly operations: EtcdOperations) {}

  /** Whether `watcher` is open (neither cancelled nor given up on). */
  has(watcher: Watcher): boolean {
    return this.#open.has(watcher);
  }

  /** Builds a watcher, lets `setup` attach its listeners, and waits (within the deadline) until etcd confirmed it. */
  async open(what: string, build: () => Watcher, setup: (watcher: Watcher) => void): Promise<Watcher> {
    this.operations.assertOpen();
    const watcher = build();
    // Every (re)creation is a request to etcd.
    watcher.on('connecting', () => this.operations.countRequest());
    setup(watcher);
    this.#open.add(watcher);
    try {
      await this.operations.call(
        what,
        () =>
          new Promise<void>((resolve, reject) => {
            watcher.once('connected', () => resolve());
            watcher.once('error', reject);
          }),
        'read',
      );
    } catch (error) {
      await this.cancel(watcher);
      throw error;
    }
    return watcher;
  }

  /** Cancels a watcher; bounded, since a dead connection may never confirm the cancel. */
  async cancel(watcher: Watcher): Promise<void> {
    if (!this.#open.delete(watcher)) return;
    watcher.removeAllListeners('put');
    watcher.removeAllListeners('delete');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      watcher.cancel().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.operations.callTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  async cancelAll(): Promise<void> {
    await Promise.all([...this.#open].map((w) => this.cancel(w)));
  }
}
