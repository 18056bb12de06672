/**
 * `xps-hotpatch/observability`: the hash-chained audit log and its verification, Prometheus
 * metrics, JSON logs, the compliance report and the deployment history.
 * Public API: see test/api/exports.test.ts.
 */
export {
  AuditLog,
  HotPatchMetrics,
  buildHistory,
  buildReport,
  createLogger,
  formatHistory,
  formatReport,
  logEvents,
  verifyAuditLog,
  type AuditEntry,
  type AuditFailureHandler,
  type AuditLogOptions,
  type AuditReconciliation,
  type AuditVerification,
  type ComplianceReport,
  type CreateLoggerOptions,
  type HistoryOutcome,
  type HistoryRequest,
  type HistoryRow,
  type HistoryStart,
  type HotPatchMetricsOptions,
  type Logger,
  type OperatorAction,
  type PatchOutcome,
  type PatchReport,
  type ReportApproval,
  type ReportTimelineEntry,
  type TargetHistory,
} from './observability/index.js';
