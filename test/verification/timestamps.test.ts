/*
 * Trusted timestamps (RFC 3161) and key revocation against a real TSA (`openssl ts -reply`,
 * with a CA and TSA certificate made in the test, queried over loopback HTTP): a signature
 * timestamped before its key was revoked (or expired) keeps counting, one timestamped after —
 * or not timestamped — does not; a token from an untrusted TSA, a TSA certificate without
 * timeStamping, a token over other bytes or a replayed reply never count. openssl verifies the
 * tokens the library stores.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { decodeEnvelope, encodeEnvelope, parsePatchId } from '../../src/core/index.js';
import { FileSystemRepository } from '../../src/repo/index.js';
import {
  DefaultVerifier,
  parseTimestampToken,
  parseTrustStore,
  readTimestampReply,
  requestTimestamp,
  timestampPatch,
  timestampQuery,
  verifyPatch,
  verifyTimestampToken,
  type TrustStoreDocument,
} from '../../src/verification/index.js';
import { isCode } from '../support/assertions.js';
import { publishPatch, signerOf, testKey } from '../support/patches.js';
import { cmsSignedToken, makeTsa, serveTsa, type Tsa } from '../support/tsa.js';
import { close } from '../support/static-server.js';
import { hotpatch, hotpatchAsync } from '../cli/run-cli.js';

const run = promisify(execFile);
const T = 'xps.demo.f';
const ID = 'signed-then-revoked';
const key = testKey('release-2025');
const minute = 60_000;

let dir: string;
let repo: string;
let tsa: Tsa;
let rogue: Tsa;
let plain: Tsa;
let loose: Tsa;
let odd: Tsa;
let deep: Tsa;
/** When the TSA timestamped the patch's signature (set by the first test). */
let stampedAt: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hotpatch-tsa-'));
  [tsa, rogue, plain, loose, odd, deep] = await Promise.all([
    makeTsa(dir, 'tsa'),
    makeTsa(dir, 'rogue'),
    makeTsa(dir, 'plain', { ext: 'keyUsage=critical,digitalSignature\n' }),
    makeTsa(dir, 'loose', { ext: 'extendedKeyUsage=serverAuth,timeStamping\n' }),
    makeTsa(dir, 'odd', { ext: 'extendedKeyUsage=critical,timeStamping\n1.2.3.4.5=critical,ASN1:NULL\n' }),
    makeTsa(dir, 'deep', { intermediate: true }),
  ]);
  repo = join(dir, 'repo');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(repo);
  await publishPatch(repo, ID, T, '1.0.1', 'export const api = { f: () => 1 };', {
    manifest: { signers: ['release-2025'] },
    signers: [signerOf('release-2025', key.privateKey)],
  });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A trust store with the patch key, the TSA's CA, and `extra` (a revocation, an expiry). */
function trust(extra: Partial<TrustStoreDocument> = {}, keyExtra: Record<string, unknown> = {}, authorities = [tsa.caPem]) {
  return parseTrustStore({
    keys: { 'release-2025': { alg: key.alg, public_key: key.publicPem, ...keyExtra } },
    threshold: 1,
    timestamping: { certificates: authorities },
    ...extra,
  });
}

const verifyAt = (store: ReturnType<typeof trust>, now: number, repository = new FileSystemRepository(repo)) =>
  verifyPatch(repository, new DefaultVerifier(store), ID, { now });

