import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExperimentStore } from '../src/logic/store';

test('a full list, then deltas: only what changed is reported', () => {
  const store = new ExperimentStore();
  const first = store.replaceAll([
    { id: 0, status: 'kept', metric: 1 },
    { id: 1, status: 'running' },
  ]);
  assert.deepEqual([...first].sort(), [0, 1]);
  const v = store.version;
  assert.deepEqual([...store.applyRows({ id: 1, status: 'running' })], [], 'the same row again is no change');
  assert.equal(store.version, v);
  assert.deepEqual([...store.applyRows({ id: 1, status: 'kept', metric: 0.9 })], [1]);
  assert.deepEqual([...store.applyRows([{ id: 2, status: 'proposed' }])], [2], 'a row not seen before is added');
  assert.deepEqual(store.list().map((e) => [e.id, e.status]), [[0, 'kept'], [1, 'kept'], [2, 'proposed']]);
  assert.equal(store.lastId(), 2);
  assert.ok(store.version > v);
});

test('a light row keeps the diff a full row brought, until the status moves on', () => {
  const store = new ExperimentStore();
  store.applyRows({ id: 3, status: 'awaiting_review', diff: '--- a/t.py\n+++ b/t.py\n', description: 'LR' });
  assert.deepEqual([...store.applyRows({ id: 3, status: 'awaiting_review', description: 'LR' })], []);
  assert.match(store.get(3)!.diff!, /t\.py/);
  store.applyRows({ id: 3, status: 'running', description: 'LR' });
  assert.equal(store.get(3)!.diff, undefined, 'a stale diff is not kept past a status change');
});

test("a light row keeps the cases a full row brought (what it fixed and broke), until the status moves on", () => {
  const store = new ExperimentStore();
  const cases = { against: 0, fixed: 3, broken: 0, common: 40, words: 'fixed 3 (a, b, c), broke 0 of 40 cases' };
  store.applyRows({ id: 1, status: 'kept', metric: 0.5, cases });
  assert.deepEqual([...store.applyRows({ id: 1, status: 'kept', metric: 0.5 })], []);
  assert.deepEqual(store.get(1)!.cases, cases);
  assert.deepEqual([...store.applyRows({ id: 1, status: 'kept', metric: 0.5, holdout: 0.6 })], [1]);
  assert.deepEqual(store.get(1)!.cases, cases, 'a row with its holdout, measured after, keeps them');
  store.applyRows({ id: 1, status: 'reverted', metric: 0.5 });
  assert.equal(store.get(1)!.cases, undefined);
});

test('a full list after a restart drops rows the server no longer has', () => {
  const store = new ExperimentStore();
  store.replaceAll([{ id: 0, status: 'kept' }, { id: 1, status: 'discarded' }]);
  const changed = store.replaceAll({ experiments: [{ id: 0, status: 'kept' }] });
  assert.deepEqual([...changed], [1]);
  assert.deepEqual(store.list().map((e) => e.id), [0]);
});

test('junk in a notification is ignored', () => {
  const store = new ExperimentStore();
  assert.equal(store.applyRows(null).size, 0);
  assert.equal(store.applyRows([{ status: 'kept' }, 'x', 7]).size, 0);
  assert.equal(store.size, 0);
});
