import type { Approver, PatchRepository, PatchVerifier, SecurityPolicy } from './contracts.js';
import { checkPatchInstaller, type PatchInstaller } from './installer-contract.js';
import { HotPatchError } from './errors.js';

const COMPONENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Named components of one kind (repositories, verifiers, …) that plans refer to by name. */
export class Registry<T> {
  readonly #items = new Map<string, T>();
  readonly #kind: string;
  readonly #check: ((item: unknown, what: string) => unknown) | undefined;

  /** `check` throws (INVALID) for an item that does not fulfil the kind's contract. */
  constructor(kind: string, check?: (item: unknown, what: string) => unknown) {
    this.#kind = kind;
    this.#check = check;
  }

  register(name: string, item: T, options: { replace?: boolean } = {}): void {
    if (typeof name !== 'string' || !COMPONENT_NAME.test(name)) {
      throw new HotPatchError('INVALID', `${this.#kind} name ${JSON.stringify(name)} must match ${COMPONENT_NAME.source}`);
    }
    if (item === undefined || item === null) {
      throw new HotPatchError('INVALID', `${this.#kind} ${JSON.stringify(name)} must not be ${String(item)}`);
    }
    this.#check?.(item, `${this.#kind} ${JSON.stringify(name)}`);
    if (this.#items.has(name) && options.replace !== true) {
      throw new HotPatchError('INVALID', `${this.#kind} ${JSON.stringify(name)} is already registered (pass { replace: true } to replace it)`);
    }
    this.#items.set(name, item);
  }

  get(name: string): T {
    const item = this.#items.get(name);
    if (item === undefined) {
      const known = [...this.#items.keys()];
      throw new HotPatchError(
        'NOT_FOUND',
        `no ${this.#kind} named ${JSON.stringify(name)} is registered${known.length > 0 ? ` (known: ${known.join(', ')})` : ''}`,
      );
    }
    return item;
  }

  has(name: string): boolean {
    return this.#items.has(name);
  }

  unregister(name: string): boolean {
    return this.#items.delete(name);
  }

  names(): string[] {
    return [...this.#items.keys()];
  }
}

export class Registries {
  readonly repositories = new Registry<PatchRepository>('repository');
  readonly verifiers = new Registry<PatchVerifier>('verifier');
  readonly security = new Registry<SecurityPolicy>('security policy');
  readonly installers = new Registry<PatchInstaller>('installer', checkPatchInstaller);
  readonly approvers = new Registry<Approver>('approver');
}

/** The instance the seed's free functions act on. */
export const defaultRegistries = new Registries();

export function registerRepository(name: string, repository: PatchRepository, options?: { replace?: boolean }): void {
  defaultRegistries.repositories.register(name, repository, options);
}
export function registerVerifier(name: string, verifier: PatchVerifier, options?: { replace?: boolean }): void {
  defaultRegistries.verifiers.register(name, verifier, options);
}
export function registerSecurity(name: string, policy: SecurityPolicy, options?: { replace?: boolean }): void {
  defaultRegistries.security.register(name, policy, options);
}
export function registerInstaller(name: string, installer: PatchInstaller, options?: { replace?: boolean }): void {
  defaultRegistries.installers.register(name, installer, options);
}
export function registerApprover(name: string, approver: Approver, options?: { replace?: boolean }): void {
  defaultRegistries.approvers.register(name, approver, options);
}
