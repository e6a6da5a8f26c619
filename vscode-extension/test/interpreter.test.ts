import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { installCommand, pickInterpreter, privateEnvPython, PROBE_SCRIPT, readProbe, serverArgs, tooOldMessage, unsupportedPlatform } from '../src/logic/interpreter';

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

test('a Python older than 3.11 is named as such, not as missing packages', () => {
  const probe = readProbe(4, 'too-old:3.10.12\n', '');
  assert.deepEqual(probe, { ok: false, reason: 'too-old', detail: 'Python 3.10 is too old: Ratchet needs 3.11+' });
  assert.equal(tooOldMessage('3.9.2'), 'Python 3.9 is too old: Ratchet needs 3.11+');
});

test('an externally managed system Python is told apart (pip would refuse)', () => {
  const probe = readProbe(3, "managed:missing:No module named 'pygls'", '');
  assert.deepEqual(probe, { ok: false, reason: 'missing-ratchet', detail: "No module named 'pygls'", externallyManaged: true });
  assert.equal((readProbe(3, "missing:No module named 'pygls'", '') as { externallyManaged: boolean }).externallyManaged, false);
});

test('the private environment comes after the setting and before the Python extension', () => {
  const privateEnv = privateEnvPython('/g/storage/');
  assert.equal(privateEnv, '/g/storage/venv/bin/python');
  assert.deepEqual(pickInterpreter({ setting: '/opt/py', privateEnv, pythonExtension: '/venv/bin/python' }).source, 'setting');
  assert.deepEqual(pickInterpreter({ privateEnv, pythonExtension: '/venv/bin/python' }), { path: privateEnv, source: 'private environment' });
});

test('Windows gets one message pointing to WSL or a remote', () => {
  assert.match(unsupportedPlatform('win32') ?? '', /WSL.*Remote - SSH/);
  assert.equal(unsupportedPlatform('linux'), undefined);
  assert.equal(unsupportedPlatform('darwin'), undefined);
});

test("the probe script runs in a real Python and its output reads back", () => {
  const result = spawnSync('python3', ['-c', PROBE_SCRIPT, '/nonexistent-bundle'], { encoding: 'utf8' });
  if (result.error) {
    return; // no python3 on this machine: the readProbe cases above still hold
  }
  const probe = readProbe(result.status, result.stdout, result.stderr);
  assert.ok(probe.ok || probe.reason === 'missing-ratchet' || probe.reason === 'too-old', JSON.stringify({ probe, out: result.stdout, err: result.stderr }));
});
