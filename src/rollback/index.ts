export { emptyState, emptyTargetState, parseStateFile, type StateFile, type TargetState, type VersionRecord } from './state-file.js';
export { MAX_FAILED_PER_TARGET, StateStore } from './state-store.js';
export { RollbackIndex } from './rollback-index.js';
