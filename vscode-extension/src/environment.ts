// What every project's server shares: the log channels, the bundled Ratchet, the interpreter
// (chosen, probed, and explained when it cannot run Ratchet), Ratchet's private environment,
// and what stops anything from running (Windows, Restricted Mode).

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  DEFAULT_INSTALL,
  installCommand,
  pickInterpreter,
  privateEnvPython,
  PROBE_SCRIPT,
  readProbe,
  unsupportedPlatform,
  type InterpreterChoice,
  type Probe,
} from './logic/interpreter';
import { ApiKeys } from './keys';
import { pythonExtensionInterpreter } from './pythonExtension';

/** `editable = "train.py"` from a ratchet.toml (the document selector needs it before the
 * server has read the file); undefined when it cannot be read. */
export function readEditable(root: string): string | undefined {
  try {
    const text = fs.readFileSync(path.join(root, 'ratchet.toml'), 'utf8');
    return /^\s*editable\s*=\s*["']([^"']+)["']/m.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

function run(command: string, args: string[], options: { cwd?: string; timeout: number }): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { ...options, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const enoent = error && (error as NodeJS.ErrnoException).code === 'ENOENT';
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : enoent ? 127 : 1) : 0;
      resolve({ code, out: `${String(stdout)}${String(stderr)}`.trim() });
    });
  });
}

export class Environment implements vscode.Disposable {
  readonly serverLog: vscode.LogOutputChannel;
  readonly agentTrace: vscode.OutputChannel;
  /** The agents' API keys the editor keeps (SecretStorage). */
  readonly keys: ApiKeys;
  /** The Ratchet package bundled in the extension (used when the interpreter has none). */
  readonly bundled: string;
  private readonly storage: string;
  private platformWarned = false;

  constructor(context: vscode.ExtensionContext) {
    this.bundled = path.join(context.extensionPath, 'bundled');
    this.storage = context.globalStorageUri.fsPath;
    this.serverLog = vscode.window.createOutputChannel('Ratchet Server', { log: true });
    this.agentTrace = vscode.window.createOutputChannel('Ratchet Agent', 'log');
    this.keys = new ApiKeys(context.secrets);
  }

  get requirements(): string {
    return path.join(this.bundled, 'requirements.txt');
  }

  /** Why nothing may run here, or undefined. Windows says so once, in a message. */
  blocked(): string | undefined {
    const platform = unsupportedPlatform(process.platform);
    if (platform) {
      if (!this.platformWarned) {
        this.platformWarned = true;
        void vscode.window.showErrorMessage(`Ratchet: ${platform}`, 'Learn about WSL').then((pick) => {
          if (pick) {
            void vscode.env.openExternal(vscode.Uri.parse('https://code.visualstudio.com/docs/remote/wsl'));
          }
        });
      }
      return platform;
    }
    if (!vscode.workspace.isTrusted) {
      return 'Restricted Mode: Ratchet runs nothing in a folder you have not trusted (its server and experiments run commands from ratchet.toml)';
    }
    return undefined;
  }

  reviewGate(folder: vscode.WorkspaceFolder): 'auto' | 'propose' | null {
    const value = vscode.workspace.getConfiguration('ratchet', folder.uri).get<string>('reviewGate', 'config');
    return value === 'auto' || value === 'propose' ? value : null;
  }

  privateEnvironment(): string | undefined {
    const python = privateEnvPython(this.storage);
    return fs.existsSync(python) ? python : undefined;
  }

  async resolveInterpreter(folder: vscode.WorkspaceFolder | undefined): Promise<InterpreterChoice> {
    const setting = vscode.workspace.getConfiguration('ratchet', folder?.uri).get<string>('python', '');
    const privateEnv = setting.trim() ? undefined : this.privateEnvironment();
    const fromExtension = setting.trim() || privateEnv ? undefined : await pythonExtensionInterpreter(folder?.uri);
    return pickInterpreter({ setting, privateEnv, pythonExtension: fromExtension, workspaceFolder: folder?.uri.fsPath, home: os.homedir() });
  }

  async probe(python: string, cwd?: string): Promise<Probe> {
    const { code, out } = await run(python, ['-c', PROBE_SCRIPT, this.bundled], { cwd, timeout: 30_000 });
    return readProbe(code, out, code === 0 ? '' : out, code === 127 ? `${python} was not found` : undefined);
  }

