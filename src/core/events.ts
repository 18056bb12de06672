import { HotPatchError, boundMessage } from './errors.js';

export const EVENT_TYPES = [
  'Planned',
  'Fetched',
  'Verified',
  'Approved',
  'Staged',
  'CanaryStarted',
  'CanaryStep',
  'Promoted',
  'Activated',
  'Aborted',
  'RolledBack',
  'Failed',
  // An operator's request accepted by the agent (who, what), recorded before it acts.
  'Requested',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** One shape for the bus, logs, metrics and the audit log (docs/ARCHITECTURE.md "Events"). */
export interface HotPatchEvent {
  type: EventType;
  /** The patch id the event is about. */
  id: string;
  target: string;
  version: string;
  reason: string;
  /** RFC 3339 UTC timestamp. */
  ts: string;
  detail?: Record<string, unknown>;
}

export type EventInit = Omit<HotPatchEvent, 'ts' | 'reason'> & { ts?: string; reason?: string };

export function createEvent(init: EventInit): HotPatchEvent {
  if (!(EVENT_TYPES as readonly string[]).includes(init.type)) {
    throw new HotPatchError('INVALID', `unknown event type ${JSON.stringify(init.type)}`);
  }
  const event: HotPatchEvent = {
    type: init.type,
    id: init.id,
    target: init.target,
    version: init.version,
    // Bounded and free of registered secrets, like every recorded message (errors.ts).
    reason: boundMessage(init.reason ?? ''),
    ts: init.ts ?? new Date().toISOString(),
  };
  if (init.detail !== undefined) event.detail = init.detail;
  return event;
}
