// Which Python runs `ratchet serve`, and the exact command that installs what it needs.

export interface InterpreterChoice {
  path: string;
  source: 'setting' | 'private environment' | 'python extension' | 'default';
}

/** The oldest Python Ratchet runs on. */
export const MIN_PYTHON = [3, 11] as const;

/** Where the private environment's interpreter lives, under the extension's global storage. */
export function privateEnvPython(storage: string): string {
  return `${storage.replace(/\/+$/, '')}/venv/bin/python`;
}

/** Ratchet runs on Linux and macOS; anything else gets one message pointing elsewhere. */
export function unsupportedPlatform(platform: string): string | undefined {
  if (platform === 'win32') {
    return 'Ratchet runs on Linux and macOS, not on Windows itself: open this folder in WSL (the WSL extension) or on a Linux machine over Remote - SSH, and the extension runs there.';
  }
  return undefined;
}

export function expandVariables(value: string, workspaceFolder: string | undefined, home: string | undefined): string {
  let out = value;
  if (workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  if (home !== undefined) {
    out = out.replace(/\$\{userHome\}/g, home).replace(/^~(?=\/|$)/, home);
  }
  return out;
}

/** `ratchet.python` if set, else the private environment (when created), else the Python
 * extension's interpreter, else python3. */
export function pickInterpreter(options: {
  setting?: string;
  privateEnv?: string;
  pythonExtension?: string;
  workspaceFolder?: string;
  home?: string;
}): InterpreterChoice {
  const setting = (options.setting ?? '').trim();
  if (setting) {
    return { path: expandVariables(setting, options.workspaceFolder, options.home), source: 'setting' };
  }
  if (options.privateEnv) {
    return { path: options.privateEnv, source: 'private environment' };
  }
  const fromExtension = (options.pythonExtension ?? '').trim();
  if (fromExtension) {
    return { path: fromExtension, source: 'python extension' };
  }
  return { path: 'python3', source: 'default' };
}

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export const DEFAULT_INSTALL = '{python} -m pip install -r {requirements}';

/** The install command, with the interpreter's path and the bundled requirements file quoted
 * for a POSIX shell. */
export function installCommand(template: string, python: string, requirements: string): string {
  const base = template && template.includes('{python}') ? template : DEFAULT_INSTALL;
  return base.replace(/\{python\}/g, shellQuote(python)).replace(/\{requirements\}/g, shellQuote(requirements));
}

/** Runs Ratchet from the interpreter: its own installed copy if it has one, else the copy
 * bundled in the extension (appended to sys.path, so an installed Ratchet always wins). */
export const BOOTSTRAP =
  'import sys\n' +
  'sys.path.append(sys.argv.pop(1))\n' +
  'from ratchet.cli import main\n' +
  'sys.exit(main(sys.argv[1:]))\n';

/** The arguments that start the server with this interpreter, in the project's folder. */
export function serverArgs(projectFolder: string | undefined, bundled: string): string[] {
  const args = ['-c', BOOTSTRAP, bundled];
  if (projectFolder) {
    args.push('-C', projectFolder);
  }
  args.push('serve');
  return args;
}

/** What a probe of the interpreter printed, in words for a message. */
export type Probe =
  | { ok: true; version: string }
  | { ok: false; reason: 'missing-interpreter' | 'too-old'; detail: string }
  /** `externallyManaged`: a system Python (PEP 668) that refuses `pip install`. */
  | { ok: false; reason: 'missing-ratchet'; detail: string; externallyManaged: boolean };

/** The probe's script (argv[1]: the bundled copy's folder). It prints `too-old:3.10.12` (exit
 * 4) before anything a Python that old cannot run, `missing:<ImportError>` (exit 3, prefixed
 * `managed:` for an externally managed system Python), or `ratchet <version>`. Written for any
 * Python 3 (no f-strings). */
export const PROBE_SCRIPT =
  'import os, sys, sysconfig\n' +
  'if sys.version_info < (3, 11):\n' +
  '    print("too-old:%d.%d.%d" % tuple(sys.version_info[:3])); sys.exit(4)\n' +
  'managed = sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))\n' +
  'sys.path.append(sys.argv[1])\n' +
  'try:\n' +
  '    import ratchet, ratchet.cli\n' +
  'except ImportError as e:\n' +
  '    print(("managed:" if managed else "") + "missing:" + str(e)); sys.exit(3)\n' +
  'print("ratchet " + getattr(ratchet, "__version__", "?"))\n';

/** `3.10.12` → `Python 3.10 is too old: Ratchet needs 3.11+`. */
export function tooOldMessage(version: string): string {
  const [major, minor] = version.split('.');
  return `Python ${major}.${minor ?? '?'} is too old: Ratchet needs ${MIN_PYTHON.join('.')}+`;
}

export function readProbe(exitCode: number | null, stdout: string, stderr: string, spawnError?: string): Probe {
  if (spawnError) {
    return { ok: false, reason: 'missing-interpreter', detail: spawnError };
  }
  const out = stdout.trim();
  if (exitCode === 0 && out.startsWith('ratchet ')) {
    return { ok: true, version: out.slice('ratchet '.length) };
  }
  if (exitCode === 4 || out.startsWith('too-old:')) {
    return { ok: false, reason: 'too-old', detail: tooOldMessage(out.replace(/^too-old:/, '')) };
  }
  if (exitCode === 3 || /^(managed:)?missing:/.test(out)) {
    const externallyManaged = out.startsWith('managed:');
    return { ok: false, reason: 'missing-ratchet', detail: out.replace(/^(managed:)?missing:/, ''), externallyManaged };
  }
  return { ok: false, reason: 'missing-interpreter', detail: (stderr || out || `exit code ${exitCode}`).trim().slice(0, 400) };
}
