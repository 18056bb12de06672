import { EXIT_OK } from './cli-error.js';
import type { Output } from './output.js';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /**
   * Returns the exit status; throws HotPatchError / UsageError for failures. `out` is in
   * JSON mode when `--json` appears anywhere in argv, so even a usage error is reported
   * as the JSON last line.
   */
  run(argv: string[], out: Output): Promise<number>;
}

export function printHelp(out: Output, usage: string): number {
  if (out.json) out.success(usage, { usage });
  else out.line(usage);
  return EXIT_OK;
}
