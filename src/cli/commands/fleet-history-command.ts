import { HotPatchError, messageOf } from '../../core/index.js';
import {
  fleetKeys,
  newestFirst,
  parseFleetId,
  parseRolloutDocument,
  readStoredSpec,
  storedRolloutText,
  verifyRolloutDocument,
  type FleetProblem,
  type KvStore,
  type RolloutDocument,
} from '../../distributed/index.js';
import type { TrustStore } from '../../verification/index.js';
import { EXIT_OK } from '../cli-error.js';
import type { Output } from '../output.js';
import { canaryText, describeState, printable, ringText, statesOf, type HistoryEntry } from './fleet-format.js';

/**
 * `hotpatch fleet history`: every rollout in the store, final ones too, newest first, with who
 * signed its spec and every state it went through (the signed state's trail, then the current
 * state). A rollout that does not verify is still shown, marked so and with why: the history
 * is where an operator looks when something went wrong, forged states included.
 */

export interface HistoryRun {
  prefix: string | undefined;
  trust: TrustStore | undefined;
  rollout: string | undefined;
  limit: number | undefined;
}

interface HistoryItem {
  doc: RolloutDocument;
  /** With a trust store: whether it verified; without: false (not checked). */
  verified: boolean;
  /** Why it does not verify. */
  error?: string;
  /** The spec's signers: counted when verified, else the key ids the envelope claims. */
  signers: string[];
  states: HistoryEntry[];
}

/** A stored text as history shows it; undefined for one that does not even parse (reported as a problem). */
function itemOf(raw: string, trust: TrustStore | undefined, prefix: string): HistoryItem | undefined {
  let doc: RolloutDocument;
  let damaged: string | undefined;
  try {
    doc = parseRolloutDocument(raw);
  } catch (error) {
    // A state that does not even parse (a store writer's): the spec alone still says what the rollout was.
    try {
      doc = parseRolloutDocument(storedRolloutText(readStoredSpec(raw)));
      damaged = `its state cannot be read: ${messageOf(error)}`;
    } catch {
      return undefined;
    }
  }
  // What the envelope says signed it, when the signatures were not (or could not be) counted.
  const claimed = readStoredSpec(raw).signatures.map((s) => s.keyid);
  const unverified = (error: string | undefined): HistoryItem => ({
    doc,
    verified: false,
    ...(error === undefined ? {} : { error }),
    signers: claimed,
    states: statesOf(doc),
  });
  if (trust === undefined || damaged !== undefined) return unverified(damaged);
  try {
    // The prefix too: a spec signed for another fleet, copied here, does not verify.
    const verified = verifyRolloutDocument(raw, trust, undefined, prefix);
    return { doc: verified, verified: true, signers: verified.signers, states: statesOf(verified) };
  } catch (error) {
    return unverified(messageOf(error));
  }
}

export async function runHistory(store: KvStore, out: Output, run: HistoryRun): Promise<number> {
  const keys = fleetKeys(run.prefix);
  let stored: { key: string; value: string }[];
  if (run.rollout !== undefined) {
    const key = `${keys.rollouts}${parseFleetId(run.rollout, 'rollout id')}`;
    const value = await store.get(key);
    if (value === undefined) throw new HotPatchError('NOT_FOUND', `no rollout named ${run.rollout}`);
    stored = [{ key, value }];
  } else {
    stored = await store.list(keys.rollouts);
  }
  const items: HistoryItem[] = [];
  const problems: FleetProblem[] = [];
  for (const { key, value } of stored) {
    const item = itemOf(value, run.trust, keys.prefix);
    if (item !== undefined && key === `${keys.rollouts}${item.doc.id}`) items.push(item);
    else problems.push({ key, error: item === undefined ? 'not a rollout document' : `document id ${JSON.stringify(item.doc.id)} does not match its key` });
  }
  items.sort((a, b) => newestFirst(a.doc, b.doc));
  const shown = run.limit === undefined ? items : items.slice(0, run.limit);

  if (run.trust === undefined) out.line('signatures not checked (pass --trust to verify them)');
  for (const { doc, verified, error, signers, states } of shown) {
    const mark = run.trust === undefined ? '' : verified ? '  verified' : '  DOES NOT VERIFY';
    out.line(
      printable(
        `${doc.id}  ${doc.target} → ${doc.version} (${doc.patchId})  ${doc.state.status}  ring ${ringText(doc, doc.state)}  created ${doc.createdAt}${mark}`,
      ),
    );
    if (error !== undefined) out.line(printable(`  ${error}`));
    out.line(printable(`  spec signed by ${signers.length === 0 ? 'nobody' : signers.join(', ')}${verified ? '' : ' (not checked)'}${canaryText(doc)}`));
    for (const s of states) out.line(`  ${describeState(doc, s)}`);
  }
  for (const p of problems) out.warn(printable(`ignored ${p.key}: ${p.error}`));
  out.success(`${shown.length} rollout(s)${shown.length < items.length ? ` of ${items.length}` : ''}`, {
    verified: run.trust !== undefined,
    rollouts: shown.map(({ doc, verified, error, signers, states }) => ({
      id: doc.id,
      target: doc.target,
      patchId: doc.patchId,
      version: doc.version,
      payloadHash: doc.payloadHash,
      rings: doc.rings,
      soakMs: doc.soakMs,
      emptyRings: doc.emptyRings,
      ...(doc.zdt === undefined ? {} : { zdt: doc.zdt }),
      createdAt: doc.createdAt,
      status: doc.state.status,
      verified,
      ...(error === undefined ? {} : { error }),
      signers,
      stateSigners: verified ? doc.stateSigners : undefined,
      states,
    })),
    problems,
  });
  return EXIT_OK;
}
