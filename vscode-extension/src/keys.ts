// The agents' API keys the editor keeps, in VS Code's SecretStorage (one per variable, so one
// per provider), and the status bar item that says where the key a loop started here gets
// comes from. A key is read only for a trusted folder; it leaves the extension only as the
// `apiKey` of a command that starts the loop, and every output channel the language client
// traces to has it redacted.

import * as vscode from 'vscode';
import {
  DEFAULT_VARIABLE,
  keyProblem,
  keySource,
  keyView,
  PROVIDERS,
  providerLabel,
  redact,
  secretName,
  variableOf,
  variableOfSecret,
  type AgentInfo,
} from './logic/apiKey';

export class ApiKeys implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<string>();
  /** A kept key was set or cleared (the variable's name). */
  readonly onDidChange = this.emitter.event;
  /** The keys this window has read or stored: redacted from the channels. */
  private readonly seen = new Set<string>();
  private readonly subscription: vscode.Disposable;

  constructor(private readonly secrets: vscode.SecretStorage) {
    this.subscription = secrets.onDidChange((event) => {
      const variable = variableOfSecret(event.key);
      if (variable) {
        this.emitter.fire(variable);
      }
    });
  }

  /** The key kept for `variable`; never read for an untrusted folder (Restricted Mode). */
  async get(variable: string): Promise<string | undefined> {
    if (!vscode.workspace.isTrusted) {
      return undefined;
    }
    const key = (await this.secrets.get(secretName(variable)))?.trim();
    if (key) {
      this.seen.add(key);
    }
    return key || undefined;
  }

  async store(variable: string, key: string): Promise<void> {
    this.seen.add(key);
    await this.secrets.store(secretName(variable), key);
  }

  async clear(variable: string): Promise<void> {
    await this.secrets.delete(secretName(variable));
  }

  redact(text: string): string {
    return redact(text, this.seen);
  }

  /** An output channel that writes to `inner` with every kept key redacted: the language
   * client's trace (a verbose one prints each request's params, a start's key included). */
  redacting(inner: vscode.OutputChannel): vscode.OutputChannel {
    return {
      name: inner.name,
      append: (value: string) => inner.append(this.redact(value)),
      appendLine: (value: string) => inner.appendLine(this.redact(value)),
      replace: (value: string) => inner.replace(this.redact(value)),
      clear: () => inner.clear(),
      show: (columnOrFocus?: vscode.ViewColumn | boolean, preserveFocus?: boolean) =>
        typeof columnOrFocus === 'boolean' ? inner.show(columnOrFocus) : inner.show(preserveFocus),
      hide: () => inner.hide(),
      dispose: () => undefined, // the inner channel is the extension's, disposed with it
    };
  }

  dispose(): void {
    this.subscription.dispose();
    this.emitter.dispose();
  }
}

/** The variable a Set/Clear command is for: the one named, the project's, else one picked. */
export async function chooseVariable(arg: unknown, agent: AgentInfo | null | undefined, title: string): Promise<string | undefined> {
  if (typeof arg === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) {
    return arg;
  }
  if (agent?.apiKeyEnv) {
    return variableOf(agent);
  }
  const items = PROVIDERS.map((p) => ({ label: p.label, description: p.variable, variable: p.variable }));
  const pick = await vscode.window.showQuickPick(items, { title, placeHolder: 'the provider whose key the editor keeps' });
  return pick?.variable;
}

export async function setApiKey(keys: ApiKeys, variable: string): Promise<boolean> {
  const provider = providerLabel(variable);
  const placeholder = PROVIDERS.find((p) => p.variable === variable)?.placeholder ?? '';
  const value = await vscode.window.showInputBox({
    title: `Ratchet: ${provider === variable ? variable : `${provider} API key`}`,
    prompt: `Kept in VS Code's secret storage. A loop started from this editor gets it as ${variable}; experiments, logs and traces never do.`,
    placeHolder: placeholder,
    password: true,
    ignoreFocusOut: true,
    validateInput: keyProblem,
  });
  if (value === undefined) {
    return false;
  }
  await keys.store(variable, value.trim());
  void vscode.window.setStatusBarMessage(`$(key) Ratchet: the ${provider} key is kept by the editor; the next loop started here uses it`, 5000);
  return true;
}

/** The status bar item: where the key comes from (editor, environment, none); a click sets it. */
export class KeyStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private agent: AgentInfo | null | undefined;
  private generation = 0;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly keys: ApiKeys) {
    this.item = vscode.window.createStatusBarItem('ratchet.apiKey', vscode.StatusBarAlignment.Left, 49);
    this.item.name = 'Ratchet API Key';
    this.item.command = 'ratchet.setApiKey';
    this.subscription = keys.onDidChange(() => void this.refresh());
  }

  /** The active project's agent (undefined: none, or its server is not running). */
  update(agent: AgentInfo | null | undefined): Promise<void> {
    this.agent = agent;
    return this.refresh();
  }

  /** Again, after a key was set or cleared, or the folder became trusted. */
  async refresh(): Promise<void> {
    const generation = ++this.generation;
    const trusted = vscode.workspace.isTrusted;
    const current = this.agent;
    const variable = variableOf(current ?? { apiKeyEnv: DEFAULT_VARIABLE });
    const inEditor = trusted && !!current && current.usesKey !== false ? !!(await this.keys.get(variable)) : false;
    if (generation !== this.generation) {
      return; // a newer update ran meanwhile
    }
    const view = keyView(current, keySource(inEditor, !!current?.keyInEnvironment), trusted);
    if (!view.visible) {
      this.item.hide();
      return;
    }
    this.item.text = view.text;
    const tooltip = new vscode.MarkdownString(view.tooltip, true);
    tooltip.isTrusted = false;
    this.item.tooltip = tooltip;
    this.item.backgroundColor = view.missing ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.accessibilityInformation = { label: `Ratchet: ${view.text.replace(/\$\([^)]*\)\s*/g, '')}; activate to set the key`, role: 'button' };
    this.item.show();
  }

  dispose(): void {
    this.subscription.dispose();
    this.item.dispose();
  }
}
