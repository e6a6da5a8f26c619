// The palette's commands (category "Ratchet") and the commands code actions and lenses call.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { openExperiment, openLog, type VirtualDocuments } from './documents';
import type { ExperimentsPanel } from './experimentsView';
import { formatMetric } from './logic/format';
import { BOOTSTRAP, shellQuote } from './logic/interpreter';
import { idFrom, type ExperimentRecord } from './logic/protocol';
import type { ExperimentsModel } from './model';
import type { ProposalDecorations } from './proposals';
import type { ServerManager } from './server';

export interface Parts {
  context: vscode.ExtensionContext;
  server: ServerManager;
  model: ExperimentsModel;
  docs: VirtualDocuments;
  panel: ExperimentsPanel;
  proposals: ProposalDecorations;
}

function messageOf(error: unknown): string {
  if (error && typeof error === 'object' && 'message' in error) {
    return String((error as { message: unknown }).message);
  }
  return String(error);
}

function guarded<T extends unknown[]>(fn: (...args: T) => Promise<unknown>): (...args: T) => Promise<unknown> {
  return async (...args: T) => {
    try {
      return await fn(...args);
    } catch (error) {
      void vscode.window.showErrorMessage(`Ratchet: ${messageOf(error)}`);
      return undefined;
    }
  };
}

function pickItem(exp: ExperimentRecord, metric: string): vscode.QuickPickItem & { id: number } {
  return {
    id: exp.id,
    label: `exp ${exp.id}`,
    description: `${exp.status} · ${metric} ${formatMetric(exp.metric ?? null)} · ${exp.description ?? ''}`,
    detail: exp.reason || undefined,
  };
}

