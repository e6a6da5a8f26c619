// The palette's commands (category "Ratchet"), the ones the server's lenses call (by their
// contract names), the view's and the tree's. Each goes to the active project's server.

import * as vscode from 'vscode';
import type { VirtualDocuments } from './documents';
import type { Environment } from './environment';
import type { ExperimentsPanel, Openers } from './experimentsView';
import { makeReviewBranch, type ReportPanel } from './morning';
import { chooseVariable, setApiKey } from './keys';
import { providerLabel, variableOf, withApiKey } from './logic/apiKey';
import { formatMetric } from './logic/format';
import { idFrom, LSP, type ExperimentRecord } from './logic/protocol';
import type { Project, Projects } from './projects';
import { createEnvironment, createExample, initialize } from './setupCommands';

export interface Parts {
  context: vscode.ExtensionContext;
  env: Environment;
  projects: Projects;
  docs: VirtualDocuments;
  panel: ExperimentsPanel;
  report: ReportPanel;
  openers: Openers;
}

function messageOf(error: unknown): string {
  if (error && typeof error === 'object' && 'message' in error) {
    return String(error.message);
  }
  return String(error);
}

/** A command that reports its failure in one line instead of throwing. */
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

async function pickExperiment(project: Project, title: string, filter: (exp: ExperimentRecord) => boolean, empty: string): Promise<number | undefined> {
  const metric = project.model.status?.metric ?? 'metric';
  const candidates = project.model.list().filter(filter).reverse();
  if (candidates.length === 0) {
    void vscode.window.showInformationMessage(`Ratchet: ${empty}`);
    return undefined;
  }
  const items = candidates.map((exp) => ({
    id: exp.id,
    label: `exp ${exp.id}`,
    description: `${exp.status} · ${metric} ${formatMetric(exp.metric ?? null)} · ${exp.description ?? ''}`,
    detail: exp.reason || undefined,
  }));
  const pick = await vscode.window.showQuickPick(items, { title, placeHolder: 'experiment, metric, description', matchOnDescription: true, matchOnDetail: true });
  return pick?.id;
}

/** The id an argument names, else (`single`: for a key press on the one waiting proposal)
 * the only candidate, else one picked from them. */
async function resolveId(project: Project, arg: unknown, title: string, candidates: (exp: ExperimentRecord) => boolean, empty: string, single = false): Promise<number | undefined> {
  const id = idFrom(arg);
  if (typeof id === 'number') {
    return id;
  }
  const matching = project.model.list().filter(candidates);
  return single && matching.length === 1 ? matching[0].id : pickExperiment(project, title, candidates, empty);
}

