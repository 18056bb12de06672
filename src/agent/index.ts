export { startAgent, type Agent, type AgentDecryptionKey, type AgentFleet, type AgentFleetOptions, type AgentOptions, type HttpTokenOption } from './agent.js';
export type { AuditMode } from './operator-record.js';
export { httpStatusFor } from './http-errors.js';
export { readTokenFile, bearerMatches } from './token.js';
