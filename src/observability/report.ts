import { join } from 'node:path';
import { HotPatchError, MANIFEST_PAYLOAD_TYPE, decodeEnvelope, describe, isPatchId, parseManifest, type HotPatchEvent } from '../core/index.js';
import { DEFAULT_MAX_MANIFEST_BYTES, readFileBounded } from '../repo/index.js';
import type { AuditVerification } from './audit-chain.js';
import { scanAuditLog } from './audit-verify.js';

export type PatchOutcome = 'activated' | 'rolled-back' | 'failed' | 'aborted' | 'in-progress';

export interface ReportTimelineEntry {
  /** Line of audit.log the event is on. */
  line: number;
  ts: string;
  type: HotPatchEvent['type'];
  version: string;
  reason: string;
  /** False when the line is at or after the audit log's first bad line. */
  verified: boolean;
}

export interface ReportApproval {
  ts: string;
  reason: string;
  detail?: Record<string, unknown>;
}

export interface PatchReport {
  id: string;
  target: string;
  version: string;
  /** From the signed manifest kept in `manifests/<id>.json` (absent when it could not be read). */
  payload_hash?: string;
  created_at?: string;
  expires?: string;
  metadata?: Record<string, string>;
  /**
   * Key ids that signed: the `Verified` event's `detail.signers` (the keys that counted
   * toward the threshold) when present, else the key ids on the envelope's signatures
   * (present, not re-verified by the report).
   */
  signers: string[];
  signersSource: 'verified-event' | 'envelope' | 'none';
  approvals: ReportApproval[];
  firstEventAt: string;
  lastEventAt: string;
  outcome: PatchOutcome;
  /** Reasons of the decisive events (Activated, Aborted, RolledBack, Failed), in order. */
  reasons: string[];
  timeline: ReportTimelineEntry[];
  /** Why the signed manifest could not be read, when it could not. */
  manifestError?: string;
}

/** An operator's request the agent accepted (a `Requested` event), in log order. */
export interface OperatorAction {
  line: number;
  ts: string;
  /** apply, promote, abort, rollback, freeze, unfreeze. */
  action: string;
  target: string;
  /** How the caller was admitted: unix-socket or operator-token. */
  credential: string;
  /** Who the caller said they are (self-declared, `x-hotpatch-actor`), when they did. */
  actor?: string;
  reason: string;
  verified: boolean;
}

export interface ComplianceReport {
  generatedAt: string;
  stateDir: string;
  since?: string;
  /** The audit log's verification: a broken chain is reported here, never hidden. */
  audit: AuditVerification;
  patches: PatchReport[];
  operatorActions: OperatorAction[];
}

const DECISIVE: Partial<Record<HotPatchEvent['type'], PatchOutcome>> = {
  Activated: 'activated',
  RolledBack: 'rolled-back',
  Failed: 'failed',
  Aborted: 'aborted',
};

/** The runtime records the host's own implementation under this id; it has no manifest. */
const BUILTIN_ID = 'builtin';

interface ManifestFacts {
  target: string;
  version: string;
  payload_hash: string;
  created_at: string;
  expires?: string;
  metadata?: Record<string, string>;
  keyids: string[];
}

async function readManifest(stateDir: string, id: string): Promise<ManifestFacts | { error: string }> {
  // An id from the log is only used as a file name once it is a valid PatchId (no traversal).
  if (!isPatchId(id)) return { error: `${JSON.stringify(id)} is not a valid patch id` };
  let bytes: Uint8Array;
  try {
    bytes = await readFileBounded(join(stateDir, 'manifests', `${id}.json`), DEFAULT_MAX_MANIFEST_BYTES, { what: 'manifest' });
  } catch (error) {
    return { error: (error as Error).message };
  }
  try {
    const envelope = decodeEnvelope(bytes);
    if (envelope.payloadType !== MANIFEST_PAYLOAD_TYPE) return { error: `manifests/${id}.json has payloadType ${envelope.payloadType}` };
    const { manifest } = parseManifest(envelope.payload);
    if (manifest.id !== id) return { error: `manifests/${id}.json holds the manifest of ${manifest.id}` };
    const facts: ManifestFacts = {
      target: manifest.target,
      version: manifest.version,
      payload_hash: manifest.payload_hash,
      created_at: manifest.created_at,
      keyids: [...new Set(envelope.signatures.map((s) => s.keyid))],
    };
    if (manifest.expires !== undefined) facts.expires = manifest.expires;
    if (manifest.metadata !== undefined) facts.metadata = manifest.metadata;
    return facts;
  } catch (error) {
    return { error: `manifests/${id}.json: ${(error as Error).message}` };
  }
}

function stringList(value: unknown): string[] | undefined {
  return Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : undefined;
}