export function registerCommands(parts: Parts): vscode.Disposable[] {
  const { env, projects, panel, openers } = parts;

  /** The active project, or a message offering to make one. */
  const project = async (): Promise<Project | undefined> => {
    const active = projects.active();
    if (active) {
      if (!active.client.running && !active.client.offline?.reason.includes('not installed')) {
        await active.client.start();
      }
      return active;
    }
    const pick = await vscode.window.showWarningMessage('Ratchet: no folder here has a ratchet.toml yet.', 'Initialize', 'Create Example Project');
    if (pick === 'Initialize') {
      await vscode.commands.executeCommand('ratchet.init');
    } else if (pick === 'Create Example Project') {
      await vscode.commands.executeCommand('ratchet.createExample');
    }
    return undefined;
  };
  const send = async (p: Project, command: string, ...args: unknown[]) => p.client.request(command, ...args);
  /** The key the editor keeps for the project's agent, for a command that may start the
   * loop (the server hands it to that process alone); none for an agent that needs none. */
  const keyFor = async (p: Project): Promise<string | undefined> => {
    const agent = p.model.status?.agent ?? p.client.lastStatus?.agent;
    return agent?.usesKey === false ? undefined : env.keys.get(variableOf(agent));
  };
  /** A command that may start the loop: its options get the kept key. */
  const starting = (command: string) => guarded(async (arg?: unknown) => {
    const p = await project();
    if (!p) {
      return undefined;
    }
    const options = arg && typeof arg === 'object' && !Array.isArray(arg) && !(arg instanceof vscode.Uri) ? arg : undefined;
    const key = await keyFor(p);
    const sent = withApiKey(options, key);
    return sent === undefined ? send(p, command) : send(p, command, sent);
  });
  const agentOf = () => {
    const p = projects.active();
    return p?.model.status?.agent ?? p?.client.lastStatus?.agent;
  };
  const forward = (command: string) => guarded(async (...args: unknown[]) => {
    const p = await project();
    return p ? send(p, command, ...args) : undefined;
  });
  const onExperiment = (command: string, title: string, candidates: (exp: ExperimentRecord) => boolean, empty: string, single = false, keyed = false) =>
    guarded(async (arg?: unknown) => {
      const p = await project();
      const id = p && (await resolveId(p, arg, title, candidates, empty, single));
      if (!p || id === undefined) {
        return undefined;
      }
      return send(p, command, keyed ? withApiKey(id, await keyFor(p)) : id);
    });
  const waiting = (exp: ExperimentRecord) => exp.status === 'awaiting_review';
  const openWith = (open: Openers['diff'], title: string) =>
    guarded(async (arg?: unknown) => {
      const p = await project();
      const id = p && (await resolveId(p, arg, title, () => true, 'no experiments yet.'));
      return p && id !== undefined ? open(p, id, vscode.ViewColumn.Beside) : undefined;
    });
  const register = (name: string, fn: (...args: never[]) => unknown) => vscode.commands.registerCommand(name, fn as (...args: unknown[]) => unknown);

  return [
    register('ratchet.start', starting('ratchet.start')),
    register('ratchet.stop', forward('ratchet.stop')),
    register('ratchet.pause', forward('ratchet.pause')),
    register('ratchet.resume', forward('ratchet.resume')),
    register('ratchet.proposeOnce', starting('ratchet.proposeOnce')),
    register('ratchet.stopExperiment', guarded(async (arg?: unknown) => {
      const p = await project();
      if (!p) {
        return undefined;
      }
      if (!p.client.advertises(LSP.stopExperiment)) {
        throw new Error('this Ratchet server cannot stop one experiment (no ratchet.stopExperiment): update Ratchet');
      }
      const running = new Set((p.model.status?.running ?? []).map((r) => r.id));
      const id = await resolveId(p, arg, 'Stop which running experiment?', (e) => running.has(e.id), 'no experiment is running.', true);
      return id === undefined ? undefined : send(p, LSP.stopExperiment, id);
    })),
    register('ratchet.accept', onExperiment('ratchet.accept', 'Accept & run which proposal?', waiting, 'no proposal is waiting for review.', true)),
    register('ratchet.reject', onExperiment('ratchet.reject', 'Reject which proposal?', waiting, 'no proposal is waiting for review.', true)),
    register('ratchet.apply', onExperiment('ratchet.apply', 'Apply which experiment to your file?', (e) => !!e.commit && (e.status === 'kept' || e.status === 'discarded'), 'no experiment to apply yet.')),
    register('ratchet.applyBest', forward('ratchet.apply').bind(undefined, 'best')),
    register('ratchet.revert', onExperiment('ratchet.revert', 'Revert which kept experiment?', (e) => e.status === 'kept' && e.source !== 'baseline' && e.id !== 0, 'no kept experiment to revert.', false, true)),
    register('ratchet.note', guarded(async (arg?: unknown) => {
      const p = await project();
      const text = typeof arg === 'string' ? arg : await vscode.window.showInputBox({
        title: 'Ratchet: a note for the agent',
        prompt: 'The agent reads it from its next proposal on (it is kept with the loop).',
        placeHolder: 'e.g. try a smaller learning rate before touching the model width',
      });
      if (!p || !text?.trim()) {
        return undefined;
      }
      await send(p, 'ratchet.note', text.trim());
      void vscode.window.setStatusBarMessage('$(note) Ratchet: note added for the agent', 3000);
      return undefined;
    })),
    register('ratchet.runBuffer', guarded(async (arg?: unknown) => {
      const uri = arg instanceof vscode.Uri ? arg : vscode.window.activeTextEditor?.document.uri;
      if (!uri || uri.scheme !== 'file') {
        throw new Error('open the editable file first: its text, saved or not, runs as an experiment');
      }
      const p = projects.ofFile(uri.fsPath) ?? (await project());
      const description = p && (await vscode.window.showInputBox({
        title: 'Ratchet: run this file as an experiment',
        prompt: 'One line saying what you changed (the file runs as you have it now, saved or not).',
        value: 'an edit made in the editor',
      }));
      // the server reads the text from the document it is kept in sync with
      if (!p || description === undefined) {
        return undefined;
      }
      const options = { uri: uri.toString(), description: description.trim() || 'an edit made in the editor' };
      return send(p, 'ratchet.runBuffer', withApiKey(options, await keyFor(p)));
    })),
    register('ratchet.experiments', forward(LSP.experiments)),
    register('ratchet.status', forward(LSP.status)),
    register('ratchet.openDiff', guarded(async (arg?: unknown) => {
      // a server's code action may carry both texts: {left, right, title, experiment}
      const payload = (arg && typeof arg === 'object' ? arg : {}) as { left?: unknown; right?: unknown; title?: unknown; experiment?: unknown };
      const p = projects.active();
      if (p && typeof payload.left === 'string' && typeof payload.right === 'string') {
        const file = p.model.status?.editable ?? 'file.txt';
        const label = `exp-${String(idFrom(payload.experiment) ?? 'diff')}`;
        const title = typeof payload.title === 'string' ? payload.title : label;
        return parts.docs.showDiff(parts.docs.put(`${label}-before`, file, payload.left), parts.docs.put(label, file, payload.right), title, vscode.ViewColumn.Beside);
      }
      return openWith(openers.diff, 'Open the diff of which experiment?')(arg);
    })),
    register('ratchet.openLog', openWith(openers.log, 'Open the log of which experiment?')),
    register('ratchet.showExperiments', (arg?: unknown) => {
      panel.show();
      const id = idFrom(arg);
      if (typeof id === 'number') {
        panel.select(id);
      }
    }),
    register('ratchet.openReport', guarded(async () => {
      const p = await project();
      return p ? parts.report.open(p) : undefined;
    })),
    register('ratchet.makeReviewBranch', guarded(async () => {
      const p = await project();
      return p ? makeReviewBranch(p) : undefined;
    })),
    register('ratchet.selectProject', guarded(() => projects.pick())),
    register('ratchet.init', guarded(() => initialize(env, projects))),
    register('ratchet.createExample', guarded(() => createExample(env, parts.context.extensionPath))),
    register('ratchet.createEnvironment', guarded(() => createEnvironment(env, projects))),
    register('ratchet.restartServer', guarded(async () => {
      await projects.discover();
      const p = projects.active();
      return p ? p.client.restart('Restart Server') : undefined;
    })),
    register('ratchet.setApiKey', guarded(async (arg?: unknown) => {
      const variable = await chooseVariable(arg, agentOf(), 'Ratchet: set the API key for which provider?');
      return variable ? setApiKey(env.keys, variable) : undefined;
    })),
    register('ratchet.clearApiKey', guarded(async (arg?: unknown) => {
      const variable = await chooseVariable(arg, agentOf(), 'Ratchet: clear the API key of which provider?');
      if (!variable) {
        return undefined;
      }
      await env.keys.clear(variable);
      void vscode.window.setStatusBarMessage(`$(key) Ratchet: the editor no longer keeps a ${providerLabel(variable)} key`, 5000);
      return undefined;
    })),
    register('ratchet.showServerLog', () => env.serverLog.show()),
    register('ratchet.showAgentTrace', () => env.agentTrace.show()),
  ];
}
