import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contextKeys } from '../src/logic/contextKeys';
import type { ExperimentRecord } from '../src/logic/protocol';
import { finalizeArgs, keepItems, keepsOffered, madeFrom, reportPage } from '../src/logic/review';

const row = (id: number, status: string, over: Partial<ExperimentRecord> = {}): ExperimentRecord => ({ id, status, metric: 1 - id / 10, description: `change ${id}`, ...over });

// 0 the baseline; 1, 3, 5 keeps; 2 discarded, 4 crashed, 6 reverted, 7 waits for review
const ROWS = [row(5, 'kept'), row(0, 'kept', { source: 'baseline' }), row(1, 'kept'), row(2, 'discarded'), row(3, 'kept', { reason: 'beats the best by 3 σ' }), row(4, 'crashed', { metric: null }), row(6, 'reverted'), row(7, 'awaiting_review')];

test('the keeps are offered in the order they are carried, never the baseline', () => {
  assert.deepEqual(keepsOffered(ROWS).map((r) => r.id), [1, 3, 5]);
  // a baseline without `source` (an older server) is the first kept experiment
  assert.deepEqual(keepsOffered([row(0, 'kept'), row(2, 'kept')]).map((r) => r.id), [2]);
  // a later re-measured baseline is no keep either; a kept row without a metric is not one
  assert.deepEqual(keepsOffered([row(0, 'kept'), row(1, 'kept', { source: 'baseline' }), row(2, 'kept'), row(3, 'kept', { metric: null })]).map((r) => r.id), [2]);
  assert.deepEqual(keepsOffered([row(0, 'kept')]), []);
  assert.deepEqual(keepsOffered([]), []);
});

test('every keep starts picked, with its metric, description and reason', () => {
  const items = keepItems(ROWS, 'val_bpb');
  assert.deepEqual(items.map((i) => [i.label, i.picked]), [['exp 1', true], ['exp 3', true], ['exp 5', true]]);
  assert.equal(items[1].description, 'val_bpb 0.7 · change 3');
  assert.equal(items[1].detail, 'beats the best by 3 σ');
  assert.equal(items[0].detail, undefined);
});

test('the keeps not picked are excluded; none picked sends nothing', () => {
  assert.deepEqual(finalizeArgs([1, 3, 5], [1, 3, 5], false), { squash: false, exclude: [] });
  assert.deepEqual(finalizeArgs([1, 3, 5], [5, 1], true), { squash: true, exclude: [3] });
  assert.deepEqual(finalizeArgs([1, 3, 5], [3], false), { squash: false, exclude: [1, 5] });
  assert.equal(finalizeArgs([1, 3, 5], [], false), undefined);
  assert.equal(finalizeArgs([1, 3], [9], false), undefined); // a stale pick carries nothing
});

test("the server's answer: the branch to copy and its lines as one message", () => {
  const made = madeFrom({ branch: 'ratchet/t-review', message: 'branch ratchet/t-review: keeps 1, 3 on top of main (abc); main did not move\nto measure it again: `git switch ratchet/t-review`\n' });
  assert.equal(made.branch, 'ratchet/t-review');
  assert.equal(made.message, 'branch ratchet/t-review: keeps 1, 3 on top of main (abc); main did not move. to measure it again: `git switch ratchet/t-review`');
  assert.deepEqual(madeFrom({ branch: null, message: 'wrote 2 patches to p' }), { branch: undefined, message: 'wrote 2 patches to p' });
  assert.deepEqual(madeFrom({ branch: 'b' }), { branch: 'b', message: 'branch b' });
  assert.deepEqual(madeFrom(undefined), { branch: undefined, message: 'done' });
});

test('the report is shown under a policy that runs no script and fetches nothing', () => {
  const page = reportPage('<!doctype html><html lang="en"><HEAD><meta charset="utf-8"><style>b{}</style></head><body><svg></svg></body></html>');
  const policy = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(page);
  assert.ok(policy, page);
  assert.equal(policy[1], "default-src 'none'; style-src 'unsafe-inline'; img-src data:;");
  assert.ok(page.indexOf(policy[0]) < page.indexOf('<style>'), 'the policy comes before the styles');
  assert.match(reportPage('<p>bare</p>'), /^<!doctype html><html><head><meta http-equiv="Content-Security-Policy"[^>]*><\/head><body><p>bare<\/p>/);
});

test('the two commands are enabled once a loop has a record', () => {
  const keys = (status: object | undefined, offline?: string) => contextKeys({ status, offline, activeFile: undefined, projects: 1, restricted: false })['ratchet.hasLoop'];
  assert.equal(keys({ state: 'idle', total: 0 }), false);
  assert.equal(keys({ state: 'idle' }), false);
  assert.equal(keys({ state: 'idle', total: 3 }), true);
  assert.equal(keys({ state: 'idle', total: 3 }, 'the language server is starting'), false);
});
