import { createRequire } from 'node:module';
import type * as Asn1 from 'asn1js';
import type * as Pki from 'pkijs';

/*
 * asn1js and pkijs (RFC 3161 tokens) load on first use: they cost about 80 ms of imports,
 * which every `hotpatch verify` and agent start would pay for a feature most never use. Both
 * are loaded as CommonJS, pkijs's own way of loading asn1js, so that `instanceof` between
 * their classes holds.
 */
const require = createRequire(import.meta.url);

function lazy<T extends object>(name: string): T {
  let loaded: T | undefined;
  return new Proxy({} as T, { get: (_target, key) => Reflect.get((loaded ??= require(name) as T), key) });
}

export const asn1js = lazy<typeof Asn1>('asn1js');
export const pkijs = lazy<typeof Pki>('pkijs');
