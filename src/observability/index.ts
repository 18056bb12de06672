export { AuditLog, type AuditChainStanding, type AuditFailureHandler, type AuditLogOptions, type AuditReconciliation } from './audit-log.js';
export { verifyAuditLog } from './audit-verify.js';
export { MAX_LINE_BYTES, ZERO_HASH, formatHead, parseHead, type AuditEntry, type AuditHead, type AuditVerification } from './audit-chain.js';
export { CALL_DURATION_BUCKETS, HotPatchMetrics, type HotPatchMetricsOptions } from './metrics.js';
export { createLogger, logEvents, type CreateLoggerOptions, type Logger } from './logger.js';
export {
  buildReport,
  formatReport,
  type ComplianceReport,
  type OperatorAction,
  type PatchOutcome,
  type PatchReport,
  type ReportApproval,
  type ReportTimelineEntry,
} from './report.js';
export {
  buildHistory,
  formatHistory,
  outcomeText,
  requesterText,
  type HistoryOutcome,
  type HistoryRequest,
  type HistoryRow,
  type HistoryStart,
  type TargetHistory,
} from './history.js';
