// Ratchet for VS Code: a thin client of `ratchet serve` (the language server does the loop).

import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { VirtualDocuments } from './documents';
import { ExperimentsPanel } from './experimentsView';
import { formatGain, formatMetric } from './logic/format';
import type { LoopStatus } from './logic/protocol';
import { newBest } from './logic/status';
import { ExperimentsModel } from './model';
import { ProposalDecorations } from './proposals';
import { onPythonInterpreterChange, ServerManager } from './server';
import { StatusBar } from './statusBar';
import { openExperiment } from './documents';

let server: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<{ server: ServerManager; model: ExperimentsModel }> {
  server = new ServerManager(context.extensionPath);
  const s = server;
  const docs = new VirtualDocuments();
  const model = new ExperimentsModel(s);
  const statusBar = new StatusBar();
  const proposals = new ProposalDecorations(s, model, docs);
  const root = () => s.projectFolder()?.uri.fsPath ?? '';
  // a row's diff opens in the group right of the view, its log in the one after that
  const panel = new ExperimentsPanel(context.extensionUri, model, async (id, column) => {
    const exp = model.get(id);
    if (exp) {
      await openExperiment(docs, root(), exp, { column: Math.min(column + 1, 9), logColumn: Math.min(column + 2, 9) });
    }
  });
  context.subscriptions.push(docs, model, statusBar, proposals, panel, { dispose: () => void s.dispose() });
  context.subscriptions.push(...registerCommands({ context, server: s, model, docs, panel, proposals }));

  let previous: LoopStatus | undefined;
  context.subscriptions.push(
    s.onStatus((status) => {
      statusBar.setStatus(status);
      if (newBest(previous, status) && vscode.workspace.getConfiguration('ratchet').get<boolean>('notifications.newBest', true)) {
        const gain = formatGain(status.gainPercent, status.goal);
        void vscode.window
          .showInformationMessage(
            `Ratchet: new best — exp ${status.bestId}: ${status.metric ?? 'metric'} ${formatMetric(status.best)}${gain ? ` (${gain} over the baseline)` : ''}.`,
            'Show Experiments',
            'Apply Best',
          )
          .then((pick) => {
            if (pick === 'Show Experiments') {
              panel.show();
            } else if (pick === 'Apply Best') {
              void vscode.commands.executeCommand('ratchet.applyBest');
            }
          });
      }
      previous = status;
    }),
    s.onOffline((offline) => {
      if (offline) {
        statusBar.setOffline(offline.reason);
      } else if (s.lastStatus) {
        statusBar.setStatus(s.lastStatus);
      }
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('ratchet.python') || event.affectsConfiguration('ratchet.reviewGate')) {
        void s.restart();
      }
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void s.restart()),
  );
  // ratchet.toml appearing (Initialize, a git checkout) starts the server
  const watcher = vscode.workspace.createFileSystemWatcher('**/ratchet.toml', false, true, true);
  watcher.onDidCreate(() => {
    if (!s.running) {
      void s.start();
    }
  });
  context.subscriptions.push(watcher);
  const pythonWatch = await onPythonInterpreterChange(() => {
    if (!vscode.workspace.getConfiguration('ratchet').get<string>('python', '').trim()) {
      void s.restart();
    }
  });
  if (pythonWatch) {
    context.subscriptions.push(pythonWatch);
  }
  void s.start();
  return { server: s, model };
}

export async function deactivate(): Promise<void> {
  await server?.dispose();
  server = undefined;
}
