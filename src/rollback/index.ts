export * from './state-file.js';
export * from './state-store.js';
export * from './rollback-index.js';