/**
 * A compliance report from the state directory: the audit log (verified first; the verdict is
 * part of the report) and the signed manifests in `manifests/`. Per patch: what was applied
 * (target, version, payload hash), by which signers, approvals, timestamps and the outcome of
 * its last decisive event. `since` keeps the events at or after that instant.
 */
export async function buildReport(stateDir: string, options: { since?: Date } = {}): Promise<ComplianceReport> {
  if (typeof stateDir !== 'string' || stateDir.length === 0)
    throw new HotPatchError('INVALID', `stateDir must be a non-empty string, got ${describe(stateDir)}`);
  const since = options.since;
  if (since !== undefined && (!(since instanceof Date) || Number.isNaN(since.getTime()))) {
    throw new HotPatchError('INVALID', `options.since must be a valid Date, got ${describe(since)}`);
  }
  const entries: { line: number; event: HotPatchEvent }[] = [];
  const audit = await scanAuditLog(stateDir, (entry) => entries.push(entry));
  const firstBad = audit.firstBad?.line ?? Number.POSITIVE_INFINITY;

  const byId = new Map<string, { line: number; event: HotPatchEvent }[]>();
  const operatorActions: OperatorAction[] = [];
  for (const entry of entries) {
    if (since !== undefined) {
      const t = Date.parse(entry.event.ts);
      if (Number.isNaN(t) || t < since.getTime()) continue;
    }
    if (entry.event.type === 'Requested') {
      operatorActions.push(operatorAction(entry, firstBad));
      continue;
    }
    const list = byId.get(entry.event.id);
    if (list === undefined) byId.set(entry.event.id, [entry]);
    else list.push(entry);
  }

  const patches: PatchReport[] = [];
  for (const [id, list] of byId) {
    const manifest = await readManifest(stateDir, id);
    if (id === BUILTIN_ID && 'error' in manifest) continue; // the host's own code, not a patch
    const first = list[0]!.event;
    const last = list.at(-1)!.event;
    let outcome: PatchOutcome = 'in-progress';
    const reasons: string[] = [];
    const approvals: ReportApproval[] = [];
    let verifiedSigners: string[] | undefined;
    for (const { event } of list) {
      let decisive = DECISIVE[event.type];
      // A version reverted at a restart (the process died inside its probation) was rolled
      // back, as its plan and the history say; a later attempt refused before it served (say
      // a DOWNGRADE on a re-apply) does not unsay that the patch served.
      if (event.type === 'Failed' && event.detail?.restored !== undefined) decisive = 'rolled-back';
      else if (event.type === 'Failed' && (outcome === 'activated' || outcome === 'rolled-back')) decisive = undefined;
      if (decisive !== undefined) outcome = decisive;
      if (DECISIVE[event.type] !== undefined && event.reason !== '') reasons.push(`${event.type}: ${event.reason}`);
      if (event.type === 'Approved') {
        const approval: ReportApproval = { ts: event.ts, reason: event.reason };
        if (event.detail !== undefined) approval.detail = event.detail;
        approvals.push(approval);
      }
      if (event.type === 'Verified') verifiedSigners = stringList(event.detail?.signers) ?? verifiedSigners;
    }
    const report: PatchReport = {
      id,
      target: 'error' in manifest ? first.target : manifest.target,
      version: 'error' in manifest ? first.version : manifest.version,
      signers: [],
      signersSource: 'none',
      approvals,
      firstEventAt: first.ts,
      lastEventAt: last.ts,
      outcome,
      reasons,
      timeline: list.map(({ line, event }) => ({
        line,
        ts: event.ts,
        type: event.type,
        version: event.version,
        reason: event.reason,
        verified: line < firstBad,
      })),
    };
    if ('error' in manifest) {
      report.manifestError = manifest.error;
    } else {
      report.payload_hash = manifest.payload_hash;
      report.created_at = manifest.created_at;
      if (manifest.expires !== undefined) report.expires = manifest.expires;
      if (manifest.metadata !== undefined) report.metadata = manifest.metadata;
    }
    if (verifiedSigners !== undefined) {
      report.signers = verifiedSigners;
      report.signersSource = 'verified-event';
    } else if (!('error' in manifest) && manifest.keyids.length > 0) {
      report.signers = manifest.keyids;
      report.signersSource = 'envelope';
    }
    patches.push(report);
  }
  patches.sort((a, b) => (a.firstEventAt < b.firstEventAt ? -1 : a.firstEventAt > b.firstEventAt ? 1 : a.id < b.id ? -1 : 1));
  const out: ComplianceReport = { generatedAt: new Date().toISOString(), stateDir, audit, patches, operatorActions };
  if (since !== undefined) out.since = since.toISOString();
  return out;
}

