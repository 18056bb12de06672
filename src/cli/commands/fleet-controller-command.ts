import { HotPatchError, messageOf } from '../../core/index.js';
import { FleetController, fleetKeys, type KvStore, type RolloutSigner, type RolloutTransition } from '../../distributed/index.js';
import type { TrustStore } from '../../verification/index.js';
import { EXIT_OK } from '../cli-error.js';
import type { Output } from '../output.js';
import { ElectionReportingStore } from './fleet-election-store.js';
import { printable } from './fleet-format.js';
import { interruption } from './fleet-watch.js';

/**
 * `hotpatch fleet controller`: runs one FleetController until SIGTERM or SIGINT. It campaigns
 * in the fleet's election; the leader drives every rollout ring by ring and signs each state
 * it writes with its key; a standby waits and takes over when the leader's lease ends. One
 * line per happening (one JSON object per line with --json):
 *
 *   {"event":"started","controller":ID}
 *   {"event":"standby","controller":ID,"leader":OTHER}      another controller leads
 *   {"event":"leading","controller":ID}
 *   {"event":"transition","rollout":R,"from":S,"to":S,"ring":N,"by":ID,"reason":…}
 *   {"event":"error","code":C,"message":M}                   the controller goes on
 *   {"ok":true,…,"event":"stopped","controller":ID}          resigned, lease revoked; exit 0
 */

export interface ControllerRun {
  controllerId: string;
  trust: TrustStore;
  signer: RolloutSigner;
  prefix: string | undefined;
  leaseTtlMs: number | undefined;
  onFailure: (error: unknown) => unknown;
}

export async function runController(store: KvStore, out: Output, run: ControllerRun): Promise<number> {
  const id = run.controllerId;
  const emit = (event: string, fields: Record<string, unknown>, human: string): void => {
    if (out.json) out.raw(`${JSON.stringify({ event, ...fields })}\n`);
    else out.line(printable(human));
  };
  // Reached before anything is started: a store that cannot answer now is exit 3, not a stream of errors.
  await store.leader(fleetKeys(run.prefix).controller).catch((error: unknown) => {
    throw run.onFailure(error);
  });

  let stopping = false;
  let role: 'standby' | 'leading' | undefined;
  const become = (next: 'standby' | 'leading', fields: Record<string, unknown>, human: string): void => {
    if (stopping || role === next) return;
    role = next;
    emit(next, { controller: id, ...fields }, human);
  };
  const observed = new ElectionReportingStore(store, {
    standby: (leader) => become('standby', { leader }, `standby: ${leader} leads`),
    leading: () => become('leading', {}, `leading: ${id} drives the fleet's rollouts`),
    lost: () => become('standby', { leader: null }, `standby: ${id} lost the leadership, campaigning again`),
  });
  const controller = new FleetController({
    store: observed,
    controllerId: id,
    trust: run.trust,
    signer: run.signer,
    ...(run.prefix === undefined ? {} : { prefix: run.prefix }),
    ...(run.leaseTtlMs === undefined ? {} : { leaseTtlMs: run.leaseTtlMs }),
    onError: (error) => {
      if (stopping) return;
      const e = run.onFailure(error);
      const code = e instanceof HotPatchError ? e.code : 'INTERNAL';
      if (out.json) out.raw(`${JSON.stringify({ event: 'error', code, message: messageOf(e) })}\n`);
      else out.warn(printable(`${code}: ${messageOf(e)}`));
    },
    onTransition: (t: RolloutTransition) => {
      const reason = t.to.reason === undefined ? {} : { reason: t.to.reason };
      const human = `rollout ${t.rollout}: ${t.from.status} → ${t.to.status} at ring ${t.to.ring}${t.to.reason === undefined ? '' : ` (${t.to.reason})`}`;
      emit('transition', { rollout: t.rollout, from: t.from.status, to: t.to.status, ring: t.to.ring, by: t.by, ...reason }, human);
    },
  });

  const stop = interruption(out);
  try {
    emit('started', { controller: id }, `controller ${id} started (key ${run.signer.keyid}), campaigning`);
    controller.start();
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    stopping = true;
    // Resigns and revokes the lease: a standby takes over now, not a lease TTL later.
    await controller.stop();
  } finally {
    stop.dispose();
  }
  const by = stop.by();
  out.success(`controller ${id} stopped${by === undefined ? '' : ` (${by})`}`, { event: 'stopped', controller: id });
  return EXIT_OK;
}
