import pino, { type DestinationStream, type Logger } from 'pino';
import { HotPatchError, describe, type EventBus, type EventType, type HotPatchEvent } from '../core/index.js';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  /** pino level (default `info`). */
  level?: string;
  /** Where JSON lines go: a writable stream, or a file descriptor (default: standard output). */
  destination?: NodeJS.WritableStream | number;
  /** Fields on every line (default `{ pid, hostname }` as pino sets them). */
  base?: object;
}

/** Events that mean a patch did not go through: logged at `warn`. */
const WARN_EVENTS: ReadonlySet<EventType> = new Set<EventType>(['RolledBack', 'Aborted', 'Failed']);

/** A pino logger writing one JSON object per line, timestamps in ISO 8601. */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  if (typeof options !== 'object' || options === null) throw new HotPatchError('INVALID', `options must be an object, got ${describe(options)}`);
  const level = options.level ?? 'info';
  if (typeof level !== 'string' || !(level in pino.levels.values || level === 'silent')) {
    throw new HotPatchError('INVALID', `options.level must be one of ${Object.keys(pino.levels.values).join(', ')}, silent, got ${describe(level)}`);
  }
  const { destination } = options;
  let stream: DestinationStream;
  if (destination === undefined) stream = pino.destination(1);
  else if (typeof destination === 'number') {
    if (!Number.isInteger(destination) || destination < 0)
      throw new HotPatchError('INVALID', `options.destination must be a file descriptor, got ${describe(destination)}`);
    stream = pino.destination({ dest: destination, sync: true });
  } else if (typeof destination === 'object' && destination !== null && typeof destination.write === 'function') {
    stream = destination as DestinationStream;
  } else {
    throw new HotPatchError('INVALID', `options.destination must be a writable stream or a file descriptor, got ${describe(destination)}`);
  }
  return pino(
    {
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      ...(options.base === undefined ? {} : { base: options.base }),
    },
    stream,
  );
}

/**
 * One structured line per bus event: `msg` is the type and reason; the fields are
 * `eventType`, `patchId`, `target`, `version`, `eventTs` and `detail` (when present). A patch
 * that did not go through (RolledBack, Aborted, Failed) is logged at `warn`, the rest at
 * `info`. Returns the unsubscribe function.
 */
export function logEvents(bus: EventBus, logger: Logger): () => void {
  if (typeof bus !== 'object' || bus === null || typeof bus.subscribe !== 'function')
    throw new HotPatchError('INVALID', `bus must be an EventBus, got ${describe(bus)}`);
  if (typeof logger !== 'object' || logger === null || typeof logger.info !== 'function')
    throw new HotPatchError('INVALID', `logger must be a pino logger, got ${describe(logger)}`);
  return bus.subscribe((event: HotPatchEvent) => {
    const fields: Record<string, unknown> = {
      eventType: event.type,
      patchId: event.id,
      target: event.target,
      version: event.version,
      eventTs: event.ts,
    };
    if (event.detail !== undefined) fields.detail = event.detail;
    const msg = event.reason === '' ? event.type : `${event.type}: ${event.reason}`;
    if (WARN_EVENTS.has(event.type)) logger.warn(fields, msg);
    else logger.info(fields, msg);
  });
}
