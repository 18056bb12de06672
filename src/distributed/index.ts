export type { KeyValue, KvStore, Leadership, Lease, WatchEvent } from './kv-store.js';
export {
  APPROVER_KEYID,
  describeQuorum,
  parseApprovers,
  requiredApprovals,
  type ApproverKey,
  type ApproversDocument,
  type ApproversList,
  type Quorum,
} from './approvers.js';
export {
  DEFAULT_CLOCK_SKEW_MS,
  MAX_PROPOSAL_TTL_MS,
  PROPOSAL_ID,
  VOTE_PAYLOAD_TYPE,
  checkApprovalRequest,
  countVotes,
  encodeProposal,
  newProposal,
  normalizePayloadHash,
  parseProposal,
  parseVotePayload,
  proposalExpiresMs,
  proposalIdOf,
  proposalMatches,
  signVote,
  signVoteWith,
  type CountOptions,
  type Proposal,
  type SignedVote,
  type VotePayload,
  type VoteTally,
} from './vote.js';
export { DEFAULT_CONSENSUS_PREFIX, StoreConsensus, getConsensus, setConsensus, type Consensus, type ConsensusOptions } from './consensus.js';
export {
  DEFAULT_APPROVAL_WAIT_MS,
  DEFAULT_PROPOSAL_TTL_MS,
  DistributedApproval,
  type ApprovalResult,
  type DistributedApprovalOptions,
} from './distributed-approval.js';
export {
  AGENT_REPORT_COMPONENT,
  AGENT_REPORT_PAYLOAD_TYPE,
  CONTROLLER_STATUSES,
  DEFAULT_FLEET_PREFIX,
  DEFAULT_ROLLOUT_EXPIRY_MS,
  FINAL_ROLLOUT_STATUSES,
  FLEET_HEALTH,
  FLEET_PHASES,
  FUTURE_SKEW_MS,
  MAX_AGENT_LABELS,
  MAX_ROLLOUT_EXPIRY_MS,
  MAX_ROLLOUT_TRAIL,
  MAX_TRAIL_SIGNERS,
  OPERATOR_GO_STATUSES,
  OPERATOR_STOP_STATUSES,
  ROLLBACK_STATUSES,
  ROLLOUT_SPEC_PAYLOAD_TYPE,
  ROLLOUT_STATE_PAYLOAD_TYPE,
  ROLLOUT_STATUSES,
  abortRollout,
  addRolloutSpecSignature,
  checkAgentSigner,
  createRollout,
  failureOf,
  fleetKeys,
  fleetStatus,
  getRollout,
  listAgents,
  listRollouts,
  newestFirst,
  parseAgentDocument,
  parseAgentReportPayload,
  parseFleetId,
  parseLabels,
  parseRing,
  parseRolloutDocument,
  parseRolloutSpec,
  parseRolloutStatePayload,
  pauseRollout,
  readAgentReport,
  readStoredRollout,
  readyFor,
  resumeRollout,
  runsRollout,
  signAgentReport,
  signRolloutSpec,
  signRolloutState,
  specDigest,
  storedAgentReportText,
  storedRolloutText,
  submitRollout,
  updateRollout,
  verifyRolloutDocument,
  type AgentDocument,
  type AgentReport,
  type AgentTargetState,
  type EmptyRingPolicy,
  type FleetHealth,
  type FleetKeys,
  type FleetPhase,
  type FleetProblem,
  type FleetStatus,
  type FleetStoreOptions,
  type RolloutActionOptions,
  type RolloutDocument,
  type RolloutOrder,
  type RolloutSigner,
  type RolloutSpec,
  type RolloutState,
  type RolloutStatePayload,
  type RolloutStateSigners,
  type RolloutStatus,
  type RolloutTrailEntry,
  type SignedRolloutSpec,
  type StoredAgent,
  type StoredRollout,
} from './fleet-rollout.js';
export { RolloutReplayGuard } from './rollout-replay.js';
export { AgentReportGuard, type SequencedReport } from './agent-report-replay.js';
export { readPrivateKeyFile } from './key-file.js';
export { RolloutVerifier, readStoredSpec } from './rollout-verify.js';
export { FleetMember, type FleetMemberOptions, type MemberReport, type TargetReport } from './fleet-member.js';
export { plannerFleetHooks, fleetPlanId, type FleetHooks, type PlannerFleetHooksOptions } from './fleet-planner.js';
export { fleetHealthReporter, type FleetHealthOptions } from './fleet-health.js';
export { FleetController, type FleetControllerOptions, type RolloutTransition } from './fleet-controller.js';
export { EmbeddedStore, STORE_FILE, LOCK_FILE } from './embedded-store.js';
export { STORE_FORMAT, EVENT_LOG_SIZE } from './embedded-document.js';
export { MAX_KEY_BYTES, MAX_VALUE_BYTES, MAX_TTL_MS } from './store-checks.js';
export type { EmbeddedStoreOptions } from './embedded-store.js';
// Types only: the etcd3 client (and gRPC under it) is loaded when openStore opens an etcd://
// store, never by importing this module. Construct one directly from './etcd-store.js'.
export type { EtcdStore, EtcdStoreOptions } from './etcd-store.js';
export { openStore } from './open-store.js';
export type { OpenStoreOptions } from './open-store.js';
