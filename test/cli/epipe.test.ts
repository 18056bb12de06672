/*
 * `hotpatch … | head -1`: when the reader of standard output goes away, the CLI stops quietly
 * (no stack trace, no "EPIPE" on stderr) with the status its run would have had anyway; an
 * event stream stops following.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { T, call, hostRuntime, makeFixture, type Fixture } from '../agent/helpers.js';
import { CLI } from './run-cli.js';

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  firstLine: string;
}

/**
 * Runs the CLI with stdout on a pipe whose reader goes away: at once (`afterLines` 0: every
 * write fails), or after the first line has been read, as `head -1` does.
 */
function runClosing(args: string[], afterLines: 0 | 1, whileRunning?: (exited: () => boolean) => Promise<void>): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let firstLine = '';
    let exited = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (afterLines === 0) child.stdout.destroy();
    else {
      let buffer = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buffer += d;
        const at = buffer.indexOf('\n');
        if (at !== -1 && firstLine === '') {
          firstLine = buffer.slice(0, at);
          child.stdout.destroy();
        }
      });
    }
    child.on('error', reject);
    child.on('close', (status, signal) => {
      exited = true;
      resolveRun({ status, signal, stderr, firstLine });
    });
    whileRunning?.(() => exited).catch(reject);
  });
}

function assertQuiet(r: Run, status: number, what: string): void {
  assert.equal(r.signal, null, `${what}: not killed`);
  assert.equal(r.status, status, `${what}: exit status ${r.status}, stderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /EPIPE|Unhandled 'error'|\n\s+at /, `${what}: no stack trace`);
}

describe('a reader that closes early', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let socket: string;

  before(async () => {
    fx = await makeFixture('hotpatch-epipe-');
    const host = hostRuntime(fx.stateDir);
    agent = await startAgent({ stateDir: fx.stateDir, runtime: host.runtime, defaults: { repository: fx.repoDir, trustStore: fx.trustFile }, log: false });
    socket = agent.address;
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('help, fleet help, trust show, status and report exit with their normal status and no stack trace when nobody reads', async () => {
    const trust = fx.trustFile;
    const cases: [string[], number][] = [
      [['--help'], 0],
      [['fleet', '--help'], 0],
      [['trust', 'show', '--trust', trust], 0],
      [['status', '--agent', socket], 0],
      [['status', '--agent', socket, '--json'], 0],
      [['report', '--state', fx.stateDir], 0],
      // A failure still says so on stderr and keeps its status.
      [['verify', '--repo', fx.repoDir, '--id', 'none', '--trust', trust, '--json'], 3],
    ];
    for (const [args, status] of cases) {
      const r = await runClosing(args, 0);
      assertQuiet(r, status, args.join(' '));
      if (status !== 0) assert.match(r.stderr, /^hotpatch: NOT_FOUND: /m);
    }
  });

  test('events | head -1: the stream stops at the next event after the reader went away, exit 0', async () => {
    let flips = 0;
    const r = await runClosing(['events', '--agent', socket], 1, async (exited) => {
      // Events until the CLI has noticed (each request waits for the previous: no sleeping).
      while (!exited() && flips < 5_000) {
        flips += 1;
        const reply = await call(
          { socketPath: socket.replace(/^unix:/, '') },
          'POST',
          flips % 2 === 1 ? '/v1/freeze' : '/v1/unfreeze',
          flips % 2 === 1 ? { target: T, reason: 'epipe test' } : { target: T },
        );
        assert.equal(reply.status, 200, reply.text);
      }
    });
    assertQuiet(r, 0, 'events');
    assert.match(r.firstLine, new RegExp(`Frozen|Unfrozen|${T.replace(/\./g, '\\.')}`), r.firstLine);
    assert.ok(flips < 5_000, 'the CLI stopped by itself');
  });
});
