/*
 * `hotpatch serve` publishes a repository directory; `hotpatch verify --repo https?://…` and
 * the library's HttpRepository fetch from it. A real server process on loopback.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'node:http';
import { test } from 'node:test';
import { CI_TRUST, publishPatch } from '../support/patches.js';
import { CLI, hotpatchAsync } from './run-cli.js';

test('hotpatch serve publishes a repository directory: verify over http, index generated, nothing else served; SIGTERM stops it (exit 0)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hotpatch-serve-'));
  const repo = join(dir, 'repo');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(repo);
  await publishPatch(repo, 'served-1', 'xps.demo.f', '1.0.1', 'export const api = { f: () => 1 };');
  await writeFile(join(dir, 'secret.txt'), 'not for the world');
  await symlink(join(dir, 'secret.txt'), join(repo, 'leak-1.json'));
  await writeFile(join(dir, 'trust.json'), JSON.stringify(CI_TRUST));
  const server = spawn(process.execPath, [CLI, 'serve', '--repo', repo, '--listen', '127.0.0.1:0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', resolve);
      server.once('exit', (code) => reject(new Error(`serve exited ${String(code)} before listening`)));
    });
    const { url } = JSON.parse(first) as { url: string };
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const v = await hotpatchAsync(['verify', '--repo', url, '--id', 'served-1', '--trust', join(dir, 'trust.json'), '--json']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.json?.ok, true);
    const index = (await (await fetch(`${url}index.json`)).json()) as { patches: Record<string, unknown> };
    assert.deepEqual(Object.keys(index.patches), ['served-1']);
    assert.equal((await fetch(`${url}leak-1.json`)).status, 404, 'a link is never followed');
    assert.equal((await fetch(`${url}../secret.txt`)).status, 404);
    assert.equal((await fetch(`${url}served-1.json`, { method: 'POST' })).status, 405);
    // Odd request targets name no file (404), never a server error; a query is ignored.
    for (const [path, status] of [
      ['//', 404],
      ['//served-1.json', 404],
      ['/%zz.json', 404],
      ['http://elsewhere/served-1.json', 404],
      ['/served-1.json?x=1', 200],
    ] as const) {
      assert.equal(await statusOf(url, path), status, path);
    }
    const missing = await hotpatchAsync(['verify', '--repo', url, '--id', 'absent-1', '--trust', join(dir, 'trust.json'), '--json']);
    assert.equal(missing.status, 3);
    assert.equal(missing.json?.code, 'NOT_FOUND');
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    server.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

/** The status of a GET of exactly `path` (no client normalisation of the request target). */
function statusOf(base: string, path: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    request({ host: hostname, port, path, method: 'GET' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    })
      .on('error', reject)
      .end();
  });
}