test('hotpatch timestamp asks a TSA over HTTP for a token over each signature and stores it; the trust store checks it first', async () => {
  const server = await serveTsa(tsa);
  try {
    await writeFile(join(dir, 'trust.json'), JSON.stringify(trust().document));
    // Asynchronously: the TSA server runs in this process.
    const r = await hotpatchAsync(['timestamp', '--repo', repo, '--id', ID, '--tsa', server.url, '--trust', join(dir, 'trust.json'), '--json']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const [stamp] = (r.json?.timestamps ?? []) as { keyid: string; at: string; tsa: string }[];
    assert.equal(stamp?.keyid, 'release-2025');
    assert.match(stamp!.tsa, /CN=tsa test TSA/);
    stampedAt = Date.parse(stamp!.at);
    assert.ok(Math.abs(stampedAt - Date.now()) < 10 * minute, 'the TSA says now');
    assert.equal(server.requests(), 1);
    // Every signature has one now: nothing left to do.
    const again = await hotpatchAsync(['timestamp', '--repo', repo, '--id', ID, '--tsa', server.url, '--json']);
    assert.equal(again.json?.code, 'NOT_FOUND');
  } finally {
    await close(server.server);
  }
});

test('openssl ts -verify accepts the stored token over the signature bytes', async () => {
  const [sig] = decodeEnvelope(await readFile(join(repo, `${ID}.json`))).signatures;
  await writeFile(join(dir, 'sig.bin'), sig!.sig);
  await writeFile(join(dir, 'token.der'), sig!.timestamp!);
  const { stdout } = await run(
    'openssl',
    ['ts', '-verify', '-data', 'sig.bin', '-in', 'token.der', '-token_in', '-CAfile', 'tsa-ca.pem', '-untrusted', 'tsa.pem'],
    { cwd: dir },
  );
  assert.match(stdout, /Verification: OK/);
});

test('revoked after the timestamp: the signature counts; revoked before it, or no timestamp: KEY_REVOKED; not yet revoked: counts without one', async () => {
  const now = stampedAt + 5 * minute;
  const at = (ms: number) => new Date(ms).toISOString();
  const later = trust({ revoked: { 'release-2025': { at: at(stampedAt + minute), reason: 'laptop stolen' } } });
  const verified = await verifyAt(later, now);
  assert.deepEqual(verified.signers, ['release-2025']);

  const earlier = trust({ revoked: { 'release-2025': { at: at(stampedAt - minute) } } });
  await assert.rejects(verifyAt(earlier, now), isCode('KEY_REVOKED', /release-2025 was revoked at .* and its signature is timestamped after/));

  // The same envelope without its timestamp.
  const bare = join(dir, 'bare');
  const { mkdir, copyFile } = await import('node:fs/promises');
  await mkdir(bare);
  await copyFile(join(repo, `${ID}.bin`), join(bare, `${ID}.bin`));
  const envelope = decodeEnvelope(await readFile(join(repo, `${ID}.json`)));
  await writeFile(join(bare, `${ID}.json`), encodeEnvelope({ ...envelope, signatures: envelope.signatures.map(({ keyid, sig }) => ({ keyid, sig })) }));
  await assert.rejects(verifyAt(later, now, new FileSystemRepository(bare)), isCode('KEY_REVOKED', /has no timestamp/));
  const future = trust({ revoked: { 'release-2025': { at: at(now + minute) } } });
  assert.deepEqual((await verifyAt(future, now, new FileSystemRepository(bare))).signers, ['release-2025']);
});

test('a key past its expires counts only for signatures timestamped before it', async () => {
  const now = stampedAt + 5 * minute;
  assert.deepEqual((await verifyAt(trust({}, { expires: new Date(stampedAt + minute).toISOString() }), now)).signers, ['release-2025']);
  await assert.rejects(
    verifyAt(trust({}, { expires: new Date(stampedAt - minute).toISOString() }), now),
    isCode('KEY_REVOKED', /was expired at .* timestamped after/),
  );
});

test('a token from a TSA the store does not trust, or whose certificate lacks timeStamping, or over other bytes, does not count', async () => {
  const now = stampedAt + 5 * minute;
  const revoked = { revoked: { 'release-2025': { at: new Date(stampedAt + minute).toISOString() } } };
  await assert.rejects(
    verifyAt(trust(revoked, {}, [rogue.caPem]), now),
    isCode('KEY_REVOKED', /its timestamp does not count: .*no trusted time-stamping authority vouches/),
  );

  const [sig] = decodeEnvelope(await readFile(join(repo, `${ID}.json`))).signatures;
  // A TSTInfo signed, as plain CMS, by certificates of trusted CAs that are not proper TSAs'.
  const tstInfo = parseTimestampToken(sig!.timestamp!).eContent;
  const authoritiesOf = (pem: string) => trust({}, {}, [pem]).timestampAuthorities;
  const refusals: [Tsa, string, RegExp][] = [
    [plain, 'plain', /not a time-stamping authority \(no timeStamping key usage\)/],
    [loose, 'loose', /its timeStamping usage must be critical and its only one/],
    [odd, 'odd', /a critical extension 1\.2\.3\.4\.5 this check does not understand/],
  ];
  for (const [by, name, message] of refusals) {
    const token = await cmsSignedToken(by, name, tstInfo);
    assert.throws(() => verifyTimestampToken(token, sig!.sig, authoritiesOf(by.caPem)), isCode('UNTRUSTED_KEY', message), name);
  }
  // A token signed as CMS by the proper TSA's key, but without the ESS certificate attribute.
  const bare = await cmsSignedToken(tsa, 'tsa', tstInfo);
  assert.throws(() => verifyTimestampToken(bare, sig!.sig, authoritiesOf(tsa.caPem)), isCode('BAD_SIGNATURE', /does not name its signing certificate/));
  // A proper TSA under an intermediate CA the token carries: trusted only when the intermediate
  // itself is listed (a chain is never taken from the token).
  const deepToken = readTimestampReply(await deep.reply(timestampQuery(sig!.sig).query));
  assert.throws(
    () => verifyTimestampToken(deepToken, sig!.sig, authoritiesOf(deep.caPem)),
    isCode('UNTRUSTED_KEY', /no trusted time-stamping authority vouches/),
  );
  assert.ok(verifyTimestampToken(deepToken, sig!.sig, authoritiesOf(deep.intermediatePem!)).genTime > 0);
  assert.throws(
    () => verifyTimestampToken(sig!.timestamp!, Buffer.from('other bytes'), trust().timestampAuthorities),
    isCode('BAD_SIGNATURE', /over other bytes/),
  );
  assert.throws(
    () => verifyTimestampToken(Buffer.from('not a token'), sig!.sig, trust().timestampAuthorities),
    isCode('INVALID', /not an RFC 3161 timestamp token/),
  );
  // A reply to another query (its nonce) is a replay.
  const { query } = timestampQuery(sig!.sig);
  const { nonce } = timestampQuery(sig!.sig);
  const reply = await tsa.reply(query);
  assert.throws(() => readTimestampReply(reply, nonce), isCode('INVALID', /nonce/));
});

test('hotpatch timestamp --reply stores a reply made by openssl itself for one signature, and refuses a reply over another signature', async () => {
  const other = join(dir, 'other');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(other);
  await publishPatch(other, 'p-2', T, '1.0.2', 'export const api = { f: () => 2 };', {
    manifest: { signers: ['release-2025'] },
    signers: [signerOf('release-2025', key.privateKey)],
  });
  const [sig] = decodeEnvelope(await readFile(join(other, 'p-2.json'))).signatures;
  await writeFile(join(dir, 'p2-sig.bin'), sig!.sig);
  await run('openssl', ['ts', '-query', '-data', 'p2-sig.bin', '-sha256', '-cert', '-out', 'p2.tsq'], { cwd: dir });
  await writeFile(join(dir, 'p2.tsr'), await tsa.reply(await readFile(join(dir, 'p2.tsq'))));
  const wrong = hotpatch(['timestamp', '--repo', repo, '--id', ID, '--reply', join(dir, 'p2.tsr'), '--keyid', 'release-2025', '--json']);
  assert.equal(wrong.json?.code, 'BAD_SIGNATURE');
  const ok = hotpatch([
    'timestamp',
    '--repo',
    other,
    '--id',
    'p-2',
    '--reply',
    join(dir, 'p2.tsr'),
    '--keyid',
    'release-2025',
    '--trust',
    join(dir, 'trust.json'),
    '--json',
  ]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const stored = decodeEnvelope(await readFile(join(other, 'p-2.json'))).signatures[0]!;
  assert.ok(verifyTimestampToken(stored.timestamp!, stored.sig, trust().timestampAuthorities).genTime > 0);
  assert.equal(
    (await timestampPatch(other, parsePatchId('p-2'), { reply: await readFile(join(dir, 'p2.tsr')), keyid: 'release-2025' }))[0]?.keyid,
    'release-2025',
  );
});

test('the trust store refuses a revocation of a key it does not hold, a bad time, an unknown field, and a timestamping entry that is not a certificate', () => {
  const base = trust().document;
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ revoked: { nobody: { at: '2026-01-01T00:00:00Z' } } }, /revoked\.nobody: "nobody" is not a key of this trust store/],
    [{ revoked: { 'release-2025': { at: 'yesterday' } } }, /revoked\.release-2025\.at "yesterday" is not an RFC 3339/],
    [{ revoked: { 'release-2025': { at: '2026-01-01T00:00:00Z', by: 'me' } } }, /unknown field/],
    [{ timestamping: { certificates: ['not a certificate'] } }, /timestamping\.certificates\[0\] is not a certificate/],
    [{ timestamping: { certificates: [] } }, /1 to 32 PEM certificates/],
  ];
  for (const [extra, message] of cases) assert.throws(() => parseTrustStore({ ...base, ...extra }), isCode('INVALID', message), String(message));
  // A revoked key listed again under another id is still revoked (by public key).
  const twin = parseTrustStore({
    ...base,
    keys: { ...base.keys, alias: { alg: key.alg, public_key: key.publicPem } },
    revoked: { 'release-2025': { at: '2026-01-01T00:00:00Z' } },
  });
  assert.equal(twin.cutoffs.size, 1);
  assert.equal(twin.cutoffs.get(twin.keys.get('alias')!.key.fingerprint)?.why, 'revoked');
});

test('a TSA that trickles its reply is cut off at the whole-exchange deadline (IO), however steady the trickle', async () => {
  const { createServer } = await import('node:http');
  const trickle = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/timestamp-reply' });
    const drip = setInterval(() => res.write(Buffer.from([0x30])), 50);
    res.on('close', () => clearInterval(drip));
  });
  await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = trickle.address() as { port: number };
    await assert.rejects(
      requestTimestamp(`http://127.0.0.1:${port}/tsa`, Buffer.from('sig'), { timeoutMs: 400 }),
      isCode('IO', /no complete reply within 400 ms/),
    );
  } finally {
    trickle.closeAllConnections();
    await new Promise<void>((resolve) => trickle.close(() => resolve()));
  }
});
