import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keyProblem, keySource, keyView, providerLabel, redact, secretName, variableOf, variableOfSecret, withApiKey } from '../src/logic/apiKey';

const anthropic = { kind: 'anthropic', apiKeyEnv: 'ANTHROPIC_API_KEY', usesKey: true, keyInEnvironment: false };

test('one secret per variable, so per provider', () => {
  assert.equal(secretName('ANTHROPIC_API_KEY'), 'ratchet.apiKey.ANTHROPIC_API_KEY');
  assert.equal(variableOfSecret('ratchet.apiKey.OPENAI_API_KEY'), 'OPENAI_API_KEY');
  assert.equal(variableOfSecret('other.thing'), undefined);
  assert.equal(providerLabel('ANTHROPIC_API_KEY'), 'Anthropic');
  assert.equal(providerLabel('MY_KEY'), 'MY_KEY');
  assert.equal(variableOf(undefined), 'ANTHROPIC_API_KEY');
  assert.equal(variableOf({ apiKeyEnv: 'MY_KEY' }), 'MY_KEY');
});

test("the editor's key wins over the environment's", () => {
  assert.equal(keySource(true, true), 'editor');
  assert.equal(keySource(false, true), 'environment');
  assert.equal(keySource(false, false), 'none');
});

test('the status says where the key comes from, and hides where none is read', () => {
  const editor = keyView(anthropic, 'editor', true);
  assert.equal(editor.visible, true);
  assert.equal(editor.text, '$(key) Anthropic key: editor');
  assert.match(editor.tooltip, /secret storage/);
  assert.match(editor.tooltip, /Set API Key/);
  assert.equal(keyView(anthropic, 'environment', true).text, '$(key) Anthropic key: environment');
  const none = keyView(anthropic, 'none', true);
  assert.equal(none.text, '$(warning) no Anthropic key');
  assert.equal(none.missing, true);
  assert.match(none.tooltip, /cannot propose/);
  const cli = keyView({ ...anthropic, kind: 'claude-code' }, 'none', true);
  assert.equal(cli.missing, false);
  assert.match(cli.tooltip, /its own login/);
  const offline = keyView({ ...anthropic, kind: null }, 'none', true);
  assert.equal(offline.missing, false);
  assert.match(offline.tooltip, /offline agent/);
  // Restricted Mode, an offline agent, no project: nothing shown (and no key read).
  assert.equal(keyView(anthropic, 'editor', false).visible, false);
  assert.equal(keyView({ ...anthropic, kind: 'mutate', usesKey: false }, 'none', true).visible, false);
  assert.equal(keyView(undefined, 'none', true).visible, false);
});

test('a typed key is one printable word', () => {
  assert.equal(keyProblem('sk-ant-abc123'), undefined);
  assert.equal(keyProblem('  sk-ant-abc123 '), undefined);
  assert.ok(keyProblem(''));
  assert.ok(keyProblem('two words'));
  assert.ok(keyProblem('sk-ünïcode'));
});

test('the key joins the options of a command that may start the loop', () => {
  assert.deepEqual(withApiKey(undefined, 'k'), { apiKey: 'k' });
  assert.deepEqual(withApiKey({ maxExperiments: 3 }, 'k'), { maxExperiments: 3, apiKey: 'k' });
  assert.deepEqual(withApiKey(7, 'k'), { id: 7, apiKey: 'k' });
  assert.equal(withApiKey(7, undefined), 7);
  assert.equal(withApiKey(undefined, undefined), undefined);
});

test('a kept key is redacted from what goes to an output channel', () => {
  const trace = `Params: {"command":"ratchet.start","arguments":[{"apiKey":"sk-ant-SECRET-123456"}]}`;
  assert.equal(redact(trace, ['sk-ant-SECRET-123456']), `Params: {"command":"ratchet.start","arguments":[{"apiKey":"[REDACTED]"}]}`);
  assert.equal(redact('short', ['abc']), 'short');
});
