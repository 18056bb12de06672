import type { ResolvedZdtOptions } from './options.js';
import type { CanaryControl } from './target.js';

/** Why a canary interval's wait ended: its time ran out, an operator promoted or aborted, or the candidate tripped. */
export type Wake = 'elapsed' | 'promote' | 'abort' | 'tripped';

/**
 * Waits one canary interval, or less: a trip, an abort (operator or signal) or an operator's
 * promote ends it early (`control.wake` is how the operator and the trip interrupt it).
 */
export function waitInterval(ms: number, opts: ResolvedZdtOptions, control: CanaryControl, tripped: () => boolean): Promise<Wake> {
  if (tripped()) return Promise.resolve('tripped');
  if (control.abortReason !== undefined || opts.signal?.aborted === true) return Promise.resolve('abort');
  if (control.promoteRequested) return Promise.resolve('promote');
  return new Promise((resolve) => {
    const finish = (why: Wake): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      control.wake = () => {};
      resolve(why);
    };
    const onAbort = (): void => finish('abort');
    const timer = setTimeout(() => finish('elapsed'), ms);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    control.wake = () => finish(tripped() ? 'tripped' : control.abortReason !== undefined ? 'abort' : control.promoteRequested ? 'promote' : 'elapsed');
  });
}
