import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgent, type Agent } from '../../src/agent/index.js';
import { hostRuntime, makeFixture, writeToken, type Fixture } from './helpers.js';

const TOKEN = 'event-stream-token-0123456789';

/** Opens GET /v1/events and resolves with the status code once the head arrives (the stream stays open). */
function openStream(port: number): Promise<{ status: number; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/events', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('event streams are bounded: a cap on open streams, and a client that stops reading is let go', { timeout: 60_000 }, () => {
  let fx: Fixture;
  let agent: Agent;
  let port: number;

  before(async () => {
    fx = await makeFixture('hotpatch-agent-streams-');
    const tokenFile = join(fx.dir, 'agent.token');
    await writeToken(tokenFile, `${TOKEN}\n`);
    const host = hostRuntime(fx.stateDir);
    agent = await startAgent({
      stateDir: fx.stateDir,
      runtime: host.runtime,
      http: { port: 0, tokenFile },
      log: false,
      maxEventStreams: 3,
      maxEventBacklogBytes: 64 * 1024,
    });
    port = Number(/:(\d+)$/.exec(agent.address)![1]);
  });

  after(async () => {
    await agent?.close();
    await fx?.close();
  });

  test('past maxEventStreams a new stream is refused with 503 TOO_LARGE; closing one makes room', async () => {
    const open = await Promise.all([openStream(port), openStream(port), openStream(port)]);
    assert.deepEqual(
      open.map((s) => s.status),
      [200, 200, 200],
    );
    const refused = await openStream(port);
    assert.equal(refused.status, 503);
    refused.close();
    open[0]!.close();
    // The server notices the close asynchronously: retry until the slot is free (bounded).
    let again = await openStream(port);
    for (let i = 0; again.status !== 200 && i < 100; i++) {
      again.close();
      await new Promise((r) => setImmediate(r));
      again = await openStream(port);
    }
    assert.equal(again.status, 200);
    again.close();
    for (const s of open.slice(1)) s.close();
  });

  test('a client that never reads is disconnected once its backlog passes the limit, and its slot is freed', async () => {
    // A raw socket that sends the request and then never reads a byte.
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.pause();
    socket.write(`GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
    try {
      // Until the agent holds the stream, a third of the three slots is taken by it.
      for (let i = 0; i < 500 && !(await slowStreamHeld(port)); i++) await new Promise((r) => setImmediate(r));
      assert.ok(await slowStreamHeld(port), 'the slow client holds a stream');
      // 20 MB of events: far past the 64 KiB backlog and the kernel's socket buffers.
      for (let i = 0; i < 10_000; i++) {
        agent.bus.publish({ type: 'Staged', id: 'flood', target: 'xps.crypto.hash.sha256', version: '1.0.0', reason: 'x'.repeat(2000) });
        if (i % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      let held = true;
      for (let i = 0; i < 500 && held; i++) {
        held = await slowStreamHeld(port);
        if (held) await new Promise((r) => setImmediate(r));
      }
      assert.equal(held, false, 'the stream of a client that does not read was closed and its slot freed');
    } finally {
      socket.destroy();
    }
  });
});

/** With 3 slots: true when two new streams fit but a third is refused (one slot held by the slow client). */
async function slowStreamHeld(port: number): Promise<boolean> {
  const streams = [await openStream(port), await openStream(port), await openStream(port)];
  for (const s of streams) s.close();
  // Give the agent a turn to see these probes close before the next probe.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return streams[0]!.status === 200 && streams[1]!.status === 200 && streams[2]!.status === 503;
}
