// Ratchet for VS Code: a thin client of `ratchet serve` (the language server, and the loop in
// a process of its own, do the work). What is VS Code's own lives here: the status bar, the
// experiments view and tree, context keys, the walkthrough. Lenses, inlay hints and
// diagnostics come from the server, for every LSP client alike.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { openExperiment, openLog, VirtualDocuments } from './documents';
import { Environment, readEditable } from './environment';
import { ExperimentsPanel, type Openers } from './experimentsView';
import { ReportPanel } from './morning';
import { changedKeys, contextKeys, type ContextKeys } from './logic/contextKeys';
import { formatGain, formatMetric } from './logic/format';
import type { LoopStatus } from './logic/protocol';
import { newBest } from './logic/status';
import { KeyStatusBar } from './keys';
import { Projects, type Project } from './projects';
import { onPythonInterpreterChange } from './pythonExtension';
import { StatusBar } from './statusBar';
import { ExperimentsTree } from './tree';

let projects: Projects | undefined;

export interface Api {
  projects: Projects;
}

export async function activate(context: vscode.ExtensionContext): Promise<Api> {
  const env = new Environment(context);
  const all = new Projects(env, context.workspaceState);
  projects = all;
  const docs = new VirtualDocuments();
  const statusBar = new StatusBar();
  const keyBar = new KeyStatusBar(env.keys);
  const openers: Openers = {
    diff: async (project, id, column) => {
      const exp = await project.model.full(id);
      if (exp) {
        await openExperiment(docs, project.client.root, exp, project.model.status?.editable ?? undefined, column);
      }
    },
    log: async (project, id, column) => {
      const exp = await project.model.full(id);
      if (exp) {
        await openLog(docs, project.client.root, exp, column);
      }
    },
  };
  const panel = new ExperimentsPanel(context.extensionUri, all, openers);
  const tree = new ExperimentsTree(all);
  const report = new ReportPanel();
  context.subscriptions.push(env, docs, statusBar, keyBar, panel, report, tree, all, diffDocuments(all));
  context.subscriptions.push(...registerCommands({ context, env, projects: all, docs, panel, report, openers }));
  context.subscriptions.push(...followActiveProject(all, statusBar, keyBar), watchSettings(all), ...watchWorkspace(all));
  const pythonWatch = await onPythonInterpreterChange(() => {
    if (!vscode.workspace.getConfiguration('ratchet').get<string>('python', '').trim() && !env.privateEnvironment()) {
      for (const project of all.all()) {
        void project.client.restart("the Python extension's interpreter changed");
      }
    }
  });
  if (pythonWatch) {
    context.subscriptions.push(pythonWatch);
  }
  await all.discover();
  return { projects: all };
}

/** `ratchet:/exp/14.diff`, the address the server gives an experiment's diff (in links,
 * related information): its text from the server (`ratchet.diffText`). */
function diffDocuments(all: Projects): vscode.Disposable {
  return vscode.workspace.registerTextDocumentContentProvider('ratchet', {
    provideTextDocumentContent: async (uri) => {
      const project = all.active();
      const text = project ? await project.client.request('ratchet.diffText', uri.toString()) : undefined;
      const inner = (text as { text?: unknown } | undefined)?.text;
      return typeof text === 'string' ? text : typeof inner === 'string' ? inner : '';
    },
  });
}

