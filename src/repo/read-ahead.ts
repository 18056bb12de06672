/*
 * One read ahead: while the consumer works on one chunk (hashes it, writes it to staging),
 * the next read is already in the thread pool. FileSystemRepository.openPayload reads its
 * payload this way; without it each read (a round trip through the libuv thread pool and a
 * few promise hops) only starts once the consumer is done with the previous chunk, and the
 * reads, not the consumer, set the pace.
 */

const ignore = (): void => undefined;

/**
 * `source`'s items in order, with the source's next item always requested before the current
 * one is handed on, so that the source's read (in the thread pool) overlaps with whatever the
 * consumer does with the current one (hashing it).
 *
 * Only for sources that hand out a fresh buffer per item and bound their reads themselves
 * (readFileChunks): the source is asked for one item more than the consumer has taken so far.
 * When the consumer stops early (break, throw), the request in flight is let settle and the
 * source is then closed with return() unless it had ended, as a for-await loop over the source
 * would have closed it; an error of the source is passed on as it is.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined = iterator.next();
  try {
    for (;;) {
      const current: Promise<IteratorResult<T>> = pending;
      pending = undefined;
      const result = await current;
      if (result.done === true) return;
      pending = iterator.next();
      // A rejection while the consumer still holds the current item is awaited (and thrown)
      // at the next step; until then it must not count as unhandled.
      pending.catch(ignore);
      yield result.value;
    }
  } finally {
    if (pending !== undefined) {
      let ended: boolean;
      try {
        ended = (await pending).done === true;
      } catch {
        ended = true; // the source failed and finished by itself (its finally has run)
      }
      if (!ended) await iterator.return?.();
    }
  }
}
