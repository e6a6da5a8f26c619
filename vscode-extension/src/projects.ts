// The projects in the window: every folder with a ratchet.toml (a workspace folder, one above
// it, or one nested anywhere below, outside node_modules/.ratchet/.git), one language client
// each, and the active one (the active editor's, else the one picked with Select Project).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ProjectClient } from './client';
import type { Environment } from './environment';
import { ExperimentsModel } from './model';

const EXCLUDE = '**/{node_modules,.ratchet,.git}/**';
const PICKED_KEY = 'ratchet.pickedProject';

export interface Project {
  client: ProjectClient;
  model: ExperimentsModel;
}

/** ratchet.toml in the folder or one above it (a subfolder of a project was opened). */
function projectAbove(folder: string): string | undefined {
  for (let dir = folder; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'ratchet.toml'))) {
      return dir;
    }
    if (path.dirname(dir) === dir) {
      return undefined;
    }
  }
}

/** The deepest project root that holds `file` (nested projects: the inner one wins). */
export function ownerOf(roots: string[], file: string): string | undefined {
  let best: string | undefined;
  for (const root of roots) {
    const relative = path.relative(root, file);
    if (!relative.startsWith('..') && !path.isAbsolute(relative) && (!best || root.length > best.length)) {
      best = root;
    }
  }
  return best;
}

export class Projects implements vscode.Disposable {
  private readonly byRoot = new Map<string, Project>();
  private picked: string | undefined;
  private readonly activeEmitter = new vscode.EventEmitter<Project | undefined>();
  /** The active project changed (or the set of projects did). */
  readonly onDidChangeActive = this.activeEmitter.event;
  private lastActive: Project | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly env: Environment,
    private readonly state: vscode.Memento,
  ) {
    this.picked = state.get<string>(PICKED_KEY);
    this.disposables.push(vscode.window.onDidChangeActiveTextEditor(() => this.fireIfActiveChanged()));
  }

  all(): Project[] {
    return [...this.byRoot.values()];
  }

  /** Finds the projects again; starts clients for new ones, stops those gone (their loops go on). */
  async discover(): Promise<void> {
    const roots = new Set<string>();
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      if (folder.uri.scheme !== 'file') {
        continue;
      }
      const above = projectAbove(folder.uri.fsPath);
      if (above) {
        roots.add(above);
      }
    }
    for (const uri of await vscode.workspace.findFiles('**/ratchet.toml', EXCLUDE, 100)) {
      if (uri.scheme === 'file') {
        roots.add(path.dirname(uri.fsPath));
      }
    }
    for (const [root, project] of this.byRoot) {
      if (!roots.has(root)) {
        this.byRoot.delete(root);
        project.model.dispose();
        void project.client.dispose();
      }
    }
    for (const root of roots) {
      if (!this.byRoot.has(root)) {
        const folder = this.folderOf(root);
        if (!folder) {
          continue;
        }
        const client = new ProjectClient(root, folder, this.env);
        this.byRoot.set(root, { client, model: new ExperimentsModel(client) });
        void client.start();
      }
    }
    this.fireIfActiveChanged(true);
  }

  /** The workspace folder a project belongs to (the one holding it, or the one inside it). */
  private folderOf(root: string): vscode.WorkspaceFolder | undefined {
    const folders = vscode.workspace.workspaceFolders ?? [];
    return vscode.workspace.getWorkspaceFolder(vscode.Uri.file(root)) ?? folders.find((f) => ownerOf([root], f.uri.fsPath) === root);
  }

  /** The project of a file (the deepest that holds it). */
  ofFile(file: string): Project | undefined {
    const root = ownerOf([...this.byRoot.keys()], file);
    return root ? this.byRoot.get(root) : undefined;
  }

  active(): Project | undefined {
    const editor = vscode.window.activeTextEditor?.document.uri;
    const fromEditor = editor?.scheme === 'file' ? this.ofFile(editor.fsPath) : undefined;
    return fromEditor ?? (this.picked ? this.byRoot.get(this.picked) : undefined) ?? this.all()[0];
  }

  private fireIfActiveChanged(always = false): void {
    const now = this.active();
    if (always || now !== this.lastActive) {
      this.lastActive = now;
      this.activeEmitter.fire(now);
    }
  }

  async pick(): Promise<Project | undefined> {
    const items = this.all().map((p) => ({
      label: p.client.name,
      description: p.client.root,
      detail: p.client.offline ? `offline: ${p.client.offline.reason}` : `${p.client.lastStatus?.state ?? 'starting'} · ${p.client.lastStatus?.metric ?? ''} best ${p.client.lastStatus?.best ?? '—'}`,
      project: p,
    }));
    if (items.length === 0) {
      void vscode.window.showInformationMessage('Ratchet: no folder here has a ratchet.toml.');
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(items, { title: 'Ratchet: select the project', placeHolder: 'the project the status bar, the views and the commands follow' });
    if (pick) {
      this.picked = pick.project.client.root;
      await this.state.update(PICKED_KEY, this.picked);
      this.fireIfActiveChanged(true);
    }
    return pick?.project;
  }

  dispose(): void {
    void this.close();
  }

  /** Stops the clients and waits for them (deactivate). They detach from their loops: the
   * loops keep running in their own processes. */
  async close(): Promise<void> {
    const projects = this.all();
    this.byRoot.clear();
    vscode.Disposable.from(...this.disposables).dispose();
    this.disposables.length = 0;
    for (const project of projects) {
      project.model.dispose();
    }
    await Promise.all(projects.map((p) => p.client.dispose()));
  }
}
