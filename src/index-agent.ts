/**
 * `xps-hotpatch/agent`: `startAgent`, the admin endpoint of a process (Unix socket or loopback
 * HTTP with bearer tokens) over its runtime, planner and audit log.
 * Public API: see test/api/exports.test.ts.
 */
export {
  startAgent,
  type Agent,
  type AgentDecryptionKey,
  type AgentFleet,
  type AgentFleetOptions,
  type AgentOptions,
  type AuditMode,
  type HttpTokenOption,
} from './agent/index.js';
