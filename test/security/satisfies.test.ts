import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import semver from 'semver';
import { SecurityGate } from '../../src/security/index.js';

test('a component without a requirement is satisfied by any valid version', () => {
  const gate = new SecurityGate({ requirements: { 'xps.a': '^1.0.0' } });
  assert.equal(gate.satisfies('xps.b', '0.0.1'), true);
  assert.equal(gate.satisfies('xps.b', '99.0.0-rc.1'), true);
});

test('a string that is not a semver version satisfies nothing', () => {
  const gate = new SecurityGate({ requirements: { 'xps.a': '*' } });
  assert.equal(gate.satisfies('xps.a', '1.0'), false);
  assert.equal(gate.satisfies('xps.a', 'latest'), false);
  assert.equal(gate.satisfies('xps.b', ''), false);
});

test('satisfies follows the current requirement and refuses prereleases of a plain range', () => {
  const gate = new SecurityGate();
  gate.setRequirement('xps.a', '~1.2.0');
  assert.equal(gate.satisfies('xps.a', '1.2.9'), true);
  assert.equal(gate.satisfies('xps.a', '1.3.0'), false);
  assert.equal(gate.satisfies('xps.a', '1.2.10-beta'), false);
});

const part = fc.nat({ max: 4 });
const prerelease = fc.option(fc.constantFrom('alpha', 'beta.1', 'rc.2', '0'), { nil: undefined });
const version = fc.tuple(part, part, part, prerelease).map(([a, b, c, pre]) => `${a}.${b}.${c}${pre === undefined ? '' : `-${pre}`}`);
const operator = fc.constantFrom('', '=', '>', '>=', '<', '<=', '~', '^');
const comparator = fc.tuple(operator, version).map(([op, v]) => `${op}${v}`);
const xRange = fc.tuple(part, fc.constantFrom('x', '*')).map(([a, x]) => `${a}.${x}`);
const simpleRange = fc.oneof(
  comparator,
  xRange,
  fc.tuple(version, version).map(([a, b]) => `${a} - ${b}`),
  fc.tuple(comparator, comparator).map(([a, b]) => `${a} ${b}`),
  fc.tuple(comparator, comparator).map(([a, b]) => `${a} || ${b}`),
);

test('for random versions and simple ranges, satisfies agrees with semver.satisfies', () => {
  fc.assert(
    fc.property(version, simpleRange, (v, range) => {
      const gate = new SecurityGate();
      gate.setRequirement('xps.component', range);
      assert.equal(gate.satisfies('xps.component', v), semver.satisfies(v, range, { includePrerelease: false }));
    }),
    { numRuns: 500 },
  );
});
