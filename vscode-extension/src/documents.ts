// Read-only virtual documents (scheme `ratchet-view`) for diff views: a proposal, an
// experiment against its base, the texts a server's `ratchet.openDiff` carries.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { pathOfDiff } from './logic/diff';
import type { ExperimentRecord } from './logic/protocol';

export const SCHEME = 'ratchet-view';

export class VirtualDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly texts = new Map<string, string>();
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;
  private counter = 0;
  private readonly registration: vscode.Disposable;

  constructor() {
    this.registration = vscode.workspace.registerTextDocumentContentProvider(SCHEME, this);
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }

  /** A document named like `fileName` (its language follows the name) holding `text`. */
  put(label: string, fileName: string, text: string): vscode.Uri {
    const safeLabel = label.replace(/[^A-Za-z0-9_.-]+/g, '-');
    const uri = vscode.Uri.from({ scheme: SCHEME, path: `/${safeLabel}/${path.basename(fileName) || 'file'}`, query: String(++this.counter) });
    this.texts.set(uri.toString(), text);
    if (this.texts.size > 200) {
      const oldest = this.texts.keys().next().value;
      if (oldest !== undefined) {
        this.texts.delete(oldest);
      }
    }
    this.emitter.fire(uri);
    return uri;
  }

  async showDiff(left: vscode.Uri, right: vscode.Uri, title: string, column = vscode.ViewColumn.Active, preserveFocus = false): Promise<void> {
    await vscode.commands.executeCommand('vscode.diff', left, right, title, { viewColumn: column, preview: true, preserveFocus });
  }

  async showText(label: string, fileName: string, text: string, column = vscode.ViewColumn.Active, preserveFocus = false): Promise<void> {
    const uri = this.put(label, fileName, text);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { viewColumn: column, preview: true, preserveFocus });
  }

  dispose(): void {
    this.registration.dispose();
    this.emitter.dispose();
  }
}

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout) => resolve(error ? undefined : String(stdout)));
  });
}

/** The texts of the editable file before and after an experiment, from its commits. */
export async function experimentTexts(root: string, exp: ExperimentRecord, editable: string | undefined): Promise<{ file: string; before: string; after: string } | undefined> {
  const file = editable || (exp.diff ? pathOfDiff(exp.diff) : '');
  if (!file || !exp.commit) {
    return undefined;
  }
  const base = exp.base_commit || `${exp.commit}^`;
  const [before, after] = await Promise.all([git(root, ['show', `${base}:${file}`]), git(root, ['show', `${exp.commit}:${file}`])]);
  if (before === undefined || after === undefined) {
    return undefined;
  }
  return { file, before, after };
}

/** Opens an experiment's diff (side by side when its commits are there, else the unified
 * diff) as a preview tab in `column`: selecting another experiment replaces it. */
export async function openExperiment(docs: VirtualDocuments, root: string, exp: ExperimentRecord, editable: string | undefined, column: vscode.ViewColumn, preserveFocus = true): Promise<void> {
  const title = `exp ${exp.id} (${exp.status}): ${exp.description ?? ''}`;
  const texts = await experimentTexts(root, exp, editable);
  if (texts) {
    const left = docs.put(`exp-${exp.id}-base`, texts.file, texts.before);
    const right = docs.put(`exp-${exp.id}`, texts.file, texts.after);
    await docs.showDiff(left, right, title, column, preserveFocus);
  } else if (exp.diff) {
    await docs.showText(`exp-${exp.id}`, `exp-${exp.id}.diff`, exp.diff, column, preserveFocus);
  } else {
    await docs.showText(`exp-${exp.id}`, `exp-${exp.id}.txt`, `${title}\n\n${exp.reason ?? ''}\n(no diff)\n`, column, preserveFocus);
  }
}

/** An experiment's log (on demand), as a preview tab in `column`. */
export async function openLog(docs: VirtualDocuments, root: string, exp: ExperimentRecord, column: vscode.ViewColumn, preserveFocus = true): Promise<void> {
  const candidates = [exp.log_path, path.join(root, '.ratchet', 'logs', `${exp.id}.log`)].filter((p): p is string => !!p);
  for (const candidate of candidates) {
    const full = path.isAbsolute(candidate) ? candidate : path.join(root, candidate);
    if (fs.existsSync(full)) {
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(full));
      await vscode.window.showTextDocument(doc, { viewColumn: column, preview: true, preserveFocus });
      return;
    }
  }
  const tail = typeof exp.log_tail === 'string' && exp.log_tail ? exp.log_tail : '(no log: this experiment did not run)';
  await docs.showText(`exp-${exp.id}-log`, `exp-${exp.id}.log`, `${exp.reason ?? ''}\n\n${tail}\n`, column, preserveFocus);
}
