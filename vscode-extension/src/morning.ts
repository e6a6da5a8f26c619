// The morning after a loop: "Open Report" (the server writes the report; it is shown here in
// a webview that runs no script) and "Make Review Branch…" (the keeps picked, one commit each
// or squashed, made into a branch by the server; the user's branch never moves).

import * as vscode from 'vscode';
import { LSP } from './logic/protocol';
import { finalizeArgs, keepItems, madeFrom, reportPage } from './logic/review';
import type { Project } from './projects';

export class ReportPanel implements vscode.Disposable {
  static readonly viewType = 'ratchet.report';
  private panel: vscode.WebviewPanel | undefined;

  async open(project: Project): Promise<void> {
    const written = (await project.client.request(LSP.report, { show: false })) as { path?: unknown } | undefined;
    if (typeof written?.path !== 'string') {
      throw new Error('the server wrote no report: update Ratchet');
    }
    const html = new TextDecoder().decode(await vscode.workspace.fs.readFile(vscode.Uri.file(written.path)));
    if (this.panel) {
      this.panel.reveal(undefined, false);
    } else {
      const panel = vscode.window.createWebviewPanel(ReportPanel.viewType, 'Ratchet Report', vscode.ViewColumn.Active, { enableScripts: false, localResourceRoots: [] });
      panel.onDidDispose(() => {
        if (this.panel === panel) {
          this.panel = undefined;
        }
      });
      this.panel = panel;
    }
    this.panel.title = `Ratchet Report · ${project.model.status?.tag ?? project.client.name}`;
    this.panel.webview.html = reportPage(html);
  }

  dispose(): void {
    this.panel?.dispose();
  }
}

const SHAPES = [
  { label: 'One commit per keep', description: 'each with its metric and evidence in the message', squash: false },
  { label: 'Squashed', description: 'one commit listing every keep', squash: true },
];

export async function makeReviewBranch(project: Project): Promise<void> {
  const items = keepItems(project.model.list(), project.model.status?.metric ?? 'metric');
  if (items.length === 0) {
    void vscode.window.showInformationMessage('Ratchet: no keep to carry over yet (only the baseline).');
    return;
  }
  const picked = await vscode.window.showQuickPick(items, {
    canPickMany: true,
    title: 'Ratchet: the keeps to carry onto a new review branch',
    placeHolder: 'all are picked; leave out the ones you do not want (the rest keep their order)',
    matchOnDescription: true,
  });
  const shape = picked && (await vscode.window.showQuickPick(SHAPES, { title: 'Ratchet: the review branch as…' }));
  if (!picked || !shape) {
    return;
  }
  const args = finalizeArgs(items.map((item) => item.id), picked.map((item) => item.id), shape.squash);
  if (!args) {
    void vscode.window.showInformationMessage('Ratchet: no keep picked, so nothing to carry over.');
    return;
  }
  const made = madeFrom(
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Ratchet: making the review branch…' }, () => project.client.request(LSP.finalize, args)),
  );
  const copy = 'Copy Branch Name';
  const pick = await vscode.window.showInformationMessage(`Ratchet: ${made.message}`, ...(made.branch ? [copy] : []));
  if (pick === copy && made.branch) {
    await vscode.env.clipboard.writeText(made.branch);
  }
}
