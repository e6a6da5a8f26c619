import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installCommand, pickInterpreter, readProbe, serverArgs } from '../src/logic/interpreter';

test('the setting first, then the Python extension, then python3', () => {
  assert.deepEqual(pickInterpreter({ setting: '/opt/py/bin/python', pythonExtension: '/venv/bin/python' }), { path: '/opt/py/bin/python', source: 'setting' });
  assert.deepEqual(pickInterpreter({ setting: '  ', pythonExtension: '/venv/bin/python' }), { path: '/venv/bin/python', source: 'python extension' });
  assert.deepEqual(pickInterpreter({}), { path: 'python3', source: 'default' });
  assert.equal(pickInterpreter({ setting: '${workspaceFolder}/.venv/bin/python', workspaceFolder: '/w' }).path, '/w/.venv/bin/python');
  assert.equal(pickInterpreter({ setting: '~/py/bin/python', home: '/home/u' }).path, '/home/u/py/bin/python');
});

test('the exact install command, quoted for a shell', () => {
  const requirements = '/ext/bundled/requirements.txt';
  assert.equal(installCommand('{python} -m pip install ratchet', '/usr/bin/python3', requirements), '/usr/bin/python3 -m pip install ratchet');
  assert.equal(installCommand('', '/my envs/python', requirements), "'/my envs/python' -m pip install -r /ext/bundled/requirements.txt");
  assert.equal(installCommand('{python} -m pip install -r {requirements}', 'python3', '/a b/r.txt'), "python3 -m pip install -r '/a b/r.txt'");
});

test('the server runs as a module, in the project folder', () => {
  const args = serverArgs('/p', '/ext/bundled');
  assert.deepEqual(args.slice(2), ['/ext/bundled', '-C', '/p', 'serve']);
  assert.equal(args[0], '-c');
  assert.match(args[1], /sys\.path\.append\(sys\.argv\.pop\(1\)\)/);  // installed Ratchet wins
});

test('probe results', () => {
  assert.deepEqual(readProbe(0, 'ratchet 0.1.0\n', ''), { ok: true, version: '0.1.0' });
  assert.equal((readProbe(3, "missing:No module named 'ratchet'", '') as { reason: string }).reason, 'missing-ratchet');
  assert.equal((readProbe(null, '', '', 'python9 was not found') as { reason: string }).reason, 'missing-interpreter');
});
