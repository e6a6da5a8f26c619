import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExperimentRecord } from '../src/logic/protocol';
import { tableRows, type TableRow } from '../src/logic/table';
import { applyPatch, isEmptyPatch, PostedRows } from '../src/logic/viewPatch';

const base: ExperimentRecord[] = [
  { id: 0, status: 'kept', metric: 1.0, source: 'baseline', commit: 'a' },
  { id: 1, status: 'discarded', metric: 1.2, commit: 'b' },
  { id: 2, status: 'running' },
];

test('the first patch carries every row and resets; the same list again sends nothing', () => {
  const posted = new PostedRows();
  const first = posted.patch(tableRows(base, 'minimize'));
  assert.equal(first.reset, true);
  assert.deepEqual(first.upsert.map((r) => r.id), [0, 1, 2]);
  const again = posted.patch(tableRows(base, 'minimize'));
  assert.ok(isEmptyPatch(again), JSON.stringify(again));
});

test('one experiment finishing sends that row and the rows whose look it changed', () => {
  const posted = new PostedRows();
  posted.patch(tableRows(base, 'minimize'));
  const next = [...base.slice(0, 2), { id: 2, status: 'kept', metric: 0.8, commit: 'c' }];
  const patch = posted.patch(tableRows(next, 'minimize'));
  // exp 2 is the new best: its row changes, and exp 0 loses the best star
  assert.deepEqual(patch.upsert.map((r) => r.id).sort(), [0, 2]);
  assert.equal(patch.reset, false);
  assert.deepEqual(patch.remove, []);
});

test('a new experiment is one row, not the table', () => {
  const posted = new PostedRows();
  const many: ExperimentRecord[] = Array.from({ length: 500 }, (_, i) => ({ id: i, status: 'discarded', metric: 2 + i, commit: `c${i}` }));
  many[0] = { id: 0, status: 'kept', metric: 1, source: 'baseline', commit: 'c0' };
  posted.patch(tableRows(many, 'minimize'));
  const patch = posted.patch(tableRows([...many, { id: 500, status: 'proposed' }], 'minimize'));
  assert.deepEqual(patch.upsert.map((r) => r.id), [500]);
});

test('rows gone are removed; clear() makes the next patch a reset', () => {
  const posted = new PostedRows();
  posted.patch(tableRows(base, 'minimize'));
  const patch = posted.patch(tableRows(base.slice(0, 1), 'minimize'));
  assert.deepEqual(patch.remove.sort(), [1, 2]);
  posted.clear();
  assert.equal(posted.patch(tableRows(base.slice(0, 1), 'minimize')).reset, true);
});

test("the webview's side applies patches by id", () => {
  const rows = new Map<number, TableRow>();
  const posted = new PostedRows();
  let result = applyPatch(rows, posted.patch(tableRows(base, 'minimize')));
  assert.deepEqual(result.added, [0, 1, 2]);
  result = applyPatch(rows, posted.patch(tableRows([...base.slice(0, 2), { id: 2, status: 'discarded', metric: 1.5, commit: 'c' }], 'minimize')));
  assert.deepEqual(result, { added: [], updated: [2], removed: [] });
  assert.equal(rows.get(2)!.metric, '1.5');
  result = applyPatch(rows, { upsert: [rows.get(0)!], remove: [], reset: true });
  assert.deepEqual(result.removed.sort(), [1, 2], 'a reset drops rows not in it');
  assert.deepEqual([...rows.keys()], [0]);
});

test('row actions follow the state', () => {
  const rows = tableRows(
    [
      { id: 0, status: 'kept', metric: 1, source: 'baseline', commit: 'a' },
      { id: 1, status: 'kept', metric: 0.9, commit: 'b' },
      { id: 2, status: 'awaiting_review', diff: 'x' },
      { id: 3, status: 'running' },
      { id: 4, status: 'crashed', commit: 'd' },
    ],
    'minimize',
  );
  const actions = Object.fromEntries(rows.map((r) => [r.id, r.actions]));
  assert.deepEqual(actions[0], ['apply', 'diff', 'log'], 'the baseline cannot be reverted');
  assert.deepEqual(actions[1], ['apply', 'revert', 'diff', 'log']);
  assert.deepEqual(actions[2], ['accept', 'reject', 'diff']);
  assert.deepEqual(actions[3], ['stop', 'log']);
  assert.deepEqual(actions[4], ['diff', 'log'], 'a crash has nothing to apply');
  assert.equal(rows[1].bestAfter, 0.9);
  assert.equal(rows[1].value, 0.9);
});
