/*
 * Signed agent reports as data: the stored form, who may sign it, the replay memory, what a
 * member and a registration write — without a controller (agent-report-signing.test.ts has
 * the live fleet).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { decodeJson, encodeBase64 } from '../../src/core/index.js';
import {
  AGENT_REPORT_PAYLOAD_TYPE,
  AgentReportGuard,
  EmbeddedStore,
  FleetMember,
  readAgentReport,
  signAgentReport,
  storedAgentReportText,
  type AgentDocument,
  type FleetMemberOptions,
  type KvStore,
  type Lease,
} from '../../src/distributed/index.js';
import { AgentRegistration } from '../../src/distributed/agent-registration.js';
import { assertCode } from '../support/assertions.js';
import { AGENT_IDS, FLEET_AGENTS_TRUST, FLEET_TRUST, KEYS, T, agentSigner, signerOf, testPrefix, waitFor } from './fleet-helpers.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-agent-report-verify-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const STARTED = '2030-01-02T03:04:05.678Z';
const doc = (agentId: string, extra: Partial<AgentDocument> = {}): AgentDocument => ({
  agentId,
  ring: 0,
  targets: { [T]: { version: '1.0.1', phase: 'failed', health: 'unhealthy', patchId: 'fix-1', rollout: 'r-1', reason: 'boom', updatedAt: STARTED } },
  startedAt: STARTED,
  ...extra,
});
const signed = (d: AgentDocument, seq = 1, agentId = d.agentId): string => storedAgentReportText(signAgentReport(d, seq, agentSigner(agentId)));
/** The stored value of a signed report, to take apart. */
const valueOf = (text: string): { report: { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] } } =>
  decodeJson(text, 'test') as never;

test("a signed report verifies against the agents role only with its own agent's key, and reads back as written", () => {
  const text = signed(doc('rec-0'), 7);
  const read = readAgentReport(text, FLEET_AGENTS_TRUST);
  assert.deepEqual(read, { doc: doc('rec-0'), seq: 7, signedBy: 'rec-0' });
  assert.equal(valueOf(text).report.payloadType, AGENT_REPORT_PAYLOAD_TYPE);
  // The same payload under rec-1's signature, or rec-0's document signed by rec-1: not rec-0's report.
  assert.throws(() => readAgentReport(signed(doc('rec-0'), 7, 'rec-1'), FLEET_AGENTS_TRUST), assertCode('UNTRUSTED_KEY', /not signed by its own key rec-0/));
  // Unsigned with the role: not counted.
  assert.throws(() => readAgentReport(JSON.stringify(doc('rec-0')), FLEET_AGENTS_TRUST), assertCode('INVALID', /not signed/));
  // No signature at all.
  const bare = valueOf(text);
  bare.report.signatures = [];
  assert.throws(() => readAgentReport(JSON.stringify(bare), FLEET_AGENTS_TRUST), assertCode('THRESHOLD_NOT_MET', /no signatures/));
});

test('without an agents role, plain and signed reports are both read as stored, no signature checked (the weaker mode)', () => {
  assert.deepEqual(readAgentReport(JSON.stringify(doc('rec-0'))), { doc: doc('rec-0') });
  assert.deepEqual(readAgentReport(JSON.stringify(doc('rec-0')), FLEET_TRUST), { doc: doc('rec-0') });
  // Signed by the wrong key: read all the same (nothing is checked without the role).
  assert.deepEqual(readAgentReport(signed(doc('rec-0'), 3, 'rec-1'), FLEET_TRUST), { doc: doc('rec-0'), seq: 3 });
});

