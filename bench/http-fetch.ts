/*
 * Benchmark — fetching and verifying a patch over HTTP (HttpRepository + verifyPatch).
 *
 * A 64 MiB payload (1 MiB of crypto.randomBytes written 64 times) and a real signed 2-of-3
 * Ed25519 manifest (bench/fixtures.ts, as payload-hash) in a repository directory, served on
 * 127.0.0.1 (port 0) by a plain node:http static file server: Content-Length, the file
 * streamed from disk by createReadStream (1 MiB reads, so that the server is not what every
 * case waits for). The server runs in a child process (this file, `--serve DIR`): in this
 * process it would share the event loop with our client while curl has a CPU of its own.
 * Cases, in the same run, against that one server:
 *   - baseline: `curl -s -o /dev/null URL` (spawned; wall time from spawn to exit; its
 *     http_code and size_download are checked);
 *   - ours: verifyPatch(new HttpRepository(url), verifier, id): envelope fetched over HTTP,
 *     signatures verified, the payload streamed through the size and SHA-256 checks;
 *   - HttpRepository.openPayload(id, size + 1) alone, the chunks counted (no hash);
 *   - `curl -s URL | sha256sum` (spawned, wall; the digest checked): the same work as ours,
 *     with coreutils' own SHA-256 (without the CPU's SHA extensions that OpenSSL, so node, uses);
 *   - node http.get + createHash('sha256') without HttpRepository (what node itself costs);
 *   - curl's own transfer time (-w %{time_total}, the same curl runs: no process start-up).
 * One warm-up round (the page cache is warm for every case), then 11 rounds; each round
 * runs the goal's pair (curl and ours) back to back, which one first alternating, then the
 * other cases in an order rotated every round, so that a burst of load from elsewhere on the
 * shared machine hits the compared cases alike. Ratios are per round (throughput of the case
 * over curl's in the same round), and the median of those is reported.
 * Goal: ours >= 0.8 × curl's throughput.
 * --quick: a 16 MiB payload and 2 rounds. curl is required (fails at once without it).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createServer, get } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpRepository, verifyPatch, type PatchId } from '../src/index.js';
import { writeSignedPayload } from './fixtures.js';
import { elapsedMs, judge, median, withTempDir, type Row } from './harness.js';

const NAME = 'http-fetch';
const MIB = 1024 * 1024;
const FULL = { blocks: 64, rounds: 11 };
const QUICK = { blocks: 16, rounds: 2 };
const GOAL = '>= 0.8';
/** The server's createReadStream highWaterMark. */
const SERVER_READ = 1 * MIB;
/** A server that has not printed its port by then is taken for broken. */
const SERVER_START_MS = 10_000;
const CURL_MISSING = 'curl is required by the http-fetch benchmark and was not found: apt-get install -y curl';

/** The static file server, in the child process: files of `dir` by name, nothing else. */
function serve(dir: string): void {
  const server = createServer((req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname.slice(1);
    const file = join(dir, name);
    // Plain file names only (no %-escapes, no dot files, no path): nothing outside `dir`.
    if (req.method !== 'GET' || !/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    stat(file).then(
      (st) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
        createReadStream(file, { highWaterMark: SERVER_READ })
          .on('error', (error) => res.destroy(error))
          .pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`PORT ${typeof address === 'object' && address !== null ? address.port : 0}\n`);
  });
  // The parent holds our stdin: when it ends (the parent is done, or died), so do we.
  process.stdin.on('end', () => process.exit(0)).resume();
}

/** Starts the server child on `dir`; resolves with its port and a function that stops it. */
function startServer(dir: string): Promise<{ port: number; stop: () => void }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', dir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.kill();
      reject(new Error(`the static file server ${why}: ${err.trim()}`));
    };
    const timer = setTimeout(() => fail(`printed no port within ${SERVER_START_MS} ms`), SERVER_START_MS);
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (error) => fail(`could not start (${error.message})`));
    child.on('exit', (code, signal) => fail(`exited with ${code ?? signal}`));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^PORT (\d+)$/m.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolvePromise({ port: Number(m[1]), stop: () => child.kill() });
    });
  });
}

