import type { ErrorCode } from './errors.js';
import type { Envelope } from './dsse.js';
import type { Manifest, ManifestFacts } from './manifest.js';
import type { PatchId } from './patch-id.js';

/**
 * The seams between modules. They live in core so that higher layers (orchestration, agent,
 * CLI) can name a component by contract while lower layers implement it — imports stay
 * downward only.
 */

/** Where patches come from (docs/ARCHITECTURE.md "Repository layout"). All reads are bounded. */
export interface PatchRepository {
  /**
   * The raw DSSE envelope bytes of `<id>.json`. `accept`, when given, throws for bytes the
   * caller will refuse (a manifest not matching the signed index): a list of mirrors then
   * records that mirror's failure and tries the next; a single repository may ignore it (the
   * caller checks again).
   */
  fetchEnvelope(id: PatchId, signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array>;
  /**
   * The payload `<id>.bin` as chunks, never more than `maxBytes` in all: the verifier asks
   * for `payload_size + 1` so that a longer file is detected without reading it whole.
   */
  openPayload(id: PatchId, maxBytes: number, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  /** Ids of the patches the repository holds. */
  list(signal?: AbortSignal): Promise<PatchId[]>;
  /**
   * The raw bytes of the repository's `index.json` (a signed index), bounded; `accept` as for
   * fetchEnvelope (a list of mirrors moves past a stale, replayed or forged index). Absent: the
   * repository kind has no index.
   */
  fetchIndex?(signal?: AbortSignal, accept?: (bytes: Uint8Array) => void): Promise<Uint8Array>;
  /**
   * What a signed index says of each patch (present on `IndexedRepository`): the Planner picks
   * the highest version of a target from it instead of reading every manifest.
   */
  listEntries?(signal?: AbortSignal): Promise<ListedPatch[]>;
  /**
   * Present on a list of mirrors (`RepositoryMirrors`), and forwarded by a wrapper: verifyPatch
   * then verifies from each mirror in turn (reads pinned to it) until one passes.
   */
  readonly mirrored?: MirroredSource;
}

/** A patch as a signed index lists it. */
export interface ListedPatch {
  id: PatchId;
  target: string;
  version: string;
}

/** One mirror that failed, and why. */
export interface MirrorFailure {
  mirror: string;
  code: ErrorCode | 'INTERNAL';
  reason: string;
}

/** How verifyPatch drives a list of mirrors (see RepositoryMirrors). */
export interface MirroredSource {
  /** The mirrors to verify `id` from, best first. */
  candidates(id: string): string[];
  /** Reads of `id` go to `mirror` only; undefined: to every mirror again. */
  pin(id: string, mirror: string | undefined): void;
  /** Records a failure of `mirror` and returns it (its code and reason). */
  record(mirror: string, error: unknown): MirrorFailure;
  /** `mirror` served a file for `id` that failed verification: not trusted for it again. */
  markBad(id: string, mirror: string): void;
  /** The whole verification of `id` passed from `mirror`: its payload is read from there first. */
  markGood(id: string, mirror: string): void;
}

export interface VerificationContext {
  /** Reference time in epoch ms, taken once; defaults to `Date.now()` at the start. */
  now?: number;
  /**
   * Highest version ever recorded for the manifest's target (anti-downgrade), or a lookup
   * by target name when the caller does not know the target before parsing.
   */
  highestVersion?: string | undefined | ((target: string) => string | undefined);
}

/** A manifest whose envelope passed every signature, trust and freshness check. */
export interface VerifiedManifest {
  manifest: Manifest;
  facts: ManifestFacts;
  envelope: Envelope;
  /** Key ids whose signatures counted toward the threshold (one per distinct key). */
  signers: string[];
  /** The threshold that applied to this target. */
  threshold: number;
}

export interface PatchVerifier {
  verifyEnvelope(envelopeBytes: Uint8Array, context?: VerificationContext): VerifiedManifest;
  /** Consumes the payload stream, checking size and hash as it goes. */
  verifyPayload(verified: VerifiedManifest, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

export interface SecurityContext {
  /** `${process.platform}-${process.arch}` of the host the patch would run on. */
  platform?: string;
  /** Node.js version of that host, without the leading "v". */
  nodeVersion?: string;
}

export interface SecurityPolicy {
  /** Throws POLICY_DENIED / REQUIREMENT_UNSATISFIED / PLATFORM_MISMATCH / TOO_LARGE. */
  check(verified: VerifiedManifest, context?: SecurityContext): void;
}

export interface ApprovalRequest {
  patchId: string;
  target: string;
  version: string;
  payloadHash: string;
}

export interface Approver {
  /**
   * Resolves when approved — optionally with who approved, which the Planner records in the
   * `Approved` event's detail; rejects with APPROVAL_MISSING otherwise.
   */
  approve(request: ApprovalRequest, signal?: AbortSignal): Promise<Record<string, unknown> | void>;
  /**
   * Optional, for dry runs: would `approve` succeed now? Reads only — proposes nothing, waits
   * for nothing. `summary` says what was found (e.g. "1 of 2 required approvals").
   */
  check?(request: ApprovalRequest): Promise<{ approved: boolean; summary: string }>;
}
