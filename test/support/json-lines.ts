import type { Readable } from 'node:stream';

/** One parsed line of a child's JSON-lines output; a line that is not JSON is kept as `text`. */
export interface JsonLine {
  event: string;
  [key: string]: unknown;
}

/**
 * Collects a child's stdout as JSON lines into `lines` (blank lines skipped; a line that does
 * not parse kept as `{ event: 'text', text }` for failure messages) and calls `onLines` after
 * each chunk, so waiters can look again.
 */
export function collectJsonLines(stream: Readable, lines: JsonLine[], onLines: () => void = () => {}): void {
  let buffer = '';
  stream.setEncoding('utf8').on('data', (d: string) => {
    buffer += d;
    let at: number;
    while ((at = buffer.indexOf('\n')) !== -1) {
      const text = buffer.slice(0, at);
      buffer = buffer.slice(at + 1);
      if (text.trim() === '') continue;
      try {
        lines.push(JSON.parse(text) as JsonLine);
      } catch {
        lines.push({ event: 'text', text });
      }
    }
    onLines();
  });
}
