/*
 * The strict-JSON kit (core/json-shape.ts): every check returns its input typed, or refuses
 * it with INVALID (PARSE for text that is not JSON) and a bounded message naming the field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import semver from 'semver';
import {
  asObject,
  boundedString,
  canonicalVersion,
  decodeJson,
  decodeJsonObject,
  describe,
  integerInRange,
  isPlainObject,
  oneOf,
  optional,
  rejectUnknownFields,
  stringField,
  utcTimestamp,
} from '../../src/core/index.js';
import { outcomeOf, throwsCode } from '../support/assertions.js';

/** Longest message a refusal of a short field name may carry: the name, a describe(), a short list. */
const MESSAGE_BOUND = 700;

/** Values that are not plain objects: what a JSON object field must refuse. */
const notAPlainObject = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.double(),
  fc.string(),
  fc.array(fc.jsonValue(), { maxLength: 4 }),
  fc.constantFrom<unknown>(new Map(), new Set(), new Date(0), new Uint8Array(3), /x/, () => 1, new (class Settings {})()),
);

test('for any JSON text, decodeJson gives what JSON.parse gives, from text and from UTF-8 bytes alike', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      const text = JSON.stringify(value);
      assert.deepEqual(decodeJson(text, 'doc'), JSON.parse(text));
      assert.deepEqual(decodeJson(new TextEncoder().encode(text), 'doc'), JSON.parse(text));
    }),
    { numRuns: 300 },
  );
});

test('for any string, decodeJson refuses with PARSE exactly when JSON.parse throws', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc.jsonValue().map((v) => `${JSON.stringify(v)},`),
      ),
      (text) => {
        let parses = true;
        try {
          JSON.parse(text);
        } catch {
          parses = false;
        }
        const out = outcomeOf(() => decodeJson(text, 'doc'));
        assert.equal(out.ok, parses);
        if (!out.ok) assert.equal(out.error.code, 'PARSE');
      },
    ),
    { numRuns: 500 },
  );
});

test('bytes that are not UTF-8 are PARSE, named, before any JSON is read', () => {
  throwsCode(() => decodeJson(Uint8Array.of(0x22, 0xff, 0x22), 'store file'), 'PARSE', /^store file is not valid UTF-8$/);
  throwsCode(() => decodeJsonObject('[1]', 'request body'), 'INVALID', /^request body must be a JSON object, got an array$/);
});

test('for any JSON object, asObject accepts it as it is, and for anything else it refuses with INVALID naming the field', () => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 6 }), (dict) => {
      const parsed = JSON.parse(JSON.stringify(dict)) as unknown;
      assert.equal(asObject(parsed, 'doc'), parsed);
      assert.equal(isPlainObject(Object.assign(Object.create(null), dict)), true);
    }),
  );
  fc.assert(
    fc.property(notAPlainObject, fc.string({ minLength: 1, maxLength: 40 }), (value, field) => {
      const out = outcomeOf(() => asObject(value, field));
      assert.equal(out.ok, false);
      if (out.ok) return;
      assert.equal(out.error.code, 'INVALID');
      assert.ok(out.error.message.startsWith(`${field} must be a JSON object, got `), out.error.message);
      assert.ok(out.error.message.length <= MESSAGE_BOUND, out.error.message);
    }),
    { numRuns: 300 },
  );
});

test('for any object and list of known fields, rejectUnknownFields refuses exactly when a field is not known, naming it and the allowed ones', () => {
  const keys = fc.constantFrom('id', 'target', 'version', 'reason', '__proto__', 'constructor', 'x'.repeat(300), 'tab\there');
  fc.assert(
    fc.property(fc.uniqueArray(keys), fc.uniqueArray(keys), fc.boolean(), (present, known, asSet) => {
      const obj = JSON.parse(`{${present.map((k) => `${JSON.stringify(k)}:1`).join(',')}}`) as Record<string, unknown>;
      const unknown = present.filter((k) => !known.includes(k));
      const out = outcomeOf(() => rejectUnknownFields(obj, asSet ? new Set(known) : known, 'doc'));
      assert.equal(out.ok, unknown.length === 0);
      if (out.ok) return;
      assert.equal(out.error.code, 'INVALID');
      assert.ok(out.error.message.startsWith(`doc has unknown field ${describe(unknown[0])} (allowed: `), out.error.message);
      assert.ok(out.error.message.endsWith(`(allowed: ${known.length === 0 ? 'none' : known.join(', ')})`), out.error.message);
      assert.ok(out.error.message.length <= MESSAGE_BOUND, out.error.message);
    }),
    { numRuns: 500 },
  );
});