/** The status bar, the context keys and the new-best notification follow the active project. */
function followActiveProject(all: Projects, statusBar: StatusBar, keyBar: KeyStatusBar): vscode.Disposable[] {
  let subscription: vscode.Disposable | undefined;
  let previousKeys: ContextKeys | undefined;
  let previousStatus: LoopStatus | undefined;
  let active: Project | undefined;
  let shownAgent: string | undefined = 'none yet';
  const updateKeys = () => {
    const status = active?.model.status;
    const editor = vscode.window.activeTextEditor?.document.uri;
    const activeFile = active && editor?.scheme === 'file' ? path.relative(active.client.root, editor.fsPath).split(path.sep).join('/') : undefined;
    const offline = active ? active.client.offline?.reason : 'no folder here has a ratchet.toml';
    const keys = contextKeys({ status, offline, activeFile, projects: all.all().length, restricted: !vscode.workspace.isTrusted });
    for (const [key, value] of Object.entries(changedKeys(previousKeys, keys))) {
      void vscode.commands.executeCommand('setContext', key, value);
    }
    previousKeys = keys;
  };
  const render = () => {
    const offline = active ? active.client.offline?.reason : 'no folder here has a ratchet.toml';
    if (offline !== undefined || !active?.model.status) {
      statusBar.setOffline(offline ?? 'the language server is starting', all.all().length > 1 ? active?.client.name : undefined);
    } else {
      statusBar.setStatus(active.model.status, all.all().length > 1 ? active.client.name : undefined);
    }
    const agent = offline === undefined ? active?.model.status?.agent : undefined;
    if (JSON.stringify(agent) !== shownAgent) {
      shownAgent = JSON.stringify(agent);
      void keyBar.update(agent);
    }
    updateKeys();
  };
  const onStatus = (status: LoopStatus) => {
    if (newBest(previousStatus, status) && vscode.workspace.getConfiguration('ratchet').get<boolean>('notifications.newBest', true)) {
      const gain = formatGain(status.gainPercent, status.goal);
      void vscode.window
        .showInformationMessage(`Ratchet: new best — exp ${status.bestId}: ${status.metric ?? 'metric'} ${formatMetric(status.best)}${gain ? ` (${gain} over the baseline)` : ''}.`, 'Show Experiments', 'Apply Best')
        .then((pick) => pick && vscode.commands.executeCommand(pick === 'Apply Best' ? 'ratchet.applyBest' : 'ratchet.showExperiments'));
    }
    announceProposals(previousStatus, status);
    previousStatus = status;
    render();
  };
  const follow = (project: Project | undefined) => {
    subscription?.dispose();
    active = project;
    previousStatus = project?.model.status;
    subscription = project ? vscode.Disposable.from(project.client.onStatus(onStatus), project.client.onOffline(render)) : undefined;
    render();
  };
  follow(all.active());
  return [
    all.onDidChangeActive(follow),
    vscode.window.onDidChangeActiveTextEditor(updateKeys),
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      for (const project of all.all()) {
        void project.client.start();
      }
      updateKeys();
      void keyBar.refresh();
    }),
    new vscode.Disposable(() => {
      subscription?.dispose();
    }),
  ];
}

/** A proposal newly waiting, when `ratchet.notifications.proposals` asks for a message. */
function announceProposals(previous: LoopStatus | undefined, status: LoopStatus): void {
  const before = new Set(previous?.awaitingReview ?? []);
  const fresh = (status.awaitingReview ?? []).filter((id) => !before.has(id));
  if (fresh.length === 0 || !vscode.workspace.getConfiguration('ratchet').get<boolean>('notifications.proposals', false)) {
    return;
  }
  const id = fresh[fresh.length - 1];
  void vscode.window.showInformationMessage(`Ratchet: exp ${id} waits for your review.`, 'Accept & Run', 'Reject', 'Open Diff').then((pick) => {
    const commands: Record<string, string> = { 'Accept & Run': 'ratchet.accept', Reject: 'ratchet.reject', 'Open Diff': 'ratchet.openDiff' };
    const command = pick ? commands[pick] : undefined;
    if (command) {
      void vscode.commands.executeCommand(command, id);
    }
  });
}

/** The review gate goes to the server live; what needs a restart asks first while a loop
 * would stop with it. */
function watchSettings(all: Projects): vscode.Disposable {
  return vscode.workspace.onDidChangeConfiguration(async (event) => {
    for (const project of all.all()) {
      const folder = project.client.workspaceFolder;
      if (event.affectsConfiguration('ratchet.reviewGate', folder)) {
        await project.client.sendSettings();
      }
      if (event.affectsConfiguration('ratchet.python', folder)) {
        await project.client.restart('the new “ratchet.python”');
      }
    }
  });
}

/** Folders added or removed, ratchet.toml created or deleted anywhere: find the projects again;
 * a project's ratchet.toml changed its editable file: its document selector follows. */
function watchWorkspace(all: Projects): vscode.Disposable[] {
  const watcher = vscode.workspace.createFileSystemWatcher('**/ratchet.toml');
  const rediscover = () => void all.discover();
  return [
    watcher,
    watcher.onDidCreate(rediscover),
    watcher.onDidDelete(rediscover),
    watcher.onDidChange((uri) => {
      const project = all.ofFile(uri.fsPath);
      if (project && project.client.root === path.dirname(uri.fsPath) && project.model.status?.editable !== undefined) {
        if (readEditable(project.client.root) !== project.model.status.editable) {
          void project.client.restart('the editable file in ratchet.toml changed');
        }
      }
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(rediscover),
  ];
}

export async function deactivate(): Promise<void> {
  // the servers detach from their loops: a loop in its own process keeps running
  await projects?.close();
  projects = undefined;
}
