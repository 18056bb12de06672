export * from './agent.js';
export { httpStatusFor } from './http-errors.js';
export { readTokenFile, bearerMatches } from './token.js';
