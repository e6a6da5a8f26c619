// Starts `ratchet serve` from the right interpreter, restarts it, and talks to it.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from 'vscode-languageclient/node';
import {
  DEFAULT_INSTALL,
  installCommand,
  pickInterpreter,
  PROBE_SCRIPT,
  readProbe,
  serverArgs,
  type InterpreterChoice,
  type Probe,
} from './logic/interpreter';
import type { LoopStatus } from './logic/protocol';

/** Commands this extension registers itself (with quick picks, buffers, views); the language
 * client must not register them again when the server advertises them. */
export const CLIENT_OWNED = new Set([
  'ratchet.start',
  'ratchet.stop',
  'ratchet.pause',
  'ratchet.resume',
  'ratchet.proposeOnce',
  'ratchet.accept',
  'ratchet.reject',
  'ratchet.apply',
  'ratchet.revert',
  'ratchet.runBuffer',
  'ratchet.note',
  'ratchet.experiments',
  'ratchet.status',
  'ratchet.openDiff',
]);

/** Notifications that carry the agent's live trace (the server may use any of them). */
const TRACE_NOTIFICATIONS = ['ratchet/agentActivity', 'ratchet/agent', 'ratchet/trace'];

export type Offline = { reason: string } | undefined;

export class ServerManager implements vscode.Disposable {
  readonly serverLog: vscode.LogOutputChannel;
  readonly agentTrace: vscode.OutputChannel;
  private client: LanguageClient | undefined;
  private starting: Promise<void> | undefined;
  private readonly statusEmitter = new vscode.EventEmitter<LoopStatus>();
  private readonly offlineEmitter = new vscode.EventEmitter<Offline>();
  private readonly readyEmitter = new vscode.EventEmitter<void>();
  readonly onStatus = this.statusEmitter.event;
  readonly onOffline = this.offlineEmitter.event;
  readonly onReady = this.readyEmitter.event;
  private advertised: string[] = [];
  interpreter: InterpreterChoice | undefined;
  lastStatus: LoopStatus | undefined;
  offline: Offline = { reason: 'the language server is starting' };
  private disposed = false;

  /** The Ratchet package bundled in the extension (used when the interpreter has none). */
  readonly bundled: string;

  constructor(extensionPath: string) {
    this.bundled = path.join(extensionPath, 'bundled');
    this.serverLog = vscode.window.createOutputChannel('Ratchet Server', { log: true });
    this.agentTrace = vscode.window.createOutputChannel('Ratchet Agent', 'log');
  }

  /** The folder whose ratchet.toml the server serves: the first that has one, else the first. */
  projectFolder(): vscode.WorkspaceFolder | undefined {
    const folders = vscode.workspace.workspaceFolders ?? [];
    return folders.find((f) => f.uri.scheme === 'file' && fs.existsSync(path.join(f.uri.fsPath, 'ratchet.toml'))) ?? folders[0];
  }

  hasConfig(): boolean {
    const folder = this.projectFolder();
    return !!folder && fs.existsSync(path.join(folder.uri.fsPath, 'ratchet.toml'));
  }

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  async resolveInterpreter(): Promise<InterpreterChoice> {
    const folder = this.projectFolder();
    const setting = vscode.workspace.getConfiguration('ratchet', folder?.uri).get<string>('python', '');
    let fromExtension: string | undefined;
    if (!setting.trim()) {
      fromExtension = await pythonExtensionInterpreter(folder?.uri);
    }
    return pickInterpreter({ setting, pythonExtension: fromExtension, workspaceFolder: folder?.uri.fsPath, home: os.homedir() });
  }

