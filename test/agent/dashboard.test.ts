/*
 * The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a live agent
 * on loopback HTTP: sign-in with the token, a canary in flight shown step by step as the event
 * stream delivers it (no reload), an abort and a rollback clicked in the page (behind a
 * confirmation) that happen and appear in the timeline; without the token the page shows its
 * sign-in form only and the API refuses; a forged cross-site POST and a request under another
 * host name (DNS rebinding) are refused; screenshots at 1280×800 and at a phone's width are
 * saved as test artefacts (dist/test-artifacts/dashboard).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Agent } from '../../src/agent/index.js';
import { waitFor } from '../support/wait.js';
import { FAST_ZDT, T, call, makeFixture, planOf, startHttpAgent, statusWithHost, type Endpoint, type Fixture } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = resolve('dist/test-artifacts/dashboard');
/** A canary that stays in flight for a while: 40 short steps, so the page sees it move. */
const SLOW_CANARY = { ...FAST_ZDT, steps: Array.from({ length: 40 }, (_, i) => (i + 1) / 50), canaryInterval: 400 };

let fx: Fixture;
let agent: Agent;
let ep: Endpoint;
let base: string;
let browser: Browser;
let target: Awaited<ReturnType<typeof startHttpAgent>>['target'];
let traffic: NodeJS.Timeout;
const pageErrors: string[] = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing (${CHROMIUM}): apt-get install -y chromium`);
  fx = await makeFixture('hotpatch-dashboard-');
  ({ agent, ep, target } = await startHttpAgent(fx));
  base = `http://127.0.0.1:${ep.port}`;
  // The service's own calls, all along: a canary needs them.
  traffic = setInterval(() => {
    for (let i = 0; i < 20; i++) target.api.digest(`d${i}`);
  }, 2);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  clearInterval(traffic);
  await browser?.close();
  await agent?.close();
  await fx?.close();
});

async function signedIn(viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  // A script error in the page fails the test that meets it, with the error.
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  await page.goto(`${base}/ui/`);
  await page.fill('#token', ep.token!);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#targets');
  return page;
}

test('without the token the page shows its sign-in form only and the API refuses; a request under another host name (DNS rebinding) is refused', async () => {
  const page = await fetch(`${base}/ui/`);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.ok(!html.includes(T), 'the page itself holds no data');
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  for (const path of ['/v1/status', '/v1/events/recent', '/v1/whoami', '/v1/events']) assert.equal((await fetch(`${base}${path}`)).status, 401, path);
  // The right token, but the Host a rebound DNS name would carry: refused before anything else.
  assert.equal(await statusWithHost(ep, '/v1/status', `evil.example:${ep.port}`), 421);
  assert.equal(await statusWithHost(ep, '/ui/', `evil.example:${ep.port}`), 421);
  assert.equal(await statusWithHost(ep, '/v1/status', '127.0.0.1'), 200, 'the port may be left out');
  // An agent on 127.0.0.1 does not answer to `localhost`: a browser may resolve that to ::1, where another program may listen.
  assert.equal(await statusWithHost(ep, '/v1/status', `localhost:${ep.port}`), 421);
  assert.equal(await statusWithHost(ep, 'http://evil.example/v1/status', `127.0.0.1:${ep.port}`), 421, 'an absolute request target naming another host');
  assert.equal(await statusWithHost(ep, '//evil.example/v1/status', `127.0.0.1:${ep.port}`), 400, 'a target starting with // (another authority)');

  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.goto(`${base}/ui/`);
  await tab.fill('#token', 'not-the-token');
  await tab.click('#sign-in button[type=submit]');
  await tab.locator('#sign-in-error', { hasText: 'refused' }).waitFor();
  assert.equal(await tab.locator('#targets').count(), 0, 'no data without the token');
  await context.close();
});

test('a forged cross-site form POST is refused while an operator is signed in, and the target keeps its state', async () => {
  const page = await signedIn();
  // Another site whose page posts to the agent as soon as it loads, in the operator's browser.
  const attacker: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(
      `<form method="POST" action="${base}/v1/freeze" enctype="text/plain"><input name='{"target":"${T}","reason":"pwned","x":"' value='"}'></form><script>document.forms[0].submit()</script>`,
    );
  });
  await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
  try {
    const forged = page.waitForResponse((r) => r.url() === `${base}/v1/freeze`);
    await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
    const response = await forged;
    assert.equal(response.status(), 401, await response.text());
    assert.equal(target.frozen, undefined);
  } finally {
    attacker.closeAllConnections();
    await new Promise<void>((r) => attacker.close(() => r()));
    await page.context().close();
  }
});