function operatorAction({ line, event }: { line: number; event: HotPatchEvent }, firstBad: number): OperatorAction {
  const d = event.detail ?? {};
  const text = (v: unknown): string => (typeof v === 'string' ? v : '?');
  // The operator's own words (`--reason`) when they gave some; else what was requested.
  const reason = typeof d.reason === 'string' ? d.reason : event.reason;
  const action: OperatorAction = {
    line,
    ts: event.ts,
    action: text(d.action),
    target: event.target,
    credential: text(d.credential),
    reason,
    verified: line < firstBad,
  };
  if (typeof d.actor === 'string') action.actor = d.actor;
  return action;
}

/** Markdown table cell: no line breaks, pipes escaped. */
function cell(value: unknown): string {
  const text = typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function approvalText(a: ReportApproval): string {
  const by = a.detail?.approver ?? a.detail?.by ?? a.detail?.voter ?? a.detail?.approvers;
  if (typeof by === 'string') return by;
  if (Array.isArray(by) && by.every((x) => typeof x === 'string')) return by.join(', ');
  return by === undefined ? a.reason || 'approved' : JSON.stringify(by);
}

/** The report as JSON (stable, indented) or markdown (summary table, then a timeline per patch). */
export function formatReport(report: ComplianceReport, format: 'md' | 'json'): string {
  if (format === 'json') return `${JSON.stringify(report, null, 2)}\n`;
  if (format !== 'md') throw new HotPatchError('INVALID', `format must be "md" or "json", got ${describe(format)}`);
  const out: string[] = [];
  out.push('# Hot patch compliance report', '');
  out.push(`Generated ${report.generatedAt} from \`${report.stateDir}\`${report.since === undefined ? '' : `, events since ${report.since}`}.`, '');
  const a = report.audit;
  if (a.ok) {
    out.push(`**Audit log: verified.** ${a.lines} lines, hash chain intact, head \`${a.head ?? 'none'}\` matches state.json.`, '');
  } else {
    out.push(
      `**Audit log: NOT VERIFIED — first bad line ${a.firstBad?.line ?? '?'}: ${a.firstBad?.reason ?? 'unknown'}.** ` +
        `Events from that line on cannot be trusted and are marked unverified below.`,
      '',
    );
  }
  out.push('## Summary', '');
  if (report.patches.length === 0) {
    out.push('No patch events recorded.', '');
  } else {
    out.push('| Patch | Target | Version | Outcome | Signers | Approvals | First event | Last event |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const p of report.patches) {
      out.push(
        `| ${cell(p.id)} | ${cell(p.target)} | ${cell(p.version)} | ${cell(p.outcome)} | ${cell(p.signers.join(', ') || '—')} | ${p.approvals.length} | ${cell(p.firstEventAt)} | ${cell(p.lastEventAt)} |`,
      );
    }
    out.push('');
  }
  if (report.operatorActions.length > 0) {
    out.push('## Operator actions', '');
    out.push('| Line | Time | Action | Target | Credential | Actor (declared) | Reason |');
    out.push('| --- | --- | --- | --- | --- | --- | --- |');
    for (const o of report.operatorActions) {
      out.push(
        `| ${o.line}${o.verified ? '' : ' (unverified)'} | ${cell(o.ts)} | ${cell(o.action)} | ${cell(o.target)} | ${cell(o.credential)} | ${cell(o.actor ?? '—')} | ${cell(o.reason)} |`,
      );
    }
    out.push('');
  }
  for (const p of report.patches) {
    out.push(`## ${p.id}`, '');
    out.push(`- Target: \`${p.target}\`, version ${p.version}`);
    out.push(`- Outcome: **${p.outcome}**${p.reasons.length === 0 ? '' : ` (${p.reasons.at(-1)})`}`);
    if (p.payload_hash !== undefined)
      out.push(`- Payload: \`${p.payload_hash}\`, manifest created ${p.created_at ?? '?'}${p.expires === undefined ? '' : `, expires ${p.expires}`}`);
    if (p.manifestError !== undefined) out.push(`- Signed manifest: not available (${p.manifestError})`);
    const source =
      p.signersSource === 'verified-event' ? 'keys that counted at verification' : p.signersSource === 'envelope' ? 'signatures on the envelope' : 'no record';
    out.push(`- Signers: ${p.signers.length === 0 ? '—' : p.signers.join(', ')} (${source})`);
    out.push(`- Approvals: ${p.approvals.length === 0 ? 'none recorded' : p.approvals.map((x) => `${approvalText(x)} at ${x.ts}`).join('; ')}`);
    if (p.metadata !== undefined)
      out.push(
        `- Metadata: ${Object.entries(p.metadata)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
      );
    out.push('');
    out.push('| Line | Time | Event | Version | Reason |');
    out.push('| --- | --- | --- | --- | --- |');
    for (const t of p.timeline) {
      out.push(`| ${t.line}${t.verified ? '' : ' (unverified)'} | ${cell(t.ts)} | ${cell(t.type)} | ${cell(t.version)} | ${cell(t.reason)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