test('the stored form is parsed strictly: payload type, fields, seq and startedAt', () => {
  const text = signed(doc('rec-0'));
  const refused: [string, string, RegExp][] = [
    ['an unknown field beside the report', JSON.stringify({ ...valueOf(text), extra: 1 }), /unknown field "extra"/],
    ['another payload type', JSON.stringify({ report: { ...valueOf(text).report, payloadType: 'application/vnd.xps.hotpatch.rollout+json' } }), /payloadType/],
  ];
  const payload = (body: unknown): string =>
    JSON.stringify({ report: { ...valueOf(text).report, payload: encodeBase64(new TextEncoder().encode(JSON.stringify(body))) } });
  refused.push(['seq 0', payload({ ...doc('rec-0'), seq: 0 }), /seq/]);
  refused.push(['no seq', payload(doc('rec-0')), /seq/]);
  refused.push(['no startedAt', payload({ ...doc('rec-0', { startedAt: undefined }), seq: 1 }), /startedAt is required/]);
  refused.push(['an unknown payload field', payload({ ...doc('rec-0'), seq: 1, verified: true }), /unknown field "verified"/]);
  for (const [what, bad, message] of refused) {
    for (const trust of [undefined, FLEET_AGENTS_TRUST]) assert.throws(() => readAgentReport(bad, trust), assertCode('INVALID', message), what);
  }
});

