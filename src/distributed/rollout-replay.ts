import { HotPatchError } from '../core/index.js';
import { FINAL_ROLLOUT_STATUSES, type RolloutDocument } from './fleet-documents.js';

/**
 * What a reader remembers of each rollout it has accepted: the highest `seq`, and whether it
 * saw a final state. Every state is signed, but a store writer can still put an older signed
 * text back (the spec alone, or an earlier state): its `seq` is lower, and it is refused. And
 * since nothing follows a final state (rolled-back, completed, aborted), a later non-final
 * one for the same rollout is refused too — whatever its `seq`: otherwise a controller led
 * from a replayed state could count its way past the abort.
 *
 * One exception: an operators' `aborted` state is accepted whatever its `seq`. It is final, so
 * a genuine one can only ever be the rollout's last word, and taking it whatever the `seq` lets
 * operators abort a rollout whose stored state a store writer damaged (`abortRollout` then
 * writes over the spec alone, at seq 1).
 *
 * Memory only lasts as long as the process (a restarted agent or controller starts afresh),
 * and is bounded: the oldest rollouts are forgotten past `limit`. It is kept when a rollout
 * is deleted from the store, so a delete then a put of an old text is still a replay.
 */
export class RolloutReplayGuard {
  readonly #seen = new Map<string, { seq: number; final: boolean }>();
  readonly #limit: number;

  constructor(limit = 4096) {
    this.#limit = limit;
  }

  /** Throws INVALID when `doc` goes back on what was already accepted; otherwise remembers it. */
  accept(doc: RolloutDocument): void {
    const seen = this.#seen.get(doc.id);
    const final = FINAL_ROLLOUT_STATUSES.includes(doc.state.status);
    const abort = doc.state.status === 'aborted' && doc.stateSigners.role === 'operator';
    if (seen !== undefined && !abort) {
      if (doc.seq < seen.seq) {
        throw new HotPatchError('INVALID', `rollout ${doc.id}: state ${doc.seq} (${doc.state.status}) is older than state ${seen.seq} already seen: a replay`, {
          detail: { rollout: doc.id, seq: doc.seq, seen: seen.seq },
        });
      }
      if (seen.final && !final) {
        throw new HotPatchError('INVALID', `rollout ${doc.id}: a ${doc.state.status} state after a final one: a replay`, {
          detail: { rollout: doc.id, seq: doc.seq, seen: seen.seq },
        });
      }
    }
    this.#seen.delete(doc.id); // re-inserted below: the Map's order is the order of last use
    this.#seen.set(doc.id, { seq: Math.max(doc.seq, seen?.seq ?? 0), final: final || (seen?.final ?? false) });
    if (this.#seen.size > this.#limit) this.#seen.delete(this.#seen.keys().next().value!);
  }
}
