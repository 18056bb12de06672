import { emitRedactedWarning } from './secrets.js';
import diagnosticsChannel from 'node:diagnostics_channel';
import { createEvent, type EventInit, type EventType, type HotPatchEvent } from './events.js';

/** Any tool can listen without importing us: `diagnostics_channel.subscribe(EVENT_CHANNEL, fn)`. */
export const EVENT_CHANNEL = 'xps.hotpatch.event';

export type EventListener = (event: HotPatchEvent) => void;

export interface SubscribeOptions {
  /** Only these event types reach the listener. */
  types?: readonly EventType[];
  /** Only events for this target reach the listener. */
  target?: string;
}

/**
 * Synchronous fan-out: a listener sees an event before `publish` returns, so an audit log
 * can record it before the pipeline moves on. A throwing listener does not stop the
 * pipeline or the other listeners; its error goes to `onListenerError` (by default a
 * process warning), never silently nowhere.
 */
export class EventBus {
  readonly #listeners = new Set<{ fn: EventListener; options: SubscribeOptions }>();
  readonly #channel = diagnosticsChannel.channel(EVENT_CHANNEL);
  readonly #onListenerError: (error: unknown, event: HotPatchEvent) => void;

  constructor(options: { onListenerError?: (error: unknown, event: HotPatchEvent) => void } = {}) {
    this.#onListenerError =
      options.onListenerError ??
      ((error, event) => {
        // A message string, not the Error: Node ignores `code` for Error warnings.
        emitRedactedWarning(
          `event listener threw while handling ${event.type} for ${event.target}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
          {
            code: 'HOTPATCH_LISTENER_FAILED',
          },
        );
      });
  }

  subscribe(fn: EventListener, options: SubscribeOptions = {}): () => void {
    const entry = { fn, options };
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  publish(init: HotPatchEvent | EventInit): HotPatchEvent {
    const event = createEvent(init);
    for (const { fn, options } of [...this.#listeners]) {
      if (options.types !== undefined && !options.types.includes(event.type)) continue;
      if (options.target !== undefined && options.target !== event.target) continue;
      try {
        fn(event);
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
    if (this.#channel.hasSubscribers) this.#channel.publish(event);
    return event;
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }
}

export const defaultEventBus = new EventBus();
