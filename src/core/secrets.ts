/**
 * Secrets this process holds (the agent's tokens, anything a host registers) are cut out of
 * every message the library records: error messages, plan reasons, event reasons — and so out
 * of API answers, journal.json, the audit log and logs. A payload that reads the agent's token
 * and throws it back in an error must not get it published.
 *
 * Matching is by fragment: any run of `FRAGMENT` or more characters that also occurs in a
 * secret is replaced, so a message quoting part of a token (or a token cut by the message
 * bound) is caught too. A payload that *encodes* a secret (reversed, base64) is not: in-process
 * code holds the host's privileges, which the README's "What a payload can do" says plainly.
 */

import { boundMessage } from './errors.js';

/** Shortest fragment of a secret that counts as leaking it. */
const FRAGMENT = 6;
/** Shortest secret accepted: a shorter one would redact ordinary words. */
const MIN_SECRET = 8;
const REDACTED = '[redacted]';

/** secret → how many registrations hold it. */
const registered = new Map<string, number>();
/** Every FRAGMENT-long piece of every registered secret. */
let fragments = new Set<string>();

function rebuild(): void {
  const next = new Set<string>();
  for (const secret of registered.keys()) {
    for (let i = 0; i + FRAGMENT <= secret.length; i++) next.add(secret.slice(i, i + FRAGMENT));
  }
  fragments = next;
}

/**
 * Registers a secret to be redacted from every recorded message; returns the function that
 * removes it again (registrations are counted, so two holders of one secret are independent).
 * Secrets shorter than 8 characters are refused (TypeError: a programming error, not input).
 */
export function registerSecret(secret: string): () => void {
  if (typeof secret !== 'string' || secret.length < MIN_SECRET) {
    throw new TypeError(`a secret to redact must be a string of at least ${MIN_SECRET} characters`);
  }
  registered.set(secret, (registered.get(secret) ?? 0) + 1);
  rebuild();
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const n = registered.get(secret) ?? 0;
    if (n <= 1) registered.delete(secret);
    else registered.set(secret, n - 1);
    rebuild();
  };
}

/** `text` with every fragment of a registered secret replaced by `[redacted]`. */
export function redactSecrets(text: string): string {
  if (fragments.size === 0 || text.length < FRAGMENT) return text;
  let out = '';
  let copied = 0;
  let coveredTo = -1;
  let runStart = -1;
  for (let i = 0; i + FRAGMENT <= text.length; i++) {
    if (!fragments.has(text.slice(i, i + FRAGMENT))) continue;
    if (i > coveredTo) {
      // A new run: close the previous one first.
      if (runStart !== -1) {
        out += text.slice(copied, runStart) + REDACTED;
        copied = coveredTo;
      }
      runStart = i;
    }
    coveredTo = i + FRAGMENT;
  }
  if (runStart === -1) return text;
  out += text.slice(copied, runStart) + REDACTED;
  return out + text.slice(coveredTo);
}

/**
 * `process.emitWarning` for messages that may quote other code's errors (a payload's, an I/O
 * error): bounded and free of registered secrets, like every record (warnings reach stderr and
 * the host's logs). An Error is reported by its stack, redacted the same way.
 */
export function emitRedactedWarning(warning: string | Error, options?: string | NodeJS.EmitWarningOptions): void {
  const text = typeof warning === 'string' ? warning : (warning.stack ?? warning.message);
  process.emitWarning(boundMessage(text), options as NodeJS.EmitWarningOptions);
}
