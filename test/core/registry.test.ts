import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HotPatchError, Registries, defaultRegistries, registerApprover, type Approver } from '../../src/core/index.js';

const approver: Approver = { approve: async () => {} };

test('registries are instances: one does not see another', () => {
  const a = new Registries();
  const b = new Registries();
  a.approvers.register('quorum', approver);
  assert.equal(a.approvers.get('quorum'), approver);
  assert.equal(b.approvers.has('quorum'), false);
});

test('the free functions register on the default instance', () => {
  registerApprover('test-default-approver', approver);
  assert.equal(defaultRegistries.approvers.get('test-default-approver'), approver);
  defaultRegistries.approvers.unregister('test-default-approver');
});

test('an unknown name is NOT_FOUND, listing the known ones; a duplicate or bad name is INVALID', () => {
  const r = new Registries();
  r.approvers.register('one', approver);
  assert.throws(
    () => r.approvers.get('two'),
    (e: unknown) => e instanceof HotPatchError && e.code === 'NOT_FOUND' && e.message.includes('one'),
  );
  assert.throws(
    () => r.approvers.register('one', approver),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
  assert.throws(
    () => r.approvers.register('../x', approver),
    (e: unknown) => e instanceof HotPatchError && e.code === 'INVALID',
  );
  r.approvers.register('one', approver, { replace: true });
});
