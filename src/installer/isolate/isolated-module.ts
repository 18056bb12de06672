import type { LoadedModule, LoadOptions, StagedPayload } from '../../core/index.js';
import { loadFailed, type LoadSubject } from '../loaders.js';
import { IsolateClient } from './isolate-client.js';
import { resolveIsolation } from './limits.js';
import { HOOK_INDEX } from './protocol.js';

/** How long a retired version's dispose() may take before its isolate is ended anyway (ms). */
const DISPOSE_GRACE_MS = 5_000;

/**
 * Loads a staged payload into its own worker thread or child process and returns it as a
 * LoadedModule whose api functions and hooks are calls across the boundary (each returns a
 * promise). `dispose` runs the payload's own dispose() (if any, for at most a few seconds),
 * then ends the isolate: its memory, module and native library go with it.
 */
export async function loadIsolated(staged: StagedPayload, opts: LoadOptions, subject: LoadSubject): Promise<LoadedModule> {
  const settings = resolveIsolation(opts.isolation, 'options.isolation');
  if (staged.type === 'wasm') {
    throw loadFailed(subject, `wasm payloads run inline only: the target's adapter is host code, which cannot cross into a ${settings.mode}`);
  }
  if (staged.type === 'native' && settings.mode === 'worker') {
    throw loadFailed(
      subject,
      "native (.node) payloads need isolation 'process': in a worker thread a crash of the addon would end the whole service, and its library could never be unloaded",
    );
  }
  let client: IsolateClient;
  try {
    client = await IsolateClient.start(settings, {
      t: 'load',
      path: staged.path,
      type: staged.type,
      requiredFunctions: [...opts.requiredFunctions],
      initContext: opts.initContext ?? {},
      subject,
    });
  } catch (cause) {
    throw loadFailed(subject, (cause as Error).message, { cause, detail: { isolation: settings.mode } });
  }
  const api: Record<string, unknown> = {};
  opts.requiredFunctions.forEach((name, index) => {
    api[name] = (...args: unknown[]): Promise<unknown> => client.call(index, args);
  });
  const hooks = new Set(client.hooks);
  const loaded: LoadedModule = {
    api,
    isolate: client,
    dispose: async () => {
      try {
        // A dead isolate is not started again just to be disposed: its state died with it.
        if (hooks.has('dispose') && client.state === 'ready') await graced(client.call(HOOK_INDEX.dispose, []), DISPOSE_GRACE_MS);
      } finally {
        await client.terminate();
      }
    },
  };
  if (hooks.has('selfTest')) loaded.selfTest = () => client.call(HOOK_INDEX.selfTest, []);
  if (hooks.has('exportState')) loaded.exportState = () => client.call(HOOK_INDEX.exportState, []);
  if (hooks.has('importState')) loaded.importState = (state: unknown) => client.call(HOOK_INDEX.importState, [state]);
  return loaded;
}

/** `promise`, or undefined once `ms` pass (a dispose() that never settles must not keep the isolate alive). */
function graced(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
