import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changedKeys, contextKeys, type ContextInput } from '../src/logic/contextKeys';
import { contextValue } from '../src/logic/table';

const input = (over: Partial<ContextInput>): ContextInput => ({ status: undefined, offline: undefined, activeFile: undefined, projects: 1, restricted: false, ...over });

test('offline: nothing runs, nothing is pending', () => {
  const keys = contextKeys(input({ offline: 'the language server is starting' }));
  assert.equal(keys['ratchet.loopState'], 'offline');
  assert.equal(keys['ratchet.serverRunning'], false);
  assert.equal(keys['ratchet.hasPendingProposal'], false);
  assert.equal(keys['ratchet.loopRunning'], false);
});

test('a proposal waits: pending everywhere, in the editor only on the editable file', () => {
  const status = { state: 'running', awaitingReview: [4], running: [], editable: 'train.py', bestId: 0 };
  const elsewhere = contextKeys(input({ status, activeFile: 'prepare.py' }));
  assert.equal(elsewhere['ratchet.loopState'], 'review');
  assert.equal(elsewhere['ratchet.loopRunning'], true);
  assert.equal(elsewhere['ratchet.hasPendingProposal'], true);
  assert.equal(elsewhere['ratchet.proposalInEditor'], false);
  assert.equal(contextKeys(input({ status, activeFile: 'train.py' }))['ratchet.proposalInEditor'], true);
  assert.equal(elsewhere['ratchet.hasBest'], true);
});

test('running, paused, idle; a loop in its own process counts as running', () => {
  const running = contextKeys(input({ status: { state: 'running', running: [{ id: 3 }] } }));
  assert.equal(running['ratchet.hasRunningExperiment'], true);
  assert.equal(running['ratchet.loopState'], 'running');
  assert.equal(contextKeys(input({ status: { state: 'paused' } }))['ratchet.loopState'], 'paused');
  const idle = contextKeys(input({ status: { state: 'idle' } }));
  assert.equal(idle['ratchet.loopRunning'], false);
  assert.equal(contextKeys(input({ status: { state: 'idle', loop: { pid: 7, attached: true } } }))['ratchet.loopRunning'], true);
  assert.equal(contextKeys(input({ status: { state: 'idle', loop: { pid: 7, attached: true } } }))['ratchet.loopAttached'], true);
});

test('projects and trust', () => {
  assert.equal(contextKeys(input({ projects: 2 }))['ratchet.multipleProjects'], true);
  assert.equal(contextKeys(input({ projects: 0 }))['ratchet.hasProject'], false);
  assert.equal(contextKeys(input({ restricted: true }))['ratchet.restricted'], true);
});

test('only changed keys are set again', () => {
  const a = contextKeys(input({ status: { state: 'running', running: [{ id: 1 }] } }));
  const b = contextKeys(input({ status: { state: 'running', running: [{ id: 2 }] } }));
  assert.deepEqual(changedKeys(a, b), {});
  const c = contextKeys(input({ status: { state: 'paused' } }));
  assert.deepEqual(changedKeys(a, c), { 'ratchet.loopState': 'paused', 'ratchet.hasRunningExperiment': false });
  assert.equal(Object.keys(changedKeys(undefined, a)).length, Object.keys(a).length);
});

test("tree items' context values match the menus' when clauses", () => {
  assert.equal(contextValue({ id: 2, status: 'awaiting_review' }), 'experiment awaiting hasDiff');
  assert.equal(contextValue({ id: 3, status: 'running' }), 'experiment running hasLog');
  assert.match(contextValue({ id: 1, status: 'kept', commit: 'b' }), /\bapplicable\b.*\brevertible\b/);
  assert.doesNotMatch(contextValue({ id: 0, status: 'kept', commit: 'a', source: 'baseline' }), /\brevertible\b/);
});
