// The experiments view: a webview panel with the table of experiments and a chart of the
// metric over them (uPlot, bundled: no CDN). Live: it redraws whenever the list changes.

import * as crypto from 'node:crypto';
import * as vscode from 'vscode';
import { formatClock } from './logic/format';
import { statusView } from './logic/status';
import { chartData, tableRows } from './logic/table';
import type { ExperimentsModel } from './model';

export interface ViewMessage {
  type: 'data';
  rows: ReturnType<typeof tableRows>;
  chart: ReturnType<typeof chartData>;
  summary: string;
  metric: string;
  goal: string;
  running: Record<number, string>;
  selected: number | null;
}

export class ExperimentsPanel implements vscode.Disposable {
  static readonly viewType = 'ratchet.experiments';
  private panel: vscode.WebviewPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private selected: number | null = null;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly model: ExperimentsModel,
    private readonly open: (id: number, panelColumn: vscode.ViewColumn) => Promise<void>,
  ) {
    this.disposables.push(model.onDidChange(() => this.schedule()));
  }

  get visible(): boolean {
    return !!this.panel;
  }

  show(): void {
    if (this.panel) {
      this.panel.reveal(undefined, false);
      void this.model.refresh();
      return;
    }
    const panel = vscode.window.createWebviewPanel(ExperimentsPanel.viewType, 'Ratchet Experiments', vscode.ViewColumn.Active, {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'out'), vscode.Uri.joinPath(this.extensionUri, 'media')],
    });
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'ratchet.svg');
    panel.webview.html = this.html(panel.webview);
    panel.webview.onDidReceiveMessage(
      (message: { type: string; id?: number }) => {
        if (message.type === 'ready') {
          this.post();
        } else if (message.type === 'open' && typeof message.id === 'number') {
          this.selected = message.id;
          void this.open(message.id, this.panel?.viewColumn ?? vscode.ViewColumn.One);
        } else if (message.type === 'command' && typeof (message as { command?: string }).command === 'string') {
          const command = (message as unknown as { command: string }).command;
          if (command.startsWith('ratchet.')) {
            void vscode.commands.executeCommand(command);
          }
        }
      },
      undefined,
      this.disposables,
    );
    panel.onDidDispose(() => {
      this.panel = undefined;
    });
    this.panel = panel;
    void this.model.refresh();
  }

  private schedule(): void {
    if (!this.panel || this.timer) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.post();
    }, 150);
  }

  message(): ViewMessage {
    const status = this.model.status;
    const metric = status?.metric ?? 'metric';
    const goal = status?.goal ?? 'minimize';
    const running: Record<number, string> = {};
    for (const run of status?.running ?? []) {
      running[run.id] = run.budget ? `${formatClock(run.elapsed)}/${formatClock(run.budget)}` : formatClock(run.elapsed);
    }
    return {
      type: 'data',
      rows: tableRows(this.model.list, goal),
      chart: chartData(this.model.list, metric, goal),
      summary: statusView(status).text.replace(/\$\([^)]*\)\s*/g, ''),
      metric,
      goal,
      running,
      selected: this.selected,
    };
  }

  private post(): void {
    void this.panel?.webview.postMessage(this.message());
  }

  private html(webview: vscode.Webview): string {
    const nonce = crypto.randomBytes(16).toString('base64');
    const script = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'out', 'webview.js'));
    const style = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'out', 'webview.css'));
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${webview.cspSource} data:; style-src ${webview.cspSource} 'unsafe-inline'; script-src 'nonce-${nonce}'; font-src ${webview.cspSource};">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style}">
<title>Ratchet Experiments</title>
</head>
<body>
<header>
  <h1>Experiments</h1>
  <span id="summary" class="summary"></span>
  <span class="actions">
    <button data-command="ratchet.start" title="Start Loop">Start</button>
    <button data-command="ratchet.pause" title="Pause">Pause</button>
    <button data-command="ratchet.resume" title="Resume">Resume</button>
    <button data-command="ratchet.stop" title="Stop">Stop</button>
    <button data-command="ratchet.applyBest" title="Apply the best experiment to your file">Apply Best</button>
  </span>
</header>
<section id="chart" class="chart" aria-label="metric over experiments"></section>
<div id="legend" class="legend">
  <span><i class="dot all"></i>experiment</span>
  <span><i class="dot kept"></i>kept</span>
  <span><i class="line best"></i>running best</span>
</div>
<table id="experiments">
  <thead><tr>
    <th class="num">#</th><th>status</th><th class="num" id="metric-head">metric</th><th class="num" title="against the best when it started">Δ best</th>
    <th>description</th><th class="num">duration</th><th class="num">cost</th>
  </tr></thead>
  <tbody></tbody>
</table>
<p id="empty" class="empty">No experiments yet: run <b>Ratchet: Start Loop</b>.</p>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
  }

  dispose(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.panel?.dispose();
    this.disposables.forEach((d) => d.dispose());
  }
}