async function pickExperiment(parts: Parts, title: string, filter: (exp: ExperimentRecord) => boolean, empty: string): Promise<number | undefined> {
  await parts.model.refresh();
  const metric = parts.model.status?.metric ?? 'metric';
  const items = [...parts.model.list].filter(filter).sort((a, b) => b.id - a.id).map((exp) => pickItem(exp, metric));
  if (items.length === 0) {
    void vscode.window.showInformationMessage(`Ratchet: ${empty}`);
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(items, { title, placeHolder: 'experiment, metric, description', matchOnDescription: true, matchOnDetail: true });
  return pick?.id;
}

export function registerCommands(parts: Parts): vscode.Disposable[] {
  const { server, model, docs, panel, proposals } = parts;
  const root = () => server.projectFolder()?.uri.fsPath ?? '';
  const send = async (command: string, ...args: unknown[]) => {
    const result = await server.request(command, ...args);
    void model.refresh();
    return result;
  };
  const forward = (command: string) => guarded(async (...args: unknown[]) => send(command, ...args));

  const needsConfig = async (): Promise<boolean> => {
    if (server.hasConfig()) {
      if (!server.running && !server.offline?.reason.includes('not installed')) {
        await server.start();
      }
      return true;
    }
    const pick = await vscode.window.showWarningMessage('Ratchet: this folder has no ratchet.toml yet.', 'Initialize', 'Create Example Project');
    if (pick === 'Initialize') {
      await vscode.commands.executeCommand('ratchet.init');
    } else if (pick === 'Create Example Project') {
      await vscode.commands.executeCommand('ratchet.createExample');
    }
    return false;
  };

  const decide = (command: 'ratchet.accept' | 'ratchet.reject', verb: string) =>
    guarded(async (arg?: unknown) => {
      let id = idFrom(arg);
      if (id === undefined || id === 'best') {
        const waiting = new Set(proposals.pendingProposals().map((e) => e.id));
        id = await pickExperiment(parts, `${verb} which proposal?`, (e) => e.status === 'awaiting_review' || waiting.has(e.id), 'no proposal is waiting for review.');
      }
      if (id === undefined) {
        return undefined;
      }
      proposals.forget(id);
      return send(command, id);
    });

  const apply = guarded(async (arg?: unknown) => {
    let which = idFrom(arg);
    if (which === undefined) {
      which = await pickExperiment(parts, 'Apply which experiment to your file?', (e) => !!e.commit && (e.status === 'kept' || e.status === 'discarded'), 'no experiment to apply yet.');
    }
    if (which === undefined) {
      return undefined;
    }
    return send('ratchet.apply', which);
  });

  const revert = guarded(async (arg?: unknown) => {
    let id = idFrom(arg);
    if (id === undefined || id === 'best') {
      id = await pickExperiment(parts, 'Revert which kept experiment?', (e) => e.status === 'kept' && e.source !== 'baseline' && e.id !== 0, 'no kept experiment to revert.');
    }
    if (id === undefined) {
      return undefined;
    }
    return send('ratchet.revert', id);
  });

  const note = guarded(async (arg?: unknown) => {
    let text = typeof arg === 'string' ? arg : undefined;
    if (text === undefined) {
      text = await vscode.window.showInputBox({
        title: 'Ratchet: a note for the agent',
        prompt: 'The agent reads it from its next proposal on (it is kept with the loop).',
        placeHolder: 'e.g. try a smaller learning rate before touching the model width',
      });
    }
    if (!text?.trim()) {
      return undefined;
    }
    await send('ratchet.note', text.trim());
    void vscode.window.setStatusBarMessage('$(note) Ratchet: note added for the agent', 3000);
    return undefined;
  });

  const runBuffer = guarded(async (arg?: unknown) => {
    const editor = vscode.window.activeTextEditor;
    const uri = arg instanceof vscode.Uri ? arg : editor?.document.uri;
    if (!uri || uri.scheme !== 'file') {
      throw new Error('open the editable file first: its text, saved or not, runs as an experiment');
    }
    const description = await vscode.window.showInputBox({
      title: 'Ratchet: run this file as an experiment',
      prompt: 'One line saying what you changed (the file runs as you have it now, saved or not).',
      value: 'an edit made in the editor',
    });
    if (description === undefined) {
      return undefined;
    }
    // the server reads the text from the document it is kept in sync with
    return send('ratchet.runBuffer', { uri: uri.toString(), description: description.trim() || 'an edit made in the editor' });
  });

  const openDiff = guarded(async (...args: unknown[]) => {
    const payload = (args.length === 1 && args[0] && typeof args[0] === 'object' ? args[0] : {}) as Record<string, unknown>;
    const positional = args.length >= 2 && typeof args[0] === 'string' && typeof args[1] === 'string';
    const str = (...keys: string[]) => keys.map((k) => payload[k]).find((v): v is string => typeof v === 'string');
    const before = positional ? (args[0] as string) : str('oldText', 'old_text', 'old', 'before', 'left', 'original');
    const after = positional ? (args[1] as string) : str('newText', 'new_text', 'new', 'after', 'right', 'modified');
    const id = idFrom(payload.experiment ?? payload.id);
    if (before === undefined || after === undefined) {
      if (typeof id === 'number') {
        const exp = model.get(id);
        if (exp) {
          return openExperiment(docs, root(), exp, { log: false, column: vscode.ViewColumn.Beside });
        }
      }
      throw new Error('the diff carries no texts to show');
    }
    const file = str('path', 'file', 'uri') ?? 'file.txt';
    const fileName = file.startsWith('file:') ? vscode.Uri.parse(file).fsPath : file;
    const label = typeof id === 'number' ? `exp-${id}` : 'diff';
    const title = str('title') ?? (typeof id === 'number' ? `exp ${id}: ${model.get(id)?.description ?? ''}` : 'Ratchet diff');
    await docs.showDiff(docs.put(`${label}-before`, fileName, before), docs.put(`${label}-after`, fileName, after), title, vscode.ViewColumn.Beside);
    return undefined;
  });

  const init = guarded(async () => {
    const folder = server.projectFolder();
    if (!folder) {
      throw new Error('open a folder first');
    }
    const config = path.join(folder.uri.fsPath, 'ratchet.toml');
    if (fs.existsSync(config)) {
      const pick = await vscode.window.showWarningMessage('Ratchet: ratchet.toml already exists.', 'Open It', 'Replace It');
      if (pick === 'Open It') {
        await vscode.window.showTextDocument(vscode.Uri.file(config));
        return undefined;
      }
      if (pick !== 'Replace It') {
        return undefined;
      }
    }
    const choice = await server.resolveInterpreter();
    const args = ['-c', BOOTSTRAP, server.bundled, '-C', folder.uri.fsPath, 'init'];
    if (fs.existsSync(config)) {
      args.push('--force');
    }
    const result = await new Promise<{ ok: boolean; out: string }>((resolve) => {
      execFile(choice.path, args, { cwd: folder.uri.fsPath, timeout: 60_000 }, (error, stdout, stderr) => {
        resolve({ ok: !error, out: `${stdout}${stderr}`.trim() || String(error ?? '') });
      });
    });
    server.serverLog.appendLine(`[client] ${choice.path} ${args.join(' ')}\n${result.out}`);
    if (!result.ok) {
      const probe = await server.probe(choice.path);
      throw new Error(probe.ok ? `ratchet init failed: ${result.out.split('\n').pop()}` : `Ratchet's Python packages are not installed in ${choice.path}: see “Ratchet: Restart Server” for the install command`);
    }
    for (const name of ['program.md', 'ratchet.toml']) {
      const file = path.join(folder.uri.fsPath, name);
      if (fs.existsSync(file)) {
        await vscode.window.showTextDocument(vscode.Uri.file(file), { preview: false });
      }
    }
    void vscode.window.showInformationMessage(`Ratchet: ${result.out.split('\n')[0] || 'wrote ratchet.toml and program.md'}. Check them, commit, then Start Loop.`);
    await server.start();
    return undefined;
  });

  const createExample = guarded(async () => {
    const picked = await vscode.window.showOpenDialog({
      title: 'Ratchet: where should the example project go?',
      openLabel: 'Create Example Here',
      canSelectFiles: false,
      canSelectFolders: true,
      canSelectMany: false,
      defaultUri: vscode.Uri.file(os.homedir()),
    });
    if (!picked?.[0]) {
      return undefined;
    }
    const target = await createExampleProject(parts, picked[0].fsPath);
    const open = await vscode.window.showInformationMessage(`Ratchet: created the example in ${target}.`, { modal: false }, 'Open Folder');
    if (open === 'Open Folder') {
      await vscode.commands.executeCommand('vscode.openFolder', vscode.Uri.file(target), { forceNewWindow: false });
    }
    return target;
  });

  const register = (name: string, fn: (...args: never[]) => unknown) => vscode.commands.registerCommand(name, fn as (...args: unknown[]) => unknown);

  return [
    register('ratchet.start', guarded(async (arg?: unknown) => {
      if (!(await needsConfig())) {
        return undefined;
      }
      const result = typeof arg === 'number' ? await send('ratchet.start', arg) : await send('ratchet.start');
      return result;
    })),
    register('ratchet.stop', forward('ratchet.stop')),
    register('ratchet.pause', forward('ratchet.pause')),
    register('ratchet.resume', forward('ratchet.resume')),
    register('ratchet.proposeOnce', guarded(async () => ((await needsConfig()) ? send('ratchet.proposeOnce') : undefined))),
    register('ratchet.runBuffer', runBuffer),
    register('ratchet.accept', decide('ratchet.accept', 'Accept & run')),
    register('ratchet.reject', decide('ratchet.reject', 'Reject')),
    register('ratchet.acceptProposal', decide('ratchet.accept', 'Accept & run')),
    register('ratchet.rejectProposal', decide('ratchet.reject', 'Reject')),
    register('ratchet.apply', apply),
    register('ratchet.applyBest', guarded(async () => send('ratchet.apply', 'best'))),
    register('ratchet.revert', revert),
    register('ratchet.revertExperiment', revert),
    register('ratchet.note', note),
    register('ratchet.addNote', note),
    register('ratchet.experiments', forward('ratchet.experiments')),
    register('ratchet.status', forward('ratchet.status')),
    register('ratchet.openDiff', openDiff),
    register('ratchet.showProposalDiff', guarded(async (arg?: unknown) => {
      const id = idFrom(arg);
      if (typeof id === 'number') {
        await proposals.showDiff(id);
      }
    })),
    register('ratchet.showExperiments', () => panel.show()),
    register('ratchet.openExperiment', guarded(async (arg?: unknown) => {
      const id = idFrom(arg) ?? (await pickExperiment(parts, 'Open which experiment?', () => true, 'no experiments yet.'));
      const exp = typeof id === 'number' ? model.get(id) : undefined;
      if (exp) {
        await openExperiment(docs, root(), exp);
      }
    })),
    register('ratchet.openLog', guarded(async (arg?: unknown) => {
      const id = idFrom(arg) ?? (await pickExperiment(parts, 'Open the log of which experiment?', () => true, 'no experiments yet.'));
      const exp = typeof id === 'number' ? model.get(id) : undefined;
      if (exp) {
        await openLog(docs, root(), exp, vscode.ViewColumn.Active);
      }
    })),
    register('ratchet.init', init),
    register('ratchet.createExample', createExample),
    register('ratchet.restartServer', guarded(() => server.restart())),
    register('ratchet.showServerLog', () => server.serverLog.show()),
    register('ratchet.showAgentTrace', () => server.agentTrace.show()),
  ];
}

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: 60_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr || error.message).trim()}`)) : resolve(String(stdout))));
  });
}

/** Copies the bundled example into a new folder under `parent`, as a committed git repository. */
export async function createExampleProject(parts: Parts, parent: string): Promise<string> {
  let target = path.join(parent, 'ratchet-example');
  for (let n = 2; fs.existsSync(target); n++) {
    target = path.join(parent, `ratchet-example-${n}`);
  }
  const source = path.join(parts.context.extensionUri.fsPath, 'example');
  fs.mkdirSync(target, { recursive: true });
  const choice = await parts.server.resolveInterpreter();
  for (const name of fs.readdirSync(source)) {
    const text = fs.readFileSync(path.join(source, name), 'utf8');
    const out = name === 'gitignore' ? '.gitignore' : name;
    fs.writeFileSync(path.join(target, out), text.replace(/\{python\}/g, shellQuote(choice.path).replace(/"/g, '\\"')));
  }
  await run('git', ['init', '-q'], target);
  await run('git', ['checkout', '-q', '-b', 'main'], target).catch(() => undefined);
  await run('git', ['add', '-A'], target);
  let identity: string[] = [];
  try {
    await run('git', ['config', 'user.email'], target);
  } catch {
    identity = ['-c', 'user.name=Ratchet', '-c', 'user.email=ratchet@localhost'];
  }
  await run('git', [...identity, 'commit', '-q', '-m', 'The Ratchet example: a tiny loop'], target);
  return target;
}
