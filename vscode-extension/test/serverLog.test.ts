import assert from 'node:assert/strict';
import { test } from 'node:test';
import { levelOf, LineLimiter, pythonLevel } from '../src/logic/serverLog';

test("the server's lines keep their logging level; a traceback's frames stay errors", () => {
  assert.equal(levelOf('ratchet-lsp WARNING ratchet.lsp: slow', 'info'), 'warn');
  assert.equal(levelOf('ratchet-lsp DEBUG pygls: x', 'info'), 'debug');
  assert.equal(levelOf('ratchet-lsp ERROR ratchet.lsp.session: boom', 'info'), 'error');
  assert.equal(levelOf('  File "x.py", line 3, in f', 'error'), 'error');
  assert.equal(levelOf('Traceback (most recent call last):', 'info'), 'error');
  assert.equal(pythonLevel('warn'), 'WARNING');
  assert.equal(pythonLevel('info'), 'WARNING', "pygls's INFO is every message: trace detail");
  assert.equal(pythonLevel('debug'), 'INFO');
  assert.equal(pythonLevel('trace'), 'DEBUG');
});

test('a flood is cut once per window, then lines pass again', () => {
  const limiter = new LineLimiter(3, 1000);
  const verdicts = [0, 1, 2, 3, 4, 5].map((t) => limiter.take(t));
  assert.deepEqual(verdicts, ['pass', 'pass', 'pass', 'cut', 'drop', 'drop']);
  assert.equal(limiter.take(1000), 'pass');
});
