// The experiments view: a webview panel with a keyboard grid of the experiments and a chart
// of the metric (uPlot, bundled: no CDN). It follows the active project and is sent only the
// rows that changed; it comes back after a reload (a serializer); a row's diff opens as a
// preview beside the panel (one group, one tab reused), its log on demand in the same group.

import * as crypto from 'node:crypto';
import * as vscode from 'vscode';
import { contextKeys } from './logic/contextKeys';
import { formatClock } from './logic/format';
import { statusView } from './logic/status';
import { tableRows } from './logic/table';
import { PostedRows, isEmptyPatch, type RowPatch } from './logic/viewPatch';
import type { Project, Projects } from './projects';

export interface ViewHeader {
  project: string;
  summary: string;
  metric: string;
  goal: string;
  noise: number | null;
  offline: string | null;
  running: Record<number, string>;
  buttons: Record<'start' | 'pause' | 'resume' | 'stop' | 'applyBest', boolean>;
}

export type ToView = { type: 'patch'; patch: RowPatch; header: ViewHeader } | { type: 'theme' } | { type: 'select'; id: number };
type FromView = { type: 'ready' } | { type: 'open' | 'log'; id: number } | { type: 'command'; command: string; id?: number };

export interface Openers {
  diff: (project: Project, id: number, column: vscode.ViewColumn) => Promise<void>;
  log: (project: Project, id: number, column: vscode.ViewColumn) => Promise<void>;
}

/** The commands the view's buttons may run. */
const VIEW_COMMANDS = new Set(['ratchet.start', 'ratchet.pause', 'ratchet.resume', 'ratchet.stop', 'ratchet.applyBest', 'ratchet.accept', 'ratchet.reject', 'ratchet.apply', 'ratchet.revert', 'ratchet.stopExperiment']);

