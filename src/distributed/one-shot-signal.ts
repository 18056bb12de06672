/** A promise that can be settled from outside, once (lease loss, leadership end, close). */
export interface Signal {
  readonly promise: Promise<void>;
  readonly done: boolean;
  fire(): void;
}

export function signal(): Signal {
  let resolve!: () => void;
  let done = false;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return {
    promise,
    get done() {
      return done;
    },
    fire() {
      if (done) return;
      done = true;
      resolve();
    },
  };
}
