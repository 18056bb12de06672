export * from './trust-store.js';
export * from './signature-check.js';
export * from './payload-check.js';
export * from './verifier.js';
export * from './trust-rotation.js';
export * from './verify-patch.js';
