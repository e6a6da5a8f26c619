// One project (a folder with ratchet.toml) and its language server: starts `ratchet serve`
// from the right interpreter, follows the client's state (a crash restart says what happened),
// and talks to it. Stopping the client never stops the loop: the loop has a process of its
// own (with a server that has the control channel) and this window only detaches from it.

import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  State,
} from 'vscode-languageclient/node';
import { serverArgs } from './logic/interpreter';
import { LSP, type LoopStatus } from './logic/protocol';
import { pythonLevel } from './logic/serverLog';
import { readEditable, type Environment } from './environment';
import { serverTransport } from './transport';

/** Notifications that carry the agent's live trace (the server may use any of them). */
const TRACE_NOTIFICATIONS = ['ratchet/agentActivity', 'ratchet/agent', 'ratchet/trace'];
/** At most this many crash restarts in RESTART_WINDOW_MS; then the client stays down. */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 3 * 60_000;

export type Offline = { reason: string } | undefined;

export class ProjectClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<void> | undefined;
  private child: ChildProcess | undefined;
  private lastExit = '';
  private previousExit = ''; // how the server before this one ended, for the restart message
  private crashes: number[] = [];
  private restartingAfterCrash = false;
  private readonly statusEmitter = new vscode.EventEmitter<LoopStatus>();
  private readonly rowsEmitter = new vscode.EventEmitter<unknown>();
  private readonly offlineEmitter = new vscode.EventEmitter<Offline>();
  private readonly readyEmitter = new vscode.EventEmitter<void>();
  /** Every `ratchet/status`. */
  readonly onStatus = this.statusEmitter.event;
  /** Every `ratchet/experiment` (one light row, or a list of them). */
  readonly onRows = this.rowsEmitter.event;
  readonly onOffline = this.offlineEmitter.event;
  /** The server is (again) up: refetch everything. Fires after each (re)start. */
  readonly onReady = this.readyEmitter.event;
  private advertised: string[] = [];
  lastStatus: LoopStatus | undefined;
  offline: Offline = { reason: 'the language server is starting' };
  private disposed = false;

  constructor(
    /** The folder holding ratchet.toml. */
    readonly root: string,
    readonly workspaceFolder: vscode.WorkspaceFolder,
    private readonly env: Environment,
  ) {}

  get name(): string {
    const relative = path.relative(this.workspaceFolder.uri.fsPath, this.root);
    return relative ? `${this.workspaceFolder.name}/${relative}` : this.workspaceFolder.name;
  }

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  /** The loop runs in a process of its own (it survives this server's restart). */
  get loopOutlivesServer(): boolean {
    return !!this.lastStatus?.loop;
  }

  /** A loop is running that a restart of a server without a control channel would stop. */
  get loopAtRisk(): boolean {
    const state = this.lastStatus?.state;
    const active = !!state && !['idle', 'error'].includes(state);
    return active && this.lastStatus?.loop === undefined;
  }

  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.doStart().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  setOffline(reason: string | undefined): void {
    this.offline = reason === undefined ? undefined : { reason };
    this.offlineEmitter.fire(this.offline);
  }

  private async doStart(): Promise<void> {
    if (this.disposed) {
      return;
    }
    await this.stopClient();
    const blocked = this.env.blocked();
    if (blocked) {
      this.setOffline(blocked);
      return;
    }
    this.setOffline('the language server is starting');
    const choice = await this.env.checkedInterpreter(this);
    if (!choice) {
      return; // the environment said why (a message, the offline reason)
    }
    const log = this.env.serverLog;
    log.info(`[${this.name}] starting \`${choice.path} … -C ${this.root} serve\` (interpreter from ${choice.source})`);
    const editable = readEditable(this.root);
    const files = ['ratchet.toml', 'program.md', ...(editable ? [editable] : [])];
    const clientOptions: LanguageClientOptions = {
      // only the project's own files: the editable file and the loop's configuration
      documentSelector: [{ scheme: 'file', pattern: `${this.root.split(path.sep).join('/')}/{${files.join(',')}}` }],
      outputChannel: log,
      // a verbose trace prints each request's params: a start's `apiKey` is redacted there
      traceOutputChannel: this.env.keys.redacting(log),
      workspaceFolder: this.workspaceFolder,
      initializationOptions: { review: this.env.reviewGate(this.workspaceFolder), client: 'vscode-ratchet' },
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(this.root, '{ratchet.toml,program.md}')) },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => this.onClosed(),
      },
      // errors get a message from the extension, not a second one from the client
      initializationFailedHandler: (error) => {
        log.error(`[${this.name}] initialization failed: ${String(error)}`);
        return false;
      },
    };
    const spec = {
      command: choice.path,
      args: serverArgs(this.root, this.env.bundled),
      cwd: this.root,
      env: { ...process.env, PYTHONUNBUFFERED: '1', RATCHET_LSP_LOG: pythonLevel(logLevelName(log.logLevel)) },
    };
    const client = new LanguageClient('ratchet', `Ratchet (${this.name})`, () =>
      serverTransport(spec, log, (commands) => (this.advertised = commands), (child) => this.watchProcess(child)),
      clientOptions,
    );
    this.listen(client);
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      log.error(`[${this.name}] could not start the server: ${String(error)}`);
      this.setOffline(`the language server did not start: ${String(error)}`);
      void vscode.window.showErrorMessage(`Ratchet (${this.name}): the language server did not start (${String(error)}).`, 'Show Log').then((pick) => {
        if (pick) {
          log.show();
        }
      });
    }
  }

  private listen(client: LanguageClient): void {
    client.onNotification(LSP.statusNotification, (payload: LoopStatus) => {
      this.lastStatus = payload;
      this.statusEmitter.fire(payload);
    });
    client.onNotification(LSP.experimentNotification, (payload: unknown) => this.rowsEmitter.fire(payload));
    for (const method of TRACE_NOTIFICATIONS) {
      client.onNotification(method, (payload: unknown) => this.env.appendTrace(payload));
    }
    client.onDidChangeState((event) => {
      if (this.client !== client || this.disposed) {
        return;
      }
      if (event.newState === State.Running) {
        void this.becameReady();
      } else if (event.newState === State.Stopped) {
        this.setOffline(`the language server stopped${this.lastExit ? ` (${this.lastExit})` : ''}: see the “Ratchet Server” output`);
      }
    });
  }

  /** Running: the first start or a restart after a crash. Readiness fires each time. */
  private async becameReady(): Promise<void> {
    const caps = this.client?.initializeResult?.capabilities;
    this.env.serverLog.info(`[${this.name}] server commands: ${this.advertised.join(', ') || '(none advertised)'}; codeLens: ${caps?.codeLensProvider ? 'yes' : 'no'}, inlayHint: ${caps?.inlayHintProvider ? 'yes' : 'no'}`);
    this.setOffline(undefined);
    this.readyEmitter.fire();
    const status = await this.request(LSP.status).catch((error: unknown) => {
      this.env.serverLog.warn(`[${this.name}] ratchet.status failed: ${String(error)}`);
      return undefined;
    });
    if (status && typeof status === 'object') {
      this.lastStatus = status;
      this.statusEmitter.fire(this.lastStatus);
    }
    const loop = this.lastStatus?.loop;
    this.env.serverLog.info(`[${this.name}] loop: ${loop ? `pid ${loop.pid}, ${loop.attached ? 'attached' : 'not attached'}` : loop === null ? 'none running' : 'inside the server (no control channel)'}; state ${this.lastStatus?.state ?? '?'}`);
    if (this.restartingAfterCrash) {
      this.restartingAfterCrash = false;
      const fate = loop ? `the loop (pid ${loop.pid}) is still running and this window is attached to it again` : 'the loop ran inside it and stopped with it: start it again when ready';
      // The old process's exit may be seen before or after the new one starts.
      const how = this.previousExit || this.lastExit || 'unexpectedly';
      this.previousExit = '';
      void vscode.window.showWarningMessage(`Ratchet (${this.name}): the language server stopped (${how}) and was restarted; ${fate}.`, 'Show Log').then((pick) => {
        if (pick) {
          this.env.serverLog.show();
        }
      });
    }
  }

  private onClosed(): { action: CloseAction; handled: boolean } {
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < RESTART_WINDOW_MS), now];
    this.env.serverLog.error(`[${this.name}] the language server stopped (${this.lastExit || 'connection closed'})`);
    if (this.disposed || this.crashes.length > MAX_RESTARTS) {
      const reason = `the language server stopped ${this.crashes.length} times in 3 minutes (${this.lastExit || 'connection closed'}); run “Ratchet: Restart Server” after looking at its log`;
      this.setOffline(reason);
      if (!this.disposed) {
        void vscode.window.showErrorMessage(`Ratchet (${this.name}): ${reason}.`, 'Show Log').then((pick) => pick && this.env.serverLog.show());
      }
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    this.restartingAfterCrash = true;
    this.setOffline(`the language server stopped (${this.lastExit || 'connection closed'}); restarting it`);
    return { action: CloseAction.Restart, handled: true };
  }

  private watchProcess(child: ChildProcess): void {
    this.child = child;
    if (this.lastExit) {
      this.previousExit = this.lastExit; // the server before this one: what the restart says
    }
    this.lastExit = '';
    child.once('exit', (code, signal) => {
      const how = signal ? `killed by ${signal}` : `exit code ${code}`;
      if (this.child === child) {
        this.lastExit = how;
      } else {
        this.previousExit = how; // seen after its successor started
      }
    });
  }

  /** Restarts the server. While a loop runs in a server without a control channel, asks
   * first (the restart would stop it); `reason` says why in the question. */
  async restart(reason: string, ask = true): Promise<boolean> {
    if (ask && this.loopAtRisk) {
      const pick = await vscode.window.showWarningMessage(
        `Ratchet (${this.name}): ${reason} needs a restart of the language server, and its loop runs inside it: restarting stops the loop.`,
        { modal: true },
        'Restart and Stop the Loop',
      );
      if (pick !== 'Restart and Stop the Loop') {
        return false;
      }
    }
    this.env.serverLog.info(`[${this.name}] restarting the server: ${reason}`);
    await this.start();
    return true;
  }

  /** Takes a setting the loop accepts live (the review gate) to the server. */
  async sendSettings(): Promise<void> {
    if (this.client && this.running) {
      const reviewGate = this.env.reviewGate(this.workspaceFolder);
      await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { ratchet: { reviewGate } } });
      this.env.serverLog.info(`[${this.name}] review gate ${reviewGate ?? 'from ratchet.toml'}: sent to the server live (no restart)`);
    }
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    const child = this.child;
    this.client = undefined;
    this.child = undefined;
    if (client) {
      try {
        // shutdown + exit: the server detaches from its loop and ends; the loop goes on
        await client.stop(5000);
      } catch (error) {
        this.env.serverLog.warn(`[${this.name}] stopping: ${String(error)}`);
      }
    }
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM'); // it did not end after `exit`
    }
  }

  /** `workspace/executeCommand` on the server; throws a plain message when it cannot. */
  async request(command: string, ...args: unknown[]): Promise<unknown> {
    if ((!this.client || !this.running) && this.starting) {
      await this.starting;
    }
    const client = this.client;
    if (!client || !this.running) {
      throw new Error(this.offline?.reason ? `the Ratchet server is not running: ${this.offline.reason}` : 'the Ratchet server is not running');
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  }

  warn(message: string): void {
    this.env.serverLog.warn(`[${this.name}] ${message}`);
  }

  /** The server lists `command` (an empty list, from an old server, lists nothing). */
  advertises(command: string): boolean {
    return this.advertised.includes(command);
  }

  supports(command: string): boolean {
    return this.advertised.length === 0 || this.advertised.includes(command);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.stopClient();
    this.statusEmitter.dispose();
    this.rowsEmitter.dispose();
    this.offlineEmitter.dispose();
    this.readyEmitter.dispose();
  }
}

function logLevelName(level: vscode.LogLevel): 'off' | 'trace' | 'debug' | 'info' | 'warn' | 'error' {
  return (['off', 'trace', 'debug', 'info', 'warn', 'error'] as const)[level] ?? 'info';
}
