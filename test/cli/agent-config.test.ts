/*
 * Where the operator commands find their agent without --agent: HOTPATCH_AGENT, then the first
 * config file of ./.hotpatch.json and $XDG_CONFIG_HOME/hotpatch/config.json (else
 * ~/.config/hotpatch/config.json). Sockets that do not exist show which one was chosen: the
 * command fails to reach it (exit 3) and names it and where it came from.
 */
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cleanEnv, hotpatch, type CliResult } from './run-cli.js';

let dir: string;
let home: string;
let xdg: string;
let work: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-config-'));
  home = join(dir, 'home');
  xdg = join(dir, 'xdg');
  work = join(dir, 'work');
  for (const d of [home, xdg, work, join(home, '.config', 'hotpatch'), join(xdg, 'hotpatch')]) await mkdir(d, { recursive: true });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(path: string, body: unknown): Promise<string> {
  await writeFile(path, typeof body === 'string' ? body : JSON.stringify(body));
  return path;
}

async function clear(): Promise<void> {
  for (const f of [join(work, '.hotpatch.json'), join(xdg, 'hotpatch', 'config.json'), join(home, '.config', 'hotpatch', 'config.json')])
    await rm(f, { force: true });
}

function status(args: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): CliResult {
  return hotpatch(['status', ...args, '--json'], { cwd: work, env: cleanEnv(home, extraEnv) });
}

/** The command chose `socket` (from `source`), found nothing there: exit 3, IO. */
function assertChose(r: CliResult, socket: string, source?: string): void {
  assert.equal(r.status, 3, `${r.stdout}\n${r.stderr}`);
  assert.equal(r.json?.code, 'IO');
  const message = String(r.json?.message);
  assert.ok(message.startsWith(`cannot reach the agent at ${socket}${source === undefined ? ':' : ` (from ${source}):`}`), message);
}

test('with no --agent, no HOTPATCH_AGENT and no config file, status is a usage error saying how to set one', async () => {
  await clear();
  const r = status();
  assert.equal(r.status, 2);
  assert.equal(r.json?.code, 'INVALID');
  const message = String(r.json?.message);
  assert.match(message, /^no agent given: pass --agent SOCKET_OR_URL, set HOTPATCH_AGENT, or write \{"agent": /);
  assert.ok(message.includes(join(work, '.hotpatch.json')) && message.includes(join(home, '.config', 'hotpatch', 'config.json')), message);
});

test('HOTPATCH_AGENT names the agent when --agent is not given', async () => {
  await clear();
  assertChose(status([], { HOTPATCH_AGENT: join(dir, 'env.sock') }), join(dir, 'env.sock'), 'HOTPATCH_AGENT');
});

test('./.hotpatch.json names the agent, a relative socket path being relative to the file', async () => {
  await clear();
  const file = await config(join(work, '.hotpatch.json'), { agent: 'cwd.sock' });
  assertChose(status(), join(work, 'cwd.sock'), file);
});

test('$XDG_CONFIG_HOME/hotpatch/config.json, else ~/.config/hotpatch/config.json, names the agent; ./.hotpatch.json comes first', async () => {
  await clear();
  const homeFile = await config(join(home, '.config', 'hotpatch', 'config.json'), { agent: `unix:${join(dir, 'home.sock')}` });
  assertChose(status(), join(dir, 'home.sock'), homeFile);
  const xdgFile = await config(join(xdg, 'hotpatch', 'config.json'), { agent: join(dir, 'xdg.sock') });
  assertChose(status([], { XDG_CONFIG_HOME: xdg }), join(dir, 'xdg.sock'), xdgFile);
  const cwdFile = await config(join(work, '.hotpatch.json'), { agent: join(dir, 'cwd.sock') });
  assertChose(status([], { XDG_CONFIG_HOME: xdg }), join(dir, 'cwd.sock'), cwdFile);
});

test('--agent wins over HOTPATCH_AGENT, which wins over the config file', async () => {
  await clear();
  await config(join(work, '.hotpatch.json'), { agent: join(dir, 'file.sock') });
  const env = { HOTPATCH_AGENT: join(dir, 'env.sock') };
  assertChose(status(['--agent', join(dir, 'flag.sock')], env), join(dir, 'flag.sock'));
  assertChose(status([], env), join(dir, 'env.sock'), 'HOTPATCH_AGENT');
});

test('a config file is read only when needed: a broken one does not matter when --agent names a socket', async () => {
  await clear();
  await config(join(work, '.hotpatch.json'), '{ not json');
  assertChose(status(['--agent', join(dir, 'flag.sock')]), join(dir, 'flag.sock'));
});

test('a config file is parsed strictly and read bounded: each refusal is a usage error naming the file', async () => {
  const file = join(work, '.hotpatch.json');
  const cases: [unknown, string, RegExp][] = [
    [{ agent: 'a.sock', token: 'x' }, 'INVALID', /has unknown field "token"/],
    ['{ not json', 'PARSE', /./],
    [[], 'INVALID', /must be a JSON object/],
    [{ agent: 42 }, 'INVALID', /"agent" must be a non-empty string/],
    [{ agent: '' }, 'INVALID', /"agent" must be a non-empty string/],
    [{ agent: 'http://10.1.2.3:7070', tokenFile: 't' }, 'INVALID', /is not on loopback/],
    [`{"agent": "a.sock", "pad": "${'x'.repeat(70 * 1024)}"}`, 'TOO_LARGE', /larger than the limit of 65536 bytes/],
  ];
  for (const [body, code, message] of cases) {
    await clear();
    await config(file, body);
    const r = status();
    assert.equal(r.status, 2, `${JSON.stringify(body).slice(0, 60)}: ${r.stderr}`);
    assert.equal(r.json?.code, code, String(r.json?.message));
    assert.ok(String(r.json?.message).includes(file), String(r.json?.message));
    assert.match(String(r.json?.message), message);
  }
});

test("a config file anyone may write, or another user's, is refused: it decides where the token goes", async () => {
  await clear();
  const file = await config(join(work, '.hotpatch.json'), { agent: 'a.sock' });
  await chmod(file, 0o666);
  const open = status();
  assert.equal(open.status, 2, open.stderr);
  assert.match(String(open.json?.message), /is writable by anyone \(mode 666\)/);
  await chmod(file, 0o644);
  if (process.getuid?.() === 0) {
    await chown(file, 4321, 4321);
    const foreign = status();
    assert.equal(foreign.status, 2, foreign.stderr);
    assert.match(String(foreign.json?.message), /belongs to uid 4321, not to you/);
  }
});

test('an HTTP agent off loopback, or an https:// one, is refused before anything is sent: the bearer token never crosses a network in clear', async () => {
  await clear();
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'a'.repeat(48), { mode: 0o600 });
  // Something listening on loopback sees no connection for an https:// address either.
  let connections = 0;
  const listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  try {
    const port = (listener.address() as AddressInfo).port;
    for (const agent of ['http://10.255.255.1:9', 'http://example.com:80', `https://127.0.0.1:${port}`]) {
      for (const r of [status(['--agent', agent, '--token-file', tokenFile]), status(['--token-file', tokenFile], { HOTPATCH_AGENT: agent })]) {
        assert.equal(r.status, 2, `${agent}: ${r.stdout}`);
        assert.equal(r.json?.code, 'INVALID');
        assert.match(String(r.json?.message), /the agent serves plain HTTP on loopback only/);
      }
    }
    assert.equal(connections, 0);
  } finally {
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
});
