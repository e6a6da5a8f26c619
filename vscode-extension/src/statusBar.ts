// The status bar item: state, running experiment, best metric, kept/total.

import * as vscode from 'vscode';
import type { LoopStatus } from './logic/protocol';
import { statusView, type Look } from './logic/status';

const BACKGROUNDS: Partial<Record<Look, string>> = {
  review: 'statusBarItem.warningBackground',
  error: 'statusBarItem.errorBackground',
  offline: 'statusBarItem.errorBackground',
};

const FOREGROUNDS: Partial<Record<Look, string>> = {
  paused: 'statusBarItem.prominentForeground',
  idle: undefined,
};

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private status: LoopStatus | undefined;
  private receivedAt = Date.now();
  private offline: string | undefined = 'the language server is starting';
  private timer: NodeJS.Timeout | undefined;

  constructor() {
    this.item = vscode.window.createStatusBarItem('ratchet.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'Ratchet';
    this.item.command = 'ratchet.showExperiments';
    // the loop's state in words for screen readers, the text for the eye
    this.render();
    this.item.show();
  }

  private project: string | undefined;

  /** `project`: named when the window has several. */
  setStatus(status: LoopStatus, project?: string): void {
    this.project = project;
    this.status = status;
    this.receivedAt = Date.now();
    this.offline = undefined;
    this.render();
  }

  setOffline(reason: string | undefined, project?: string): void {
    this.project = project;
    this.offline = reason;
    this.render();
  }

  private render(): void {
    const since = (Date.now() - this.receivedAt) / 1000;
    const view = statusView(this.status, { sinceUpdate: since, offline: this.offline });
    this.item.text = this.project ? `${view.text} · ${this.project}` : view.text;
    const tooltip = new vscode.MarkdownString(view.tooltip, true);
    tooltip.isTrusted = false;
    this.item.tooltip = tooltip;
    const background = BACKGROUNDS[view.look];
    this.item.backgroundColor = background ? new vscode.ThemeColor(background) : undefined;
    const foreground = FOREGROUNDS[view.look];
    this.item.color = foreground ? new vscode.ThemeColor(foreground) : undefined;
    this.item.accessibilityInformation = { label: `Ratchet (${view.look}): ${view.text.replace(/\$\([^)]*\)\s*/g, '')}`, role: 'button' };
    const ticking = view.look === 'running' && (this.status?.running?.length ?? 0) > 0;
    if (ticking && !this.timer) {
      this.timer = setInterval(() => this.render(), 1000);
    } else if (!ticking && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  dispose(): void {
    if (this.timer) {
      clearInterval(this.timer);
    }
    this.item.dispose();
  }
}