/** Standard output of `command args`; rejects with its standard error unless it exits with 0. */
function output(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' && command === 'curl' ? new Error(CURL_MISSING) : error));
    child.on('close', (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${err.trim()}`))));
  });
}

/** Runs curl on `url`; resolves with its own time_total in ms once it has checked status and size. */
async function curl(url: string, size: number): Promise<number> {
  const out = await output('curl', ['-s', '-S', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url]);
  const [status, bytes, seconds] = out.trim().split(' ');
  if (status !== '200' || Number(bytes) !== size) throw new Error(`curl ${url}: status ${status}, ${bytes} bytes of ${size}`);
  return Number(seconds) * 1000;
}

/** SHA-256 (hex) of `url`'s body with node's http.get and createHash, nothing else. */
function nodeGetHash(url: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    get(url, (res) => {
      const hash = createHash('sha256');
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('end', () => resolvePromise(hash.digest('hex')));
      res.on('error', reject);
    }).on('error', reject);
  });
}

export async function run(options: { quick?: boolean } = {}): Promise<Row[]> {
  const { blocks, rounds } = options.quick === true ? QUICK : FULL;
  const size = blocks * MIB;
  // Before writing anything: without curl there is no baseline, and the run must say so.
  await output('curl', ['--version']);
  return withTempDir('xps-bench-http-', async (dir) => {
    const repoDir = join(dir, 'repo');
    await mkdir(repoDir);
    const id = `bench-http-${blocks}m` as PatchId;

    // The payload and a real signed manifest (2-of-3 Ed25519) next to it.
    const { verifier, expectedHex } = await writeSignedPayload(repoDir, id, blocks);

    const server = await startServer(repoDir);
    try {
      const base = `http://127.0.0.1:${server.port}/`;
      const payloadUrl = `${base}${id}.bin`;
      const curlOwnMs: number[] = [];
      const cases = {
        curl: {
          label: 'curl -s -o /dev/null URL (spawn, wall)',
          op: () => curl(payloadUrl, size).then((ms) => curlOwnMs.push(ms)),
        },
        verifyPatch: {
          label: 'verifyPatch(HttpRepository): envelope, signatures, SHA-256',
          op: () => verifyPatch(new HttpRepository(base), verifier, id),
        },
        openPayload: {
          label: 'HttpRepository.openPayload alone (no hash)',
          op: async () => {
            let n = 0;
            for await (const chunk of new HttpRepository(base).openPayload(id, size + 1)) n += chunk.byteLength;
            if (n !== size) throw new Error(`openPayload gave ${n} bytes, expected ${size}`);
          },
        },
        curlSha: {
          label: 'curl -s URL | sha256sum (spawn, wall)',
          op: () =>
            output('sh', ['-c', 'curl -sS "$1" | sha256sum', 'sh', payloadUrl]).then((out) => {
              if (out.slice(0, 64) !== expectedHex) throw new Error(`curl | sha256sum computed ${out.slice(0, 64)}, expected ${expectedHex}`);
            }),
        },
        nodeGet: {
          label: 'node http.get + createHash (no HttpRepository)',
          op: () =>
            nodeGetHash(payloadUrl).then((hex) => {
              if (hex !== expectedHex) throw new Error(`http.get + createHash computed ${hex}, expected ${expectedHex}`);
            }),
        },
      };
      type Key = keyof typeof cases;
      const keys = Object.keys(cases) as Key[];
      const others = keys.filter((k) => k !== 'curl' && k !== 'verifyPatch');

      // One warm-up round, then the measured ones: the goal's pair back to back (alternating
      // which goes first), then the other cases in an order rotated every round.
      for (const key of keys) await cases[key].op();
      curlOwnMs.length = 0;
      const ms = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<Key, number[]>;
      for (let r = 0; r < rounds; r++) {
        const pair: Key[] = r % 2 === 0 ? ['curl', 'verifyPatch'] : ['verifyPatch', 'curl'];
        const rest = others.map((_, i) => others[(i + r) % others.length]!);
        for (const key of [...pair, ...rest]) ms[key].push(await elapsedMs(cases[key].op));
      }

      const mbps = (t: number): number => size / 1e6 / (t / 1000);
      /** Per round: this series' throughput over the baseline's (default curl, wall) in the same round; their median. */
      const paired = (series: readonly number[], against: readonly number[] = ms.curl): number => median(series.map((t, r) => against[r]! / t));
      const row = (label: string, series: number[], extra: Partial<Row> & Pick<Row, 'status'>): Row => ({
        benchmark: NAME,
        case: label,
        unit: 'MB/s',
        median: mbps(median(series)),
        best: mbps(Math.min(...series)),
        rounds,
        ...extra,
      });
      const info = (series: number[]): Partial<Row> & Pick<Row, 'status'> => ({ ratio: paired(series), baseline: cases.curl.label, status: 'info' });
      const ratio = paired(ms.verifyPatch);
      // The same comparison against curl's own transfer time: curl's start-up left out.
      const ratioOwn = paired(ms.verifyPatch, curlOwnMs);
      return [
        row(cases.curl.label, ms.curl, {
          status: 'baseline',
          note:
            `${blocks} MiB file over loopback from a node:http static server in a child process (createReadStream, ${SERVER_READ / MIB} MiB reads); ` +
            `1 warm-up round, then ${rounds} rounds: this case and verifyPatch back to back (alternating which goes first), then the others rotated; ` +
            'ratios: median over rounds of the ratio within each round',
        }),
        row(cases.verifyPatch.label, ms.verifyPatch, {
          ratio,
          baseline: cases.curl.label,
          goal: GOAL,
          status: judge(ratio, GOAL),
          note:
            `goal judged on this row; ratio of the medians ${(median(ms.curl) / median(ms.verifyPatch)).toFixed(2)}×; ` +
            `against curl's own time_total (no start-up) ${ratioOwn.toFixed(2)}×`,
        }),
        row(cases.openPayload.label, ms.openPayload, info(ms.openPayload)),
        row(cases.curlSha.label, ms.curlSha, {
          ...info(ms.curlSha),
          note: `the same work as ours (download and SHA-256, in two processes); ours against it: ${paired(ms.verifyPatch, ms.curlSha).toFixed(2)}×`,
        }),
        row(cases.nodeGet.label, ms.nodeGet, info(ms.nodeGet)),
        row('curl -w %{time_total} (same runs, no start-up)', curlOwnMs, info(curlOwnMs)),
      ];
    } finally {
      server.stop();
    }
  });
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain && process.argv[2] === '--serve' && process.argv[3] !== undefined) serve(process.argv[3]);
