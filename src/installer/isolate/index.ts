/* Isolated loading: a version in its own worker thread or child process (see isolated-module.ts). */
export { loadIsolated } from './isolated-module.js';
export { DEFAULT_ISOLATION, resolveIsolation, type ResolvedIsolation } from './limits.js';
