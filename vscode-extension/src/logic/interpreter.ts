// Which Python runs `ratchet serve`, and the exact command that installs what it needs.

export interface InterpreterChoice {
  path: string;
  source: 'setting' | 'python extension' | 'default';
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

/** `ratchet.python` if set, else the Python extension's interpreter, else python3. */
export function pickInterpreter(options: {
  setting?: string;
  pythonExtension?: string;
  workspaceFolder?: string;
  home?: string;
}): InterpreterChoice {
  const setting = (options.setting ?? '').trim();
  if (setting) {
    return { path: expandVariables(setting, options.workspaceFolder, options.home), source: 'setting' };
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
  | { ok: false; reason: 'missing-interpreter' | 'missing-ratchet' | 'too-old'; detail: string };

/** The probe's script (argv[1]: the bundled copy's folder): prints `ratchet <version>` or
 * fails with ImportError's message (a missing dependency, such as pygls). */
export const PROBE_SCRIPT =
  'import sys\n' +
  'sys.path.append(sys.argv[1])\n' +
  'try:\n' +
  '    import ratchet, ratchet.cli\n' +
  'except ImportError as e:\n' +
  '    print("missing:" + str(e)); sys.exit(3)\n' +
  'print("ratchet " + getattr(ratchet, "__version__", "?"))\n';

export function readProbe(exitCode: number | null, stdout: string, stderr: string, spawnError?: string): Probe {
  if (spawnError) {
    return { ok: false, reason: 'missing-interpreter', detail: spawnError };
  }
  const out = stdout.trim();
  if (exitCode === 0 && out.startsWith('ratchet ')) {
    return { ok: true, version: out.slice('ratchet '.length) };
  }
  if (exitCode === 3 || out.startsWith('missing:')) {
    return { ok: false, reason: 'missing-ratchet', detail: out.replace(/^missing:/, '') };
  }
  return { ok: false, reason: 'missing-interpreter', detail: (stderr || out || `exit code ${exitCode}`).trim().slice(0, 400) };
}
