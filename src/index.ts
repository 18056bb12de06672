/**
 * xps-hotpatch public API. Everything a host process, an operator tool or a test needs is
 * exported from here; module folders are internal.
 */
export * from './core/index.js';
export * from './crypto-agile/index.js';
export * from './verification/index.js';
export * from './security/index.js';
export * from './repo/index.js';
export * from './rollback/index.js';
export * from './installer/index.js';
export * from './zero-downtime/index.js';
export * from './observability/index.js';
export * from './orchestration/index.js';
export * from './distributed/index.js';
export * from './agent/index.js';
export { runCli } from './cli/main.js';
