// The experiments in the sidebar (the Ratchet activity-bar view): newest first, with inline
// actions that follow each experiment's state (open diff, apply, revert, stop, accept,
// reject) and a badge on the view while a proposal waits for review.

import * as vscode from 'vscode';
import { formatMetric } from './logic/format';
import type { ExperimentRecord } from './logic/protocol';
import { contextValue, evidenceLines, statusLook } from './logic/table';
import type { Project, Projects } from './projects';

/** How many experiments the tree lists (the view lists them all). */
const LIMIT = 200;

const ICONS: Record<string, [string, string | undefined]> = {
  good: ['pass', 'charts.green'],
  bad: ['error', 'charts.red'],
  active: ['sync~spin', 'charts.blue'],
  waiting: ['eye', 'charts.yellow'],
  neutral: ['circle-outline', undefined],
};

export class ExperimentsTree implements vscode.TreeDataProvider<ExperimentRecord>, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<ExperimentRecord | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: vscode.TreeView<ExperimentRecord>;
  private project: Project | undefined;
  private projectDisposable: vscode.Disposable | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(projects: Projects) {
    this.view = vscode.window.createTreeView('ratchet.experimentsTree', { treeDataProvider: this, showCollapseAll: false });
    this.disposables.push(this.view, projects.onDidChangeActive((project) => this.follow(project)));
    this.follow(projects.active());
  }

  private follow(project: Project | undefined): void {
    this.projectDisposable?.dispose();
    this.project = project;
    this.projectDisposable = project?.model.onDidChange((changed) => {
      if (changed.size > 0) {
        this.schedule();
      }
      this.updateBadge();
    });
    this.schedule();
    this.updateBadge();
  }

  private schedule(): void {
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.emitter.fire(undefined);
      }, 200);
    }
  }

  private updateBadge(): void {
    const waiting = this.project?.model.status?.awaitingReview ?? [];
    this.view.badge = waiting.length ? { value: waiting.length, tooltip: `${waiting.length} proposal${waiting.length > 1 ? 's' : ''} waiting for review` } : undefined;
    const status = this.project?.model.status;
    this.view.description = this.project ? `${this.project.client.name}${status?.state ? ` · ${status.state}` : ''}` : undefined;
  }

  getChildren(element?: ExperimentRecord): ExperimentRecord[] {
    if (element || !this.project) {
      return [];
    }
    return this.project.model.list().reverse().slice(0, LIMIT);
  }

  getTreeItem(exp: ExperimentRecord): vscode.TreeItem {
    const look = statusLook(exp.status);
    const metric = this.project?.model.status?.metric ?? 'metric';
    const item = new vscode.TreeItem(`${exp.id} ${exp.description ?? ''}`, vscode.TreeItemCollapsibleState.None);
    item.id = String(exp.id);
    item.description = `${look.label}${typeof exp.metric === 'number' ? ` · ${metric} ${formatMetric(exp.metric)}` : ''}`;
    const tooltip = new vscode.MarkdownString(`**exp ${exp.id}** — ${look.label}\n\n`);
    for (const line of [exp.description ?? '', exp.reason ?? '', ...evidenceLines(exp, metric)].filter(Boolean)) {
      tooltip.appendText(`${line}\n\n`); // case ids and descriptions as written, never as markup
    }
    item.tooltip = tooltip;
    const [icon, color] = ICONS[look.tone] ?? ICONS.neutral;
    item.iconPath = new vscode.ThemeIcon(icon, color ? new vscode.ThemeColor(color) : undefined);
    item.contextValue = contextValue(exp);
    item.command = { command: 'ratchet.showExperiments', title: 'Show in the experiments view', arguments: [exp.id] };
    item.accessibilityInformation = { label: `experiment ${exp.id}, ${look.label}, ${exp.description ?? ''}` };
    return item;
  }

  dispose(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.projectDisposable?.dispose();
    vscode.Disposable.from(...this.disposables).dispose();
    this.emitter.dispose();
  }
}