  /** The interpreter to start the server with, or undefined after saying why it cannot. */
  async checkedInterpreter(project: { name: string; root: string; workspaceFolder: vscode.WorkspaceFolder; setOffline(reason: string): void }): Promise<InterpreterChoice | undefined> {
    const choice = await this.resolveInterpreter(project.workspaceFolder);
    const probe = await this.probe(choice.path, project.root);
    if (probe.ok) {
      this.serverLog.info(`[${project.name}] ratchet ${probe.version} in ${choice.path} (from ${choice.source})`);
      return choice;
    }
    const from = { setting: 'the setting ratchet.python', 'private environment': "Ratchet's private environment", 'python extension': "the Python extension's interpreter", default: 'the default' }[choice.source];
    if (probe.reason === 'missing-ratchet') {
      const template = vscode.workspace.getConfiguration('ratchet').get<string>('installCommand', DEFAULT_INSTALL);
      const command = installCommand(template, choice.path, this.requirements);
      const managed = probe.externallyManaged ? ' It is a system Python that refuses pip (externally managed): create a private environment for Ratchet instead.' : ` Install them with: ${command}`;
      project.setOffline(`Ratchet's Python packages are not installed in ${choice.path}`);
      this.explain(`Ratchet's Python packages are not installed in ${choice.path} (${from}: ${probe.detail}).${managed}`, probe.externallyManaged ? ['Create Private Environment', 'Choose Interpreter'] : ['Create Private Environment', 'Install in Terminal', 'Copy Command', 'Choose Interpreter'], command, project.root);
    } else if (probe.reason === 'too-old') {
      project.setOffline(`${probe.detail} (${choice.path})`);
      this.explain(`${probe.detail} (${choice.path}, ${from}). Set “ratchet.python” to Python 3.11 or newer.`, ['Choose Interpreter'], '', project.root);
    } else {
      project.setOffline(`cannot run ${choice.path}: ${probe.detail}`);
      this.explain(`Ratchet cannot run ${choice.path} (${from}): ${probe.detail}. Set “ratchet.python” to an interpreter with Python 3.11+.`, ['Choose Interpreter', 'Show Log'], '', project.root);
    }
    return undefined;
  }

  private explain(message: string, actions: string[], command: string, cwd: string): void {
    this.serverLog.warn(`[client] ${message}`);
    void vscode.window.showWarningMessage(`Ratchet: ${message}`, ...actions).then((pick) => {
      if (pick === 'Install in Terminal') {
        const terminal = vscode.window.createTerminal({ name: 'Install Ratchet', cwd });
        terminal.show();
        terminal.sendText(command);
      } else if (pick === 'Copy Command') {
        void vscode.env.clipboard.writeText(command);
      } else if (pick === 'Choose Interpreter') {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'ratchet.python');
      } else if (pick === 'Create Private Environment') {
        void vscode.commands.executeCommand('ratchet.createEnvironment');
      } else if (pick === 'Show Log') {
        this.serverLog.show();
      }
    });
  }

  /** A venv of Ratchet's own in the extension's global storage, with its packages; used
   * from then on whenever `ratchet.python` is empty. Returns its interpreter. */
  async createPrivateEnvironment(base: string): Promise<string> {
    const probe = await this.probe(base);
    if (!probe.ok && probe.reason !== 'missing-ratchet') {
      throw new Error(`${base} cannot make Ratchet's environment: ${probe.detail}`);
    }
    const venv = path.dirname(path.dirname(privateEnvPython(this.storage)));
    fs.mkdirSync(this.storage, { recursive: true });
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Ratchet: creating a private Python environment' }, async (progress) => {
      progress.report({ message: `${base} -m venv ${venv}` });
      const made = await run(base, ['-m', 'venv', '--clear', venv], { timeout: 120_000 });
      this.serverLog.info(`[client] ${base} -m venv ${venv}: exit ${made.code}\n${made.out}`);
      if (made.code !== 0) {
        const hint = /ensurepip|python3-venv/.test(made.out) ? ' (on Debian and Ubuntu: sudo apt install python3-venv)' : '';
        throw new Error(`${base} -m venv failed${hint}: ${made.out.split('\n').pop() ?? ''}`);
      }
      const python = privateEnvPython(this.storage);
      progress.report({ message: 'installing Ratchet’s packages (pip)' });
      const installed = await run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '-r', this.requirements], { timeout: 600_000 });
      this.serverLog.info(`[client] pip install -r ${this.requirements}: exit ${installed.code}\n${installed.out}`);
      if (installed.code !== 0) {
        throw new Error(`pip could not install Ratchet's packages into ${venv}: ${installed.out.split('\n').pop() ?? ''} (see the “Ratchet Server” output)`);
      }
      return python;
    });
  }

  appendTrace(payload: unknown): void {
    if (payload && typeof payload === 'object') {
      const p = payload as { id?: number; experiment?: number; text?: string; message?: string };
      const id = p.id ?? p.experiment;
      const text = p.text ?? p.message ?? JSON.stringify(payload);
      this.agentTrace.appendLine(`${id !== undefined ? `[exp ${id}] ` : ''}${text}`);
    } else {
      this.agentTrace.appendLine(String(payload));
    }
  }

  dispose(): void {
    this.keys.dispose();
    this.serverLog.dispose();
    this.agentTrace.dispose();
  }
}
