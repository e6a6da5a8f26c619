import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LoopStatus } from '../src/logic/protocol';
import { lookOf, newBest, statusView } from '../src/logic/status';

const base: LoopStatus = {
  state: 'running',
  tag: 'nov22',
  metric: 'val_bpb',
  goal: 'minimize',
  running: [{ id: 14, description: 'LR 0.5 -> 0.45', slot: 'cpu', elapsed: 133, budget: 300, lastLine: 'step 200' }],
  awaitingReview: [],
  best: 0.9932,
  bestId: 12,
  baseline: 0.9979,
  gainPercent: 0.471,
  kept: 3,
  total: 14,
  crashed: 1,
  costUsd: 0.12,
};

test('running: the issue example, to the character', () => {
  const view = statusView(base);
  assert.equal(view.text, '$(sync~spin) exp 14 · 2:13/5:00 · val_bpb 0.9932 ↓0.47% · 3/14 kept');
  assert.equal(view.look, 'running');
  assert.match(view.tooltip, /exp 14/);
  assert.match(view.tooltip, /step 200/);
  assert.match(view.tooltip, /baseline: 0.9979/);
  assert.match(view.tooltip, /\$0.12/);
});

test('the clock keeps moving between notifications', () => {
  assert.match(statusView(base, { sinceUpdate: 2.5 }).text, /2:15\/5:00/);
});

test('several running experiments', () => {
  const two = { ...base, running: [...base.running!, { id: 15, elapsed: 3, budget: 300 }] };
  assert.match(statusView(two).text, /^\$\(sync~spin\) exp 14 \+1 · /);
});

test('distinct looks for idle, paused, review, error, offline', () => {
  const idle = statusView({ ...base, state: 'idle', running: [] });
  assert.equal(idle.look, 'idle');
  assert.equal(idle.text, '$(beaker) Ratchet · val_bpb 0.9932 ↓0.47% · 3/14 kept');
  const paused = statusView({ ...base, state: 'paused', running: [] });
  assert.equal(paused.look, 'paused');
  assert.match(paused.text, /^\$\(debug-pause\) paused · /);
  const review = statusView({ ...base, state: 'awaiting_review', running: [], awaitingReview: [15] });
  assert.equal(review.look, 'review');
  assert.match(review.text, /^\$\(eye\) exp 15 awaiting review · /);
  const error = statusView({ ...base, state: 'error', message: 'prepare.py changed', running: [] });
  assert.equal(error.look, 'error');
  assert.match(error.tooltip, /prepare\.py changed/);
  const offline = statusView(base, { offline: 'Ratchet is not installed' });
  assert.equal(offline.look, 'offline');
  assert.match(offline.tooltip, /not installed/);
  const kinds = new Set([idle, paused, review, error, offline, statusView(base)].map((v) => v.text.split(' ')[0]));
  assert.equal(kinds.size, 6);
});

test('a running loop with a proposal waiting and nothing running is in review', () => {
  assert.equal(lookOf({ state: 'running', running: [], awaitingReview: [3] }), 'review');
  assert.equal(lookOf({ state: 'running', running: [{ id: 2 }], awaitingReview: [3] }), 'running');
});

test('before anything is measured', () => {
  const view = statusView({ state: 'running', metric: 'score', running: [], kept: 0, total: 0, best: null });
  assert.equal(view.text, '$(sync~spin) proposing · 0/0 kept');
});

test('no gain while the best is the baseline', () => {
  assert.equal(statusView({ ...base, state: 'idle', running: [], best: 0.2, bestId: 0, baseline: 0.2, gainPercent: 0, kept: 0, total: 1 }).text, '$(beaker) Ratchet · val_bpb 0.2 · 0/1 kept');
});

test('maximize shows an up arrow', () => {
  const view = statusView({ ...base, goal: 'maximize', metric: 'acc', best: 0.91, gainPercent: 3.2 });
  assert.match(view.text, /acc 0.91 ↑3.20%/);
});

test('new best: a later, better kept experiment; not the baseline, not a revert', () => {
  assert.equal(newBest(undefined, base), false);
  assert.equal(newBest({ ...base, bestId: null, best: null }, { ...base, bestId: 0, best: 1 }), false);
  assert.equal(newBest(base, base), false);
  assert.equal(newBest(base, { ...base, bestId: 15, best: 0.99 }), true);
  assert.equal(newBest(base, { ...base, bestId: 16, best: 0.995 }), false);
  assert.equal(newBest({ ...base, goal: 'maximize', best: 0.5 }, { ...base, goal: 'maximize', bestId: 15, best: 0.6 }), true);
});