test("property: a signed report with any payload byte changed, or its signature swapped for another agent's, never verifies", () => {
  const agents = AGENT_IDS.slice(0, 8);
  fc.assert(
    fc.property(
      fc.constantFrom(...agents),
      fc.constantFrom(...agents),
      fc.integer({ min: 1, max: 2 ** 31 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      fc.boolean(),
      (agentId, other, seq, at, flip, keepKeyid) => {
        const text = signed(doc(agentId), seq);
        assert.equal(readAgentReport(text, FLEET_AGENTS_TRUST).signedBy, agentId);
        const value = valueOf(text);
        const bytes = Buffer.from(value.report.payload, 'base64');
        bytes[at % bytes.length]! ^= flip;
        const changed = { report: { ...value.report, payload: bytes.toString('base64') } };
        assert.throws(() => readAgentReport(JSON.stringify(changed), FLEET_AGENTS_TRUST));
        if (other === agentId) return;
        // Another agent's signature, over the same payload or over its own report: under either key id.
        const theirs = valueOf(signed(doc(other), seq)).report.signatures[0]!;
        const mine = valueOf(signed(doc(agentId), seq, other)).report.signatures[0]!;
        for (const s of [theirs, mine]) {
          const swapped = { report: { ...value.report, signatures: [keepKeyid ? { keyid: agentId, sig: s.sig } : s] } };
          assert.throws(() => readAgentReport(JSON.stringify(swapped), FLEET_AGENTS_TRUST));
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('the replay memory refuses a lower seq of the same run and a report of an earlier run; a later run starts again; unverified reports are not remembered', () => {
  const guard = new AgentReportGuard();
  const later = '2030-01-02T03:05:00.000Z';
  const r = (seq: number, startedAt = STARTED, verified = true) => ({ agentId: 'rec-0', startedAt, seq, ...(verified ? { signedBy: 'rec-0' } : {}) });
  guard.accept(r(5));
  guard.accept(r(5)); // the same report read again
  assert.throws(() => guard.accept(r(4)), assertCode('INVALID', /report 4 is older than report 5 already seen: a replay/));
  guard.accept(r(9));
  assert.throws(() => guard.accept(r(5)), assertCode('INVALID', /a replay/));
  // An unverified text (the weaker mode) neither passes judgement nor raises the bar.
  guard.accept(r(1_000_000, STARTED, false));
  guard.accept(r(10));
  // The agent restarted: its new run counts from 1; the old run's reports are over.
  guard.accept(r(1, later));
  assert.throws(() => guard.accept(r(11)), assertCode('INVALID', /of a run started .* before the run already seen/));
  // Other agents are remembered apart.
  guard.accept({ agentId: 'rec-1', startedAt: STARTED, seq: 1, signedBy: 'rec-1' });
});

const memberOptions = (extra: Partial<FleetMemberOptions>): FleetMemberOptions => ({
  store: {} as KvStore,
  agentId: 'rec-0',
  ring: 0,
  trust: FLEET_AGENTS_TRUST,
  apply: async () => ({ phase: 'promoted', version: '1.0.0' }),
  rollback: async () => ({ phase: 'rolled-back', version: '1.0.0' }),
  ...extra,
});

test("a member's signer is its own key: key id = agent id, the agents role's key of that id; required with the role", () => {
  assert.doesNotThrow(() => new FleetMember(memberOptions({ signer: agentSigner('rec-0') })));
  assert.throws(() => new FleetMember(memberOptions({})), assertCode('INVALID', /options\.signer is required: the trust store has an agents role/));
  assert.throws(() => new FleetMember(memberOptions({ signer: agentSigner('rec-1') })), assertCode('INVALID', /keyid "rec-1" must be the agent id rec-0/));
  assert.throws(
    () => new FleetMember(memberOptions({ signer: { keyid: 'rec-0', privateKey: agentSigner('rec-1').privateKey } })),
    assertCode('INVALID', /private key is not the key rec-0/),
  );
  assert.throws(
    () => new FleetMember(memberOptions({ agentId: 'nobody-1', signer: { ...signerOf(KEYS.outsider), keyid: 'nobody-1' } })),
    assertCode('INVALID', /nobody-1 has no key in the trust store's agents role/),
  );
  // Without the role: optional, and only its key id is checked.
  assert.doesNotThrow(() => new FleetMember(memberOptions({ trust: FLEET_TRUST })));
  assert.doesNotThrow(() => new FleetMember(memberOptions({ trust: FLEET_TRUST, signer: { ...signerOf(KEYS.outsider), keyid: 'rec-0' } })));
  assert.throws(() => new FleetMember(memberOptions({ trust: FLEET_TRUST, signer: agentSigner('rec-1') })), assertCode('INVALID', /must be the agent id/));
});

test('a registration with a signer writes signed reports whose seq rises with every write, from 1, and keeps counting when it registers again after a lost lease', async () => {
  const base = await EmbeddedStore.open(join(dir, 'registration'), { pollMs: 10 });
  const leases: Lease[] = [];
  const store = Object.create(base, {
    grantLease: {
      value: async (ttlMs: number) => {
        const lease = await base.grantLease(ttlMs);
        leases.push(lease);
        return lease;
      },
    },
  }) as KvStore;
  const key = `${testPrefix('registration')}/agents/rec-0`;
  const registration = new AgentRegistration(store, { key, agentId: 'rec-0', ring: 0, ttlMs: 60_000, signer: agentSigner('rec-0'), onError: () => {} });
  const stored = async () => readAgentReport((await base.get(key))!, FLEET_AGENTS_TRUST);
  try {
    await registration.register();
    assert.deepEqual([(await stored()).seq, (await stored()).signedBy], [1, 'rec-0']);
    registration.setTarget(T, { version: '1.0.0', phase: 'idle', health: 'healthy' });
    await registration.flush();
    registration.setTarget(T, { health: 'unhealthy', reason: 'errors' });
    await registration.flush();
    const third = await stored();
    assert.equal(third.seq, 3);
    assert.deepEqual(third.doc, registration.document);
    // Nothing changed: nothing written, no seq taken.
    registration.setTarget(T, { health: 'unhealthy' });
    await registration.flush();
    assert.equal((await stored()).seq, 3);
    await leases[0]!.revoke(); // as if the store expired it: the key goes, the agent registers again
    const again = await waitFor('the agent to register again', async () => {
      const text = leases.length === 2 ? await base.get(key) : undefined;
      return text === undefined ? undefined : readAgentReport(text, FLEET_AGENTS_TRUST);
    });
    assert.deepEqual([again.seq, again.doc.startedAt], [4, third.doc.startedAt]);
  } finally {
    registration.leave()?.release();
    await base.close();
  }
});