test('for any value, describe is short and never dumps an object, an array or a long string', () => {
  fc.assert(
    fc.property(fc.oneof(fc.anything({ maxDepth: 2 }), notAPlainObject), (value) => {
      const text = describe(value);
      // 80 characters of a string, each escaped to at most 6 (\u0000), plus quotes and the ellipsis.
      assert.ok(text.length <= 6 * 80 + 3, text);
      if (typeof value === 'object' && value !== null) assert.match(text, /^(an array|an object|an instance of [A-Za-z_$][\w$]*)$/);
    }),
    { numRuns: 500 },
  );
  assert.equal(describe(new Map()), 'an instance of Map');
  assert.equal(describe(new Uint8Array(2)), 'an instance of Uint8Array');
  assert.equal(describe(Object.create(null)), 'an object');
  assert.equal(
    describe(() => 'source code'),
    'a function',
  );
});

test('for any value and range, integerInRange accepts exactly the safe integers inside it', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.integer({ min: -50, max: 50 }), fc.double(), fc.constantFrom<unknown>(2 ** 53, '3', null, undefined, true)),
      fc.integer({ min: -20, max: 20 }),
      fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
      (value, min, span) => {
        const max = span === undefined ? undefined : min + span;
        const inside = typeof value === 'number' && Number.isSafeInteger(value) && value >= min && (max === undefined || value <= max);
        const out = outcomeOf(() => integerInRange(value, 'rings', min, max));
        assert.equal(out.ok, inside);
        if (!out.ok) {
          assert.equal(out.error.code, 'INVALID');
          assert.match(
            out.error.message,
            max === undefined ? new RegExp(`^rings must be an integer >= ${min}, got `) : new RegExp(`^rings must be an integer from ${min} to ${max}, got `),
          );
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('for any value, boundedString and stringField accept exactly the non-empty strings within the bound', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 12 }), fc.jsonValue()), fc.integer({ min: 1, max: 10 }), fc.boolean(), (value, max, absentOk) => {
      const good = typeof value === 'string' && value.length > 0 && value.length <= max;
      const direct = outcomeOf(() => boundedString(value, 'reason', max));
      assert.equal(direct.ok, good);
      if (!direct.ok) assert.match(direct.error.message, new RegExp(`^reason must be a non-empty string of at most ${max} characters, got `));
      const field = outcomeOf(() => stringField({ reason: value }, 'reason', 'rollout.state', { max, optional: absentOk }));
      assert.equal(field.ok, good);
      if (!field.ok) assert.match(field.error.message, /^rollout\.state\.reason must be/);
      assert.deepEqual(outcomeOf(() => stringField({}, 'reason', 'rollout.state', { max, optional: absentOk })).ok, absentOk);
    }),
    { numRuns: 500 },
  );
});

test('for any value, oneOf, canonicalVersion and optional accept exactly what they name', () => {
  const STATUSES = ['running', 'paused'] as const;
  fc.assert(
    fc.property(
      fc.oneof(fc.constantFrom<unknown>('running', 'paused', 'Running', '', '1.2.3', 'v1.2.3', ' 1.2.3', '1.2', '1.2.3-rc.1'), fc.jsonValue()),
      (value) => {
        assert.equal(outcomeOf(() => oneOf(value, STATUSES, 'state.status')).ok, value === 'running' || value === 'paused');
        const isVersion = typeof value === 'string' && semver.valid(value) === value;
        assert.equal(outcomeOf(() => canonicalVersion(value, 'version')).ok, isVersion, JSON.stringify(value));
        assert.equal(
          optional(undefined, () => assert.fail('parse must not run for an absent value')),
          undefined,
        );
        assert.equal(outcomeOf(() => optional(value, (v) => oneOf(v, STATUSES, 'status'))).ok, value === 'running' || value === 'paused');
      },
    ),
    { numRuns: 300 },
  );
});

test('for any instant, utcTimestamp accepts its ISO form and refuses offsets, lower case and impossible dates', () => {
  fc.assert(
    fc.property(fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }), (date) => {
      const iso = date.toISOString();
      assert.equal(utcTimestamp(iso, 'createdAt'), iso);
      throwsCode(() => utcTimestamp(iso.replace('Z', '+00:00'), 'createdAt'), 'INVALID', /^createdAt must be an RFC 3339 UTC time/);
      throwsCode(() => utcTimestamp(iso.toLowerCase(), 'createdAt'), 'INVALID');
    }),
  );
  throwsCode(() => utcTimestamp('2023-02-29T00:00:00Z', 'createdAt'), 'INVALID', /does not exist/);
  throwsCode(() => utcTimestamp(0, 'createdAt'), 'INVALID', /got number 0/);
});

test('a canonical version is what semver writes back unchanged', () => {
  assert.equal(canonicalVersion('1.2.3-rc.1', 'version'), '1.2.3-rc.1');
  for (const bad of ['v1.2.3', ' 1.2.3', '1.2', '01.2.3', 1])
    throwsCode(() => canonicalVersion(bad, 'rollout.version'), 'INVALID', /^rollout\.version must be a canonical semver version/);
});
