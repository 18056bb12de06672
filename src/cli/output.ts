import { HotPatchError } from '../core/index.js';
import { UsageError } from './cli-error.js';

export interface OutputStreams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** One controller per stream, aborted when the stream's reader went away. */
const readerGone = new WeakMap<object, AbortController>();

/**
 * The one place a closed reader is handled. `hotpatch report | head -1`: once `head` exits,
 * the next write to the pipe fails with EPIPE, which Node reports as an 'error' event on the
 * stream; unhandled, it is thrown with a stack trace. Here EPIPE just marks the stream gone
 * (nothing more can be shown; later writes are dropped by the destroyed stream), and the
 * command ends with the status of its normal run. Any other write error is thrown as before.
 * Installed once per stream, so running many commands in one process adds one listener.
 */
function watchReader(stream: NodeJS.WritableStream): AbortSignal {
  let controller = readerGone.get(stream);
  if (controller === undefined) {
    const created = new AbortController();
    controller = created;
    readerGone.set(stream, created);
    if (typeof stream.on === 'function') {
      stream.on('error', (error: NodeJS.ErrnoException) => {
        if (error?.code !== 'EPIPE') throw error;
        created.abort();
      });
    }
  }
  return controller.signal;
}

/**
 * Human lines, or with `--json` one JSON object as the last line of standard output
 * (docs/ARCHITECTURE.md "Command line contract"): `{"ok": true|false, "code": "...",
 * "message": "...", ...}`. Progress lines
 * still go to stdout before it, so scripts read only the last line.
 */
export class Output {
  readonly json: boolean;
  /**
   * Aborted when standard output's reader went away (`hotpatch events | head -1`): a command
   * that would go on printing (an event stream) stops, and its status is that of a normal run.
   */
  readonly closed: AbortSignal;
  readonly #streams: OutputStreams;
  readonly #stderrGone: AbortSignal;

  constructor(json: boolean, streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr }) {
    this.json = json;
    this.#streams = streams;
    this.closed = watchReader(streams.stdout);
    this.#stderrGone = watchReader(streams.stderr);
  }

  /** Whether standard output is a terminal (a watching command redraws it in place). */
  get tty(): boolean {
    return (this.#streams.stdout as { isTTY?: boolean }).isTTY === true;
  }

  /** A progress or result line for people (also printed in --json mode, before the object). */
  line(text: string): void {
    if (!this.json) this.raw(`${text}\n`);
  }

  /** Text as it is, to standard output (a report, one JSON event per line), in either mode. */
  raw(text: string): void {
    if (!this.closed.aborted) this.#streams.stdout.write(text);
  }

  warn(text: string): void {
    this.#stderr(`warning: ${text}\n`);
  }

  success(message: string, fields: Record<string, unknown> = {}): void {
    if (this.json) this.raw(`${JSON.stringify({ ok: true, code: 'OK', message, ...fields })}\n`);
    else this.raw(`${message}\n`);
  }

  failure(error: unknown): void {
    const code = error instanceof HotPatchError || error instanceof UsageError ? error.code : 'INTERNAL';
    const message = error instanceof Error ? error.message : String(error);
    const detail = error instanceof HotPatchError ? error.detail : undefined;
    if (this.json) {
      this.raw(`${JSON.stringify({ ok: false, code, message, ...(detail === undefined ? {} : { detail }) })}\n`);
    }
    this.#stderr(`hotpatch: ${code}: ${message}\n`);
    if (error instanceof UsageError) this.#stderr("Run 'hotpatch --help' for usage.\n");
  }

  /** Extra text for people on standard error (the usage after "no command given"). */
  note(text: string): void {
    this.#stderr(text);
  }

  #stderr(text: string): void {
    if (!this.#stderrGone.aborted) this.#streams.stderr.write(text);
  }
}