  async probe(python: string): Promise<Probe> {
    const folder = this.projectFolder();
    return new Promise((resolve) => {
      execFile(python, ['-c', PROBE_SCRIPT, this.bundled], { cwd: folder?.uri.fsPath, timeout: 30_000 }, (error, stdout, stderr) => {
        const spawnError = error && (error as NodeJS.ErrnoException).code === 'ENOENT' ? `${python} was not found` : undefined;
        const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1) : 0;
        resolve(readProbe(code, String(stdout), String(stderr), spawnError));
      });
    });
  }

  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.doStart().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private setOffline(reason: string | undefined): void {
    this.offline = reason === undefined ? undefined : { reason };
    this.offlineEmitter.fire(this.offline);
    void vscode.commands.executeCommand('setContext', 'ratchet.serverRunning', reason === undefined);
  }

  private async doStart(): Promise<void> {
    if (this.disposed) {
      return;
    }
    await this.stopClient();
    const folder = this.projectFolder();
    if (!folder) {
      this.setOffline('open a folder to use Ratchet');
      return;
    }
    if (!this.hasConfig()) {
      this.setOffline('this folder has no ratchet.toml yet: run “Ratchet: Initialize” or create the example project');
      return;
    }
    this.setOffline('the language server is starting');
    const choice = await this.resolveInterpreter();
    this.interpreter = choice;
    this.serverLog.appendLine(`[client] interpreter ${choice.path} (from ${choice.source})`);
    const probe = await this.probe(choice.path);
    if (!probe.ok) {
      this.reportProbe(choice, probe);
      return;
    }
    this.serverLog.appendLine(`[client] ratchet ${probe.version}; starting \`${choice.path} ${serverArgs(folder.uri.fsPath, this.bundled).join(' ')}\``);
    const review = vscode.workspace.getConfiguration('ratchet', folder.uri).get<string>('reviewGate', 'config');
    const serverOptions: ServerOptions = {
      command: choice.path,
      args: serverArgs(folder.uri.fsPath, this.bundled),
      options: { cwd: folder.uri.fsPath, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    };
    const clientOptions: LanguageClientOptions = {
      // any file: the editable file may be in any language; the server publishes diagnostics
      // only on the files of its loop
      documentSelector: [{ scheme: 'file' }],
      outputChannel: this.serverLog,
      workspaceFolder: folder,
      initializationOptions: { review: review === 'config' ? null : review, client: 'vscode-ratchet' },
      synchronize: {
        fileEvents: vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(folder, '{ratchet.toml,program.md}')),
      },
      // errors get a message from the extension, not a second one from the client
      initializationFailedHandler: (error) => {
        this.serverLog.appendLine(`[client] initialization failed: ${String(error)}`);
        return false;
      },
    };
    const client = new LanguageClient('ratchet', 'Ratchet', serverOptions, clientOptions);
    this.neuterCommandRegistration(client);
    client.onNotification('ratchet/status', (payload: LoopStatus) => {
      this.lastStatus = payload;
      this.statusEmitter.fire(payload);
    });
    for (const method of TRACE_NOTIFICATIONS) {
      client.onNotification(method, (payload: unknown) => this.appendTrace(payload));
    }
    client.onDidChangeState((event) => {
      if (event.newState === State.Stopped && this.client === client && !this.disposed) {
        this.setOffline('the language server stopped (see the “Ratchet Server” output)');
      }
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.serverLog.appendLine(`[client] could not start the server: ${String(error)}`);
      this.setOffline(`the language server did not start: ${String(error)}`);
      void vscode.window.showErrorMessage(`Ratchet: the language server did not start (${String(error)}).`, 'Show Log').then((pick) => {
        if (pick) {
          this.serverLog.show();
        }
      });
      return;
    }
    this.advertised = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    this.serverLog.appendLine(`[client] server commands: ${this.advertised.join(', ') || '(none advertised)'}`);
    this.setOffline(undefined);
    this.readyEmitter.fire();
    try {
      const status = (await this.request('ratchet.status')) as LoopStatus | null;
      if (status && typeof status === 'object') {
        this.lastStatus = status;
        this.statusEmitter.fire(status);
      }
    } catch (error) {
      this.serverLog.appendLine(`[client] ratchet.status failed: ${String(error)}`);
    }
  }

  /** The client registers a VS Code command for each command the server advertises; those
   * this extension owns are left out (they would clash), the rest are forwarded as usual. */
  private neuterCommandRegistration(client: LanguageClient): void {
    const feature = client.getFeature(ExecuteCommandRequest.method) as unknown as {
      register(data: { id: string; registerOptions: { commands?: string[] } }): void;
    };
    const original = feature.register.bind(feature);
    feature.register = (data) => {
      const commands = (data.registerOptions.commands ?? []).filter((c) => !CLIENT_OWNED.has(c));
      original({ ...data, registerOptions: { ...data.registerOptions, commands } });
    };
  }

  private appendTrace(payload: unknown): void {
    if (payload && typeof payload === 'object') {
      const p = payload as { id?: number; experiment?: number; text?: string; message?: string };
      const id = p.id ?? p.experiment;
      const text = p.text ?? p.message ?? JSON.stringify(payload);
      this.agentTrace.appendLine(`${id !== undefined ? `[exp ${id}] ` : ''}${text}`);
    } else {
      this.agentTrace.appendLine(String(payload));
    }
  }

  private reportProbe(choice: InterpreterChoice, probe: Exclude<Probe, { ok: true }>): void {
    const folder = this.projectFolder();
    const template = vscode.workspace.getConfiguration('ratchet', folder?.uri).get<string>('installCommand', DEFAULT_INSTALL);
    const command = installCommand(template, choice.path, path.join(this.bundled, 'requirements.txt'));
    const from = choice.source === 'setting' ? 'the setting ratchet.python' : choice.source === 'python extension' ? "the Python extension's interpreter" : 'the default';
    let message: string;
    if (probe.reason === 'missing-ratchet') {
      message = `Ratchet's Python packages are not installed in ${choice.path} (${from}: ${probe.detail}). Install them with: ${command}`;
      this.setOffline(`Ratchet's Python packages are not installed in ${choice.path}; install them with \`${command}\``);
    } else {
      message = `Ratchet cannot run ${choice.path} (${from}): ${probe.detail}. Set “ratchet.python” to an interpreter with Ratchet installed.`;
      this.setOffline(`cannot run ${choice.path}: ${probe.detail}`);
    }
    this.serverLog.appendLine(`[client] ${message}`);
    const actions = probe.reason === 'missing-ratchet' ? ['Install in Terminal', 'Copy Command', 'Choose Interpreter'] : ['Choose Interpreter', 'Show Log'];
    void vscode.window.showWarningMessage(message, ...actions).then((pick) => {
      if (pick === 'Install in Terminal') {
        const terminal = vscode.window.createTerminal({ name: 'Install Ratchet', cwd: folder?.uri.fsPath });
        terminal.show();
        terminal.sendText(command);
      } else if (pick === 'Copy Command') {
        void vscode.env.clipboard.writeText(command);
      } else if (pick === 'Choose Interpreter') {
        void vscode.commands.executeCommand('workbench.action.openSettings', 'ratchet.python');
      } else if (pick === 'Show Log') {
        this.serverLog.show();
      }
    });
  }

  async restart(): Promise<void> {
    this.serverLog.appendLine('[client] restarting the server');
    await this.start();
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(5000);
      } catch (error) {
        this.serverLog.appendLine(`[client] stopping: ${String(error)}`);
      }
    }
  }

  /** `workspace/executeCommand` on the server; throws a plain message when it cannot. */
  async request(command: string, ...args: unknown[]): Promise<unknown> {
    if (!this.client || !this.running) {
      if (this.starting) {
        await this.starting;
      }
    }
    const client = this.client;
    if (!client || !this.running) {
      throw new Error(this.offline?.reason ? `the Ratchet server is not running: ${this.offline.reason}` : 'the Ratchet server is not running');
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  }

  supports(command: string): boolean {
    return this.advertised.length === 0 || this.advertised.includes(command);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stopClient();
    this.serverLog.dispose();
    this.agentTrace.dispose();
    this.statusEmitter.dispose();
    this.offlineEmitter.dispose();
    this.readyEmitter.dispose();
  }
}

/** The Python extension's interpreter for this folder, when that extension is installed. */
async function pythonExtensionInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as {
      environments?: { getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined };
      settings?: { getExecutionDetails(resource?: vscode.Uri): { execCommand?: string[] } };
    };
    const fromEnvironments = api?.environments?.getActiveEnvironmentPath(resource)?.path;
    if (fromEnvironments) {
      return fromEnvironments;
    }
    return api?.settings?.getExecutionDetails(resource)?.execCommand?.[0];
  } catch {
    return undefined;
  }
}

/** Fires when the Python extension's active interpreter changes (when it is installed). */
export async function onPythonInterpreterChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as {
      environments?: { onDidChangeActiveEnvironmentPath?: vscode.Event<unknown> };
    };
    return api?.environments?.onDidChangeActiveEnvironmentPath?.(() => listener());
  } catch {
    return undefined;
  }
}
