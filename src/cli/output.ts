import { HotPatchError } from '../core/index.js';
import { UsageError } from './cli-error.js';

export interface OutputStreams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * Human lines, or with `--json` one JSON object as the last line of standard output
 * (DESIGN.md): `{"ok": true|false, "code": "...", "message": "...", ...}`. Progress lines
 * still go to stdout before it, so scripts read only the last line.
 */
export class Output {
  readonly json: boolean;
  readonly #streams: OutputStreams;

  constructor(json: boolean, streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr }) {
    this.json = json;
    this.#streams = streams;
  }

  /** A progress or result line for people (also printed in --json mode, before the object). */
  line(text: string): void {
    if (!this.json) this.#streams.stdout.write(`${text}\n`);
  }

  warn(text: string): void {
    this.#streams.stderr.write(`warning: ${text}\n`);
  }

  success(message: string, fields: Record<string, unknown> = {}): void {
    if (this.json) this.#streams.stdout.write(`${JSON.stringify({ ok: true, code: 'OK', message, ...fields })}\n`);
    else this.#streams.stdout.write(`${message}\n`);
  }

  failure(error: unknown): void {
    const code = error instanceof HotPatchError || error instanceof UsageError ? error.code : 'INTERNAL';
    const message = error instanceof Error ? error.message : String(error);
    const detail = error instanceof HotPatchError ? error.detail : undefined;
    if (this.json) {
      this.#streams.stdout.write(`${JSON.stringify({ ok: false, code, message, ...(detail === undefined ? {} : { detail }) })}\n`);
    }
    this.#streams.stderr.write(`hotpatch: ${code}: ${message}\n`);
    if (error instanceof UsageError) this.#streams.stderr.write("Run 'hotpatch --help' for usage.\n");
  }
}
