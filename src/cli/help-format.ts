/**
 * Lays out a command's --help text within HELP_WIDTH columns, the same way for every command:
 *
 * - the synopsis (the first block, lines starting with `hotpatch `, continued by indented
 *   lines) is re-flowed: each form's options wrap under its first option, and the forms of one
 *   command (`fleet status`, `fleet rollout`, …) are aligned on a common column. A flag stays
 *   with its value (`--store SPEC`) and a bracketed group (`[--reason TEXT]`,
 *   `(--plan FILE | --plan-id ID)`) is never split;
 * - a paragraph of prose with a line past the width is re-flowed as a whole;
 * - an indented line past the width (a flag table row, an example) wraps with a hanging
 *   indent: under its description column when it has one (two or more spaces after the flag),
 *   else two columns deeper.
 *
 * Widths count characters (code points): `…`, `×` and `—` take one column.
 */

export const HELP_WIDTH = 100;

const width = (s: string): number => [...s].length;

/** `hotpatch fleet rollout --store SPEC [--id X]` → words, keeping groups and flag values together. */
function tokens(text: string): string[] {
  const raw: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '[' || ch === '(') depth += 1;
    if (ch === ']' || ch === ')') depth = Math.max(0, depth - 1);
    if (/\s/.test(ch) && depth === 0) {
      if (current !== '') raw.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current !== '') raw.push(current);
  // A flag keeps its value with it: `--store SPEC`, `--alg ed25519|ecdsa-p256-sha256`.
  const merged: string[] = [];
  for (const t of raw) {
    const prev = merged[merged.length - 1];
    if (prev !== undefined && /^--?[A-Za-z]/.test(prev) && !prev.includes(' ') && !/^[-[(|]/.test(t) && t !== '…' && !t.startsWith('...')) {
      merged[merged.length - 1] = `${prev} ${t}`;
    } else {
      merged.push(t);
    }
  }
  return merged;
}

/** Greedy fill of words into lines of at most `max` columns; the first line starts at `first`, the rest at `indent`. */
function fill(words: string[], first: string, indent: string, max: number): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const w of words) {
    const candidate = empty ? `${line}${w}` : `${line} ${w}`;
    if (!empty && width(candidate) > max) {
      lines.push(line);
      line = `${indent}${w}`;
    } else {
      line = candidate;
    }
    empty = false;
  }
  lines.push(line);
  return lines.map((l) => l.trimEnd());
}

function formatSynopsis(lines: string[], max: number): string[] {
  const forms: { head: string; rest: string[] }[] = [];
  for (const line of lines) {
    if (line.startsWith('hotpatch ') || forms.length === 0) {
      const words = tokens(line);
      const at = words.findIndex((w, i) => i > 0 && /^[-[(]|^[A-Z]/.test(w));
      const split = at === -1 ? words.length : at;
      forms.push({ head: words.slice(0, split).join(' '), rest: words.slice(split) });
    } else {
      forms[forms.length - 1]!.rest.push(...tokens(line));
    }
  }
  // Forms of one command align on one column, unless that would leave too little room.
  const column = Math.max(...forms.map((f) => width(f.head))) + 1;
  const shared = column <= max / 3;
  return forms.flatMap((f) => {
    const start = shared ? column : width(f.head) + 1;
    return fill(f.rest, f.head.padEnd(start), ' '.repeat(start), max);
  });
}

function hangingIndent(line: string): string {
  const lead = /^ */.exec(line)![0].length;
  const column = /^ *\S+(?: \S+)*? {2,}(?=\S)/.exec(line);
  const at = column === null ? lead + 2 : width(column[0]);
  return ' '.repeat(at <= HELP_WIDTH / 2 ? at : lead + 2);
}

function formatBlock(block: string[], max: number): string[] {
  const out: string[] = [];
  let prose: string[] = [];
  const flush = (): void => {
    if (prose.some((l) => width(l) > max)) out.push(...fill(prose.join(' ').split(/ +/), '', '', max));
    else out.push(...prose);
    prose = [];
  };
  for (const line of block) {
    if (!line.startsWith(' ')) {
      prose.push(line);
      continue;
    }
    flush();
    if (width(line) <= max) {
      out.push(line);
      continue;
    }
    const indent = hangingIndent(line);
    const lead = /^ */.exec(line)![0];
    const head = indent.length > lead.length ? line.slice(0, indent.length) : lead;
    out.push(...fill(line.slice(head.length).trim().split(/ +/), head, indent, max));
  }
  flush();
  return out;
}

/** The help text of a command, laid out within `max` columns (see above). */
export function formatHelp(text: string, max = HELP_WIDTH): string {
  const blocks = text.split(/\n\s*\n/).map((b) => b.split('\n'));
  return blocks
    .map((block, i) => (i === 0 && block[0]!.startsWith('hotpatch ') ? formatSynopsis(block, max) : formatBlock(block, max)).join('\n'))
    .join('\n\n');
}

/** `  name  summary` rows, the summary wrapped under its own column. */
export function formatTable(rows: readonly [string, string][], max = HELP_WIDTH): string {
  const column = Math.max(...rows.map(([name]) => width(name))) + 4;
  return rows.map(([name, text]) => fill(text.split(/ +/), `  ${name}`.padEnd(column), ' '.repeat(column), max).join('\n')).join('\n');
}
