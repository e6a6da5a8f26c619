// Pending proposals in the editor: the lines a proposal changes are tinted, the proposed text
// is shown as ghost text after them, and Accept & Run / Reject / Diff lenses sit above each
// change. The user's text is never touched here: accepting runs the proposal in the loop's
// own worktree.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { applyLocated, changesOf, locateChanges, marksFor, parseUnifiedDiff, type Located } from './logic/diff';
import type { ExperimentRecord } from './logic/protocol';
import type { ExperimentsModel } from './model';
import type { ServerManager } from './server';
import type { VirtualDocuments } from './documents';

interface Pending {
  exp: ExperimentRecord;
  file: string; // absolute path of the file it changes
}

export class ProposalDecorations implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly removedType: vscode.TextEditorDecorationType;
  private readonly ghostType: vscode.TextEditorDecorationType;
  private readonly lensEmitter = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.lensEmitter.event;
  private pending: Pending[] = [];
  private readonly disposables: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly server: ServerManager,
    private readonly model: ExperimentsModel,
    private readonly docs: VirtualDocuments,
  ) {
    this.removedType = vscode.window.createTextEditorDecorationType({
      backgroundColor: new vscode.ThemeColor('ratchet.proposalRemovedBackground'),
      isWholeLine: true,
      overviewRulerColor: new vscode.ThemeColor('ratchet.proposalRemovedBackground'),
      overviewRulerLane: vscode.OverviewRulerLane.Left,
    });
    this.ghostType = vscode.window.createTextEditorDecorationType({
      after: {
        color: new vscode.ThemeColor('ratchet.proposalInsertedForeground'),
        fontStyle: 'italic',
        margin: '0 0 0 2em',
      },
    });
    this.disposables.push(
      vscode.languages.registerCodeLensProvider({ scheme: 'file' }, this),
      model.onDidChange(() => this.update()),
      vscode.window.onDidChangeVisibleTextEditors(() => this.redraw()),
      vscode.workspace.onDidChangeTextDocument((event) => {
        if (this.pending.some((p) => p.file === event.document.uri.fsPath)) {
          this.scheduleRedraw();
        }
      }),
      vscode.workspace.onDidChangeConfiguration((event) => {
        if (event.affectsConfiguration('ratchet.inlineProposals')) {
          this.redraw();
        }
      }),
    );
  }

  private enabled(): boolean {
    return vscode.workspace.getConfiguration('ratchet').get<boolean>('inlineProposals', true);
  }

  private root(): string | undefined {
    return this.server.projectFolder()?.uri.fsPath;
  }

  private update(): void {
    const root = this.root();
    const next: Pending[] = [];
    for (const exp of this.model.list) {
      if (exp.status !== 'awaiting_review') {
        continue;
      }
      if (!exp.diff || !root) {
        continue;
      }
      const relative = parseUnifiedDiff(exp.diff).newPath;
      if (!relative) {
        continue;
      }
      next.push({ exp, file: path.resolve(root, relative) });
    }
    const before = JSON.stringify(this.pending.map((p) => [p.exp.id, p.exp.diff]));
    const after = JSON.stringify(next.map((p) => [p.exp.id, p.exp.diff]));
    this.pending = next;
    if (before !== after) {
      this.redraw();
      if (next.length > 0 && vscode.workspace.getConfiguration('ratchet').get<boolean>('notifications.proposals', false)) {
        const exp = next[next.length - 1].exp;
        void vscode.window.showInformationMessage(`Ratchet: exp ${exp.id} waits for review: ${exp.description ?? ''}`, 'Accept & Run', 'Reject').then((pick) => {
          if (pick === 'Accept & Run') {
            void vscode.commands.executeCommand('ratchet.accept', exp.id);
          } else if (pick === 'Reject') {
            void vscode.commands.executeCommand('ratchet.reject', exp.id);
          }
        });
      }
    }
  }

  /** Drops a proposal at once (accepted or rejected): its lenses must not invite a second
   * click while the server's next list is on its way. */
  forget(id: number): void {
    const before = this.pending.length;
    this.pending = this.pending.filter((p) => p.exp.id !== id);
    if (this.pending.length !== before) {
      this.redraw();
    }
  }

  pendingProposals(): ExperimentRecord[] {
    return this.pending.map((p) => p.exp);
  }

  private scheduleRedraw(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => this.redraw(), 150);
  }

  private locate(document: vscode.TextDocument): { pending: Pending; located: Located[]; unplaced: number }[] {
    const out = [];
    for (const pending of this.pending) {
      if (pending.file !== document.uri.fsPath) {
        continue;
      }
      const { located, unplaced } = locateChanges(document.getText(), changesOf(parseUnifiedDiff(pending.exp.diff ?? '')));
      out.push({ pending, located, unplaced: unplaced.length });
    }
    return out;
  }

  redraw(): void {
    this.lensEmitter.fire();
    const enabled = this.enabled();
    for (const editor of vscode.window.visibleTextEditors) {
      const removed: vscode.DecorationOptions[] = [];
      const ghosts: vscode.DecorationOptions[] = [];
      if (enabled) {
        const doc = editor.document;
        for (const { pending, located } of this.locate(doc)) {
          for (const item of located) {
            const marks = marksFor(item, doc.lineCount);
            const hover = new vscode.MarkdownString(`**Ratchet proposal — exp ${pending.exp.id}**: ${pending.exp.description ?? ''}\n\n\`\`\`diff\n${pending.exp.diff ?? ''}\n\`\`\``);
            for (const line of marks.removedLines) {
              removed.push({ range: doc.lineAt(line).range, hoverMessage: hover });
            }
            for (const ghost of marks.ghosts) {
              const end = doc.lineAt(ghost.line).range.end;
              ghosts.push({ range: new vscode.Range(end, end), renderOptions: { after: { contentText: ghost.text } } });
            }
          }
        }
      }
      editor.setDecorations(this.removedType, removed);
      editor.setDecorations(this.ghostType, ghosts);
    }
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    if (!this.enabled()) {
      return [];
    }
    const lenses: vscode.CodeLens[] = [];
    for (const { pending, located, unplaced } of this.locate(document)) {
      const id = pending.exp.id;
      const anchors = located.length > 0 && unplaced === 0 ? located.map((l) => marksFor(l, document.lineCount).anchorLine) : [0];
      const seen = new Set<number>();
      anchors.forEach((line, index) => {
        if (seen.has(line)) {
          return;
        }
        seen.add(line);
        const range = document.lineAt(Math.min(line, document.lineCount - 1)).range;
        const label = index === 0 ? `Ratchet exp ${id}: ${truncate(pending.exp.description ?? '', 70)}` : `exp ${id} (cont.)`;
        lenses.push(
          new vscode.CodeLens(range, { title: `$(lightbulb) ${label}`, command: '' }),
          new vscode.CodeLens(range, { title: '$(check) Accept & Run', command: 'ratchet.accept', arguments: [id], tooltip: `Run experiment ${id} in the loop (your file is not changed)` }),
          new vscode.CodeLens(range, { title: '$(close) Reject', command: 'ratchet.reject', arguments: [id], tooltip: `Drop experiment ${id} without running it` }),
          new vscode.CodeLens(range, { title: '$(diff) Diff', command: 'ratchet.showProposalDiff', arguments: [id], tooltip: 'Open the proposal side by side with your file' }),
        );
      });
    }
    return lenses;
  }

  /** The proposal side by side: your file now on the left, with the proposal on the right. */
  async showDiff(id: number): Promise<void> {
    const pending = this.pending.find((p) => p.exp.id === id);
    const exp = pending?.exp ?? this.model.get(id);
    if (!exp) {
      void vscode.window.showWarningMessage(`Ratchet: experiment ${id} is not a pending proposal.`);
      return;
    }
    if (pending) {
      const document = await vscode.workspace.openTextDocument(vscode.Uri.file(pending.file));
      const { located, unplaced } = locateChanges(document.getText(), changesOf(parseUnifiedDiff(exp.diff ?? '')));
      const proposed = applyLocated(document.getText(), located, unplaced.length);
      if (proposed !== null) {
        const right = this.docs.put(`proposal-${id}`, pending.file, proposed);
        await this.docs.showDiff(document.uri, right, `exp ${id} proposal: ${exp.description ?? ''} (your file ↔ proposed)`);
        return;
      }
    }
    await this.docs.showText(`proposal-${id}`, `exp-${id}.diff`, exp.diff ?? '(no diff)');
  }

  dispose(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.disposables.forEach((d) => d.dispose());
    this.removedType.dispose();
    this.ghostType.dispose();
    this.lensEmitter.dispose();
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