export class ExperimentsPanel implements vscode.Disposable {
  static readonly viewType = 'ratchet.experiments';
  private panel: vscode.WebviewPanel | undefined;
  private readonly posted = new PostedRows();
  private readonly disposables: vscode.Disposable[] = [];
  private projectDisposable: vscode.Disposable | undefined;
  private project: Project | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly extensionUri: vscode.Uri,
    projects: Projects,
    private readonly open: Openers,
  ) {
    this.disposables.push(
      projects.onDidChangeActive((project) => this.follow(project)),
      vscode.window.registerWebviewPanelSerializer(ExperimentsPanel.viewType, {
        deserializeWebviewPanel: (panel) => {
          this.adopt(panel);
          return Promise.resolve();
        },
      }),
      vscode.window.onDidChangeActiveColorTheme(() => void this.panel?.webview.postMessage({ type: 'theme' } satisfies ToView)),
    );
    this.follow(projects.active());
  }

  get visible(): boolean {
    return !!this.panel;
  }

  show(): void {
    if (this.panel) {
      this.panel.reveal(undefined, false);
      return;
    }
    const panel = vscode.window.createWebviewPanel(ExperimentsPanel.viewType, 'Ratchet Experiments', vscode.ViewColumn.Active, this.options());
    this.adopt(panel);
  }

  /** Selects a row (from the tree, a command): the webview scrolls to it and focuses it. */
  select(id: number): void {
    void this.panel?.webview.postMessage({ type: 'select', id } satisfies ToView);
  }

  private options(): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(this.extensionUri, 'out'), vscode.Uri.joinPath(this.extensionUri, 'media')],
    };
  }

  private adopt(panel: vscode.WebviewPanel): void {
    this.panel?.dispose();
    this.panel = panel;
    panel.webview.options = this.options();
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'ratchet.svg');
    panel.webview.html = this.html(panel.webview);
    this.posted.clear();
    panel.webview.onDidReceiveMessage((message: FromView) => this.receive(message), undefined, this.disposables);
    panel.onDidDispose(() => {
      if (this.panel === panel) {
        this.panel = undefined;
      }
    });
  }

  private receive(message: FromView): void {
    const project = this.project;
    const besideColumn = (((this.panel?.viewColumn ?? vscode.ViewColumn.One) as number) + 1) as vscode.ViewColumn;
    if (message.type === 'ready') {
      this.posted.clear();
      this.post();
    } else if ((message.type === 'open' || message.type === 'log') && project && typeof message.id === 'number') {
      const opener = message.type === 'open' ? this.open.diff : this.open.log;
      void opener(project, message.id, besideColumn).catch((error: unknown) => void vscode.window.showErrorMessage(`Ratchet: ${String(error)}`));
    } else if (message.type === 'command' && VIEW_COMMANDS.has(message.command)) {
      void vscode.commands.executeCommand(message.command, ...(typeof message.id === 'number' ? [message.id] : []));
    }
  }

  private follow(project: Project | undefined): void {
    if (project === this.project) {
      return;
    }
    this.projectDisposable?.dispose();
    this.project = project;
    this.posted.clear();
    if (project) {
      const subscriptions = [project.model.onDidChange(() => this.schedule()), project.client.onOffline(() => this.schedule())];
      this.projectDisposable = vscode.Disposable.from(...subscriptions);
    }
    this.schedule();
  }

  /** Coalesces a burst of changes into one message (at most ~7 a second). */
  private schedule(): void {
    if (!this.panel || this.timer) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.post();
    }, 150);
  }

  header(project: Project | undefined): ViewHeader {
    const status = project?.model.status;
    const offline = project ? project.client.offline?.reason : 'no folder here has a ratchet.toml';
    const keys = contextKeys({ status, offline, activeFile: undefined, projects: 1, restricted: !vscode.workspace.isTrusted });
    const running: Record<number, string> = {};
    for (const run of status?.running ?? []) {
      running[run.id] = run.budget ? `${formatClock(run.elapsed)}/${formatClock(run.budget)}` : formatClock(run.elapsed);
    }
    const loopOn = keys['ratchet.loopRunning'] === true;
    return {
      project: project?.client.name ?? '',
      summary: statusView(status, { offline }).text.replace(/\$\([^)]*\)\s*/g, ''),
      metric: status?.metric ?? 'metric',
      goal: status?.goal ?? 'minimize',
      noise: typeof status?.noise === 'number' ? status.noise : null,
      offline: offline ?? (status?.offline ? 'the server cannot reach its loop' : null),
      running,
      buttons: {
        start: keys['ratchet.serverRunning'] === true && !loopOn && keys['ratchet.restricted'] !== true,
        pause: keys['ratchet.loopState'] === 'running' || keys['ratchet.loopState'] === 'review',
        resume: keys['ratchet.loopState'] === 'paused',
        stop: loopOn && keys['ratchet.serverRunning'] === true,
        applyBest: keys['ratchet.hasBest'] === true,
      },
    };
  }

  private post(): void {
    if (!this.panel) {
      return;
    }
    const project = this.project;
    const { goal, metric } = project?.model.status ?? {};
    const patch = this.posted.patch(project ? tableRows(project.model.list(), goal, metric) : []);
    const header = this.header(project);
    const key = JSON.stringify(header);
    if (isEmptyPatch(patch) && key === this.lastHeader) {
      return;
    }
    this.lastHeader = key;
    void this.panel.webview.postMessage({ type: 'patch', patch, header } satisfies ToView);
  }

  private lastHeader = '';

  private html(webview: vscode.Webview): string {
    const nonce = crypto.randomBytes(16).toString('base64');
    const script = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'out', 'webview.js')).toString();
    const style = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, 'out', 'webview.css')).toString();
    const button = (command: string, label: string, title: string) => `<button data-command="${command}" title="${title}" disabled>${label}</button>`;
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
<div id="banner" class="banner" role="alert" hidden></div>
<header>
  <h1>Experiments <span id="project" class="project"></span></h1>
  <span id="summary" class="summary" aria-live="polite"></span>
  <span class="actions">
    ${button('ratchet.start', 'Start', 'Start the loop')}
    ${button('ratchet.pause', 'Pause', 'Pause: running experiments finish, no new one starts')}
    ${button('ratchet.resume', 'Resume', 'Resume the loop')}
    ${button('ratchet.stop', 'Stop', 'Stop the loop')}
    ${button('ratchet.applyBest', 'Apply Best', 'Apply the best experiment to your file')}
  </span>
</header>
<section id="chart" class="chart" aria-label="metric over experiments"></section>
<div id="readout" class="readout" aria-live="polite"></div>
<div id="legend" class="legend">
  <span><i class="dot all"></i>experiment</span>
  <span><i class="dot kept"></i>kept</span>
  <span><i class="line best"></i>running best</span>
  <span id="legend-noise" hidden><i class="band"></i>noise band (± run-to-run noise)</span>
  <span id="legend-control" hidden><i class="dot control"></i>the best, measured beside (control)</span>
</div>
<p class="hint">↑/↓ move · Enter opens the diff · L the log · A accept · R reject · S stops a running one</p>
<table id="experiments" role="grid" aria-label="experiments" aria-rowcount="1">
  <thead><tr role="row" aria-rowindex="1">
    <th role="columnheader" class="num">#</th><th role="columnheader">status</th><th role="columnheader" class="num" id="metric-head">metric</th><th role="columnheader" class="num" title="against the best when it started">Δ best</th>
    <th role="columnheader">description</th><th role="columnheader" class="num">duration</th><th role="columnheader" class="num">cost</th>
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
    this.projectDisposable?.dispose();
    this.panel?.dispose();
    vscode.Disposable.from(...this.disposables).dispose();
  }
}
