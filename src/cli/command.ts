import { EXIT_OK } from './cli-error.js';
import { formatHelp } from './help-format.js';
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

/** Prints a command's help, laid out within 100 columns like every other command's (help-format.ts). */
export function printHelp(out: Output, usage: string): number {
  const text = formatHelp(usage);
  if (out.json) out.success(text, { usage: text });
  else out.line(text);
  return EXIT_OK;
}
