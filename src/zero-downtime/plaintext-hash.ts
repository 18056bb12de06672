/**
 * A decrypted payload is staged under its plaintext's SHA-256, and installer messages name the
 * file (its path, its hash, or the hash's first 12 hex digits). Published, that hash would let
 * whoever reads events, plan reasons or the audit log confirm a guess of the fix: messages about
 * an encrypted patch's staged file go out with it replaced.
 */
export function withoutPlaintextHash(text: string, sha256: string | undefined): string {
  if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256)) return text;
  return text.replaceAll(sha256, '<plaintext hash>').replaceAll(sha256.slice(0, 12), '<plaintext hash>');
}