test('the page follows a canary step by step without a reload, and an abort then a rollback clicked in it happen and appear in the timeline', async (t) => {
  await fx.publish('dash-1', '1.0.1');
  await fx.publish('dash-2', '1.0.2');
  const started = Date.now();
  const page = await signedIn();
  t.diagnostic(`sign-in to first render: ${Date.now() - started} ms`);
  await page.evaluate('window.marker = 42');

  const applying = call(ep, 'POST', '/v1/apply', { plan: planOf('dash-canary', 'dash-1', SLOW_CANARY) });
  const card = page.locator(`.canary-card[data-target="${T}"]`);
  const stepShown = async (): Promise<number | undefined> => {
    const text = await card
      .locator('.step')
      .textContent({ timeout: 500 })
      .catch(() => null);
    const m = /step (\d+) of 40/.exec(text ?? '');
    return m === null ? undefined : Number(m[1]);
  };
  const first = await waitFor('a canary step on the page', stepShown, 30_000, 50);
  await waitFor('a later step on the same page', async () => ((await stepShown()) ?? 0) > first, 30_000, 50);
  assert.deepEqual(
    pageErrors.filter((e) => !/Failed to load resource/.test(e)),
    [],
    'no script error in the page',
  );
  assert.equal(await page.evaluate('window.marker'), 42, 'updated in place, never reloaded');
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-canary-1280x800.png'), fullPage: true });

  await page.click(`#targets button[data-action="abort"][data-target="${T}"]`);
  await page.waitForSelector('dialog#confirm[open]');
  await page.click('#confirm-ok');
  const outcome = await applying;
  assert.notEqual(outcome.json.status, 'activated', outcome.text);
  await page.locator('#timeline li.RolledBack, #timeline li.Aborted').first().waitFor({ timeout: 15_000 });
  assert.equal(target.active.patchId, null, 'the canary was aborted: the built-in serves');

  // A patch promoted by another operator shows up by itself; rolling it back from the page works.
  const promoted = await call(ep, 'POST', '/v1/apply', { plan: planOf('dash-promote', 'dash-2') });
  assert.equal(promoted.json.status, 'activated', promoted.text);
  await page.locator(`#targets tr[data-target="${T}"] .active-version`, { hasText: 'dash-2' }).waitFor({ timeout: 15_000 });
  // In probation, dash-2 is not yet known good: the last good version is still the built-in.
  assert.equal(await page.locator(`#targets tr[data-target="${T}"] .last-good`).textContent(), '1.0.0 (built-in)');
  const before = await page.locator('#timeline li.RolledBack').count();
  await page.click(`#targets button[data-action="rollback"][data-target="${T}"]`);
  await page.click('#confirm-ok');
  await waitFor('a RolledBack event in the timeline', async () => (await page.locator('#timeline li.RolledBack').count()) > before, 15_000, 100);
  await page.locator(`#targets tr[data-target="${T}"] .active-version`, { hasText: 'built-in' }).waitFor({ timeout: 15_000 });
  assert.equal(target.active.patchId, null);
  assert.equal(await page.evaluate('window.marker'), 42);
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-after-rollback-1280x800.png'), fullPage: true });
  await page.context().close();
});

test('when the agent goes away the page drops its token and asks for it again', async () => {
  const other = await makeFixture('hotpatch-dashboard-lost-');
  const second = await startHttpAgent(other);
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`http://127.0.0.1:${second.ep.port}/ui/`);
    await page.fill('#token', second.ep.token!);
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector('#targets');
    await page.locator('#live', { hasText: 'live' }).waitFor();
    await second.agent.close();
    // The stream's end is the agent's: the token is gone, and the page asks for it again.
    await page.locator('#sign-in-error', { hasText: 'connection to the agent was lost' }).waitFor({ timeout: 60_000 });
    assert.equal(await page.locator('#targets').count(), 0);
  } finally {
    await context.close();
    await second.agent.close();
    second.runtime.close();
    await other.close();
  }
});

test('at a phone width the page fits the screen', async () => {
  const page = await signedIn({ width: 390, height: 844 });
  const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
  assert.ok(overflow <= 1, `the page is ${overflow} px wider than the screen`);
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-390x844.png'), fullPage: true });
  await page.context().close();
});
