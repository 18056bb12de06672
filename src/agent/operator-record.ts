import type { IncomingMessage } from 'node:http';
import { HotPatchError, createEvent, type EventBus } from '../core/index.js';
import type { AuditLog } from '../observability/index.js';
import type { TokenCredential } from './token.js';

/**
 * Every operator request the agent accepts is recorded before it acts: a `Requested` event
 * (what, on which target, how the caller was admitted, who they said they are) appended to
 * the audit log and awaited, then published. With `auditMode: 'fail-closed'` (the default) a
 * request that moves forward (apply, promote, unfreeze) is refused when its record cannot be
 * written; one that moves to safety (abort, rollback, freeze) still goes through — refusing
 * it would keep a bad version serving — and its record is kept and written once the log can
 * be (so does a dry run, which changes nothing). `'fail-open'` lets every request through that way.
 */
export type AuditMode = 'fail-closed' | 'fail-open';
export const AUDIT_MODES: readonly AuditMode[] = ['fail-closed', 'fail-open'];
/** Requests that move a target back to safety: never refused for want of a record. */
const TO_SAFETY = new Set(['abort', 'rollback', 'freeze', 'cancel', 'dry-run', 'fleet-rollback']);

/** How a request was admitted, and who its sender says they are. */
export interface RequestIdentity {
  /**
   * unix-socket (the file mode is the check), or the bearer token that admitted it:
   * `token:<name>` for a named token (`http.tokens`), operator-token or read-token for
   * `http.tokenFile` / `http.readTokenFile`; `fleet-rollout` for an order of a signed fleet
   * rollout (its signers are in the record's detail).
   */
  credential: 'unix-socket' | TokenCredential | 'fleet-rollout';
  /** The token's name ("operator" and "read" for the two legacy files); absent on the socket. */
  token?: string;
  /** `x-hotpatch-actor`: self-declared (the CLI sends user@host), kept for the record, never trusted. */
  actor?: string;
}

const identities = new WeakMap<IncomingMessage, RequestIdentity>();
const MAX_ACTOR = 128;

/** Remembers how `req` was admitted (set by the request handler, read by the endpoints). */
export function setIdentity(req: IncomingMessage, credential: RequestIdentity['credential'], token?: string): void {
  const identity: RequestIdentity = { credential };
  if (token !== undefined) identity.token = token;
  const declared = req.headers['x-hotpatch-actor'];
  // Only printable text, bounded: it lands in the audit log and reports.
  if (typeof declared === 'string' && declared.length > 0) identity.actor = declared.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_ACTOR);
  identities.set(req, identity);
}

export function identityOf(req: IncomingMessage): RequestIdentity {
  return identities.get(req) ?? { credential: 'unix-socket' };
}

const roles = new WeakMap<IncomingMessage, 'operate' | 'read'>();

/** Remembers the role `req` was admitted with (what GET /v1/whoami answers). */
export function setRequestRole(req: IncomingMessage, role: 'operate' | 'read'): void {
  roles.set(req, role);
}

export function requestRole(req: IncomingMessage): 'operate' | 'read' {
  return roles.get(req) ?? 'operate';
}

export type RequestRecorder = (req: IncomingMessage, action: string, target: string, detail?: Record<string, unknown>) => Promise<void>;
/** Records an action whose identity is not an HTTP request's (a fleet order), the same way. */
export type ActionRecorder = (who: RequestIdentity, action: string, target: string, detail?: Record<string, unknown>) => Promise<void>;

export function actionRecorder(audit: AuditLog, bus: EventBus, mode: AuditMode): ActionRecorder {
  return async (who, action, target, detail = {}) => {
    const by = `${who.credential}${who.actor === undefined ? '' : ` (${who.actor})`}`;
    const event = createEvent({
      type: 'Requested',
      id: typeof detail.patch === 'string' ? detail.patch : 'operator',
      target,
      version: '',
      reason: `${action} of ${target} requested by ${by}`,
      detail: {
        ...detail,
        action,
        credential: who.credential,
        ...(who.token === undefined ? {} : { token: who.token }),
        ...(who.actor === undefined ? {} : { actor: who.actor }),
      },
    });
    const refuseUnrecorded = mode === 'fail-closed' && !TO_SAFETY.has(action);
    try {
      await audit.append(event, { keep: !refuseUnrecorded });
    } catch (error) {
      if (refuseUnrecorded) {
        throw new HotPatchError(
          'IO',
          `${action} refused: the audit log cannot be written (${(error as Error).message}); operator actions are refused until it can (auditMode "fail-open" would let them through)`,
          { cause: error },
        );
      }
      // Let through: the append kept the record for later and the failure was reported.
    }
    bus.publish(event);
  };
}

export function requestRecorder(audit: AuditLog, bus: EventBus, mode: AuditMode): RequestRecorder {
  const record = actionRecorder(audit, bus, mode);
  return (req, action, target, detail) => record(identityOf(req), action, target, detail);
}
