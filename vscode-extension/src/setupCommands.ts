// The commands that make a project or an environment: Initialize, Create Example Project,
// Create a Private Python Environment.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Environment } from './environment';
import { BOOTSTRAP, shellQuote } from './logic/interpreter';
import type { Projects } from './projects';

function run(cmd: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: 60_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr || error.message).trim()}`)) : resolve(String(stdout))));
  });
}

/** The folder to initialize: the active editor's workspace folder, else the first. */
function targetFolder(): vscode.WorkspaceFolder | undefined {
  const active = vscode.window.activeTextEditor?.document.uri;
  return (active && vscode.workspace.getWorkspaceFolder(active)) ?? vscode.workspace.workspaceFolders?.[0];
}

export async function initialize(env: Environment, projects: Projects): Promise<void> {
  const folder = targetFolder();
  if (!folder) {
    throw new Error('open a folder first');
  }
  const config = path.join(folder.uri.fsPath, 'ratchet.toml');
  if (fs.existsSync(config)) {
    const pick = await vscode.window.showWarningMessage('Ratchet: ratchet.toml already exists.', 'Open It', 'Replace It');
    if (pick === 'Open It') {
      await vscode.window.showTextDocument(vscode.Uri.file(config));
    }
    if (pick !== 'Replace It') {
      return;
    }
  }
  const choice = await env.resolveInterpreter(folder);
  const args = ['-c', BOOTSTRAP, env.bundled, '-C', folder.uri.fsPath, 'init', ...(fs.existsSync(config) ? ['--force'] : [])];
  const result = await new Promise<{ ok: boolean; out: string }>((resolve) => {
    execFile(choice.path, args, { cwd: folder.uri.fsPath, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ ok: !error, out: `${stdout}${stderr}`.trim() || (error?.message ?? '') });
    });
  });
  env.serverLog.info(`[client] ${choice.path} … init\n${result.out}`);
  if (!result.ok) {
    const probe = await env.probe(choice.path);
    throw new Error(probe.ok ? `ratchet init failed: ${result.out.split('\n').pop()}` : `${choice.path} cannot run Ratchet (${probe.detail}): run “Ratchet: Restart Server” for the fix`);
  }
  for (const name of ['program.md', 'ratchet.toml']) {
    const file = path.join(folder.uri.fsPath, name);
    if (fs.existsSync(file)) {
      await vscode.window.showTextDocument(vscode.Uri.file(file), { preview: false });
    }
  }
  void vscode.window.showInformationMessage(`Ratchet: ${result.out.split('\n')[0] || 'wrote ratchet.toml and program.md'}. Check them, commit, then Start Loop.`);
  await projects.discover();
}

/** Copies the bundled example into a new folder under a chosen one, as a committed git
 * repository, and offers to open it. */
export async function createExample(env: Environment, extensionPath: string): Promise<string | undefined> {
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
  let target = path.join(picked[0].fsPath, 'ratchet-example');
  for (let n = 2; fs.existsSync(target); n++) {
    target = path.join(picked[0].fsPath, `ratchet-example-${n}`);
  }
  const source = path.join(extensionPath, 'example');
  fs.mkdirSync(target, { recursive: true });
  const choice = await env.resolveInterpreter(undefined);
  for (const name of fs.readdirSync(source)) {
    const text = fs.readFileSync(path.join(source, name), 'utf8');
    fs.writeFileSync(path.join(target, name === 'gitignore' ? '.gitignore' : name), text.replace(/\{python\}/g, shellQuote(choice.path).replace(/"/g, '\\"')));
  }
  await run('git', ['init', '-q'], target);
  await run('git', ['checkout', '-q', '-b', 'main'], target).catch(() => undefined);
  await run('git', ['add', '-A'], target);
  const identity = await run('git', ['config', 'user.email'], target).then(() => [], () => ['-c', 'user.name=Ratchet', '-c', 'user.email=ratchet@localhost']);
  await run('git', [...identity, 'commit', '-q', '-m', 'The Ratchet example: a tiny loop'], target);
  const open = await vscode.window.showInformationMessage(`Ratchet: created the example in ${target}.`, 'Open Folder');
  if (open === 'Open Folder') {
    await vscode.commands.executeCommand('vscode.openFolder', vscode.Uri.file(target), { forceNewWindow: false });
  }
  return target;
}

/** Makes Ratchet's private venv from an interpreter the user confirms, then restarts the
 * servers that use no explicit `ratchet.python`. */
export async function createEnvironment(env: Environment, projects: Projects): Promise<void> {
  const suggested = (await env.resolveInterpreter(projects.active()?.client.workspaceFolder)).path;
  const base = await vscode.window.showInputBox({
    title: 'Ratchet: create a private Python environment',
    prompt: 'The Python (3.11 or newer) to create it from; Ratchet installs its packages there and uses it whenever “ratchet.python” is empty.',
    value: suggested.includes('/venv/bin/python') ? 'python3' : suggested,
  });
  if (!base?.trim()) {
    return;
  }
  const python = await env.createPrivateEnvironment(base.trim());
  void vscode.window.showInformationMessage(`Ratchet: created its private environment (${python}); restarting the servers with it.`);
  for (const project of projects.all()) {
    await project.client.restart('the new private environment');
  }
}
