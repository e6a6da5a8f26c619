// The agent's API key as the editor keeps it (VS Code's SecretStorage): which variable it is
// for, where the key the next loop gets comes from, how the status says so, and redaction of
// a kept key from anything the extension writes to an output channel. Pure: tested alone.

/** What the server says of the project's agent (`agent` in `ratchet/status`). */
export interface AgentInfo {
  /** `[agent] kind`; null: the default (anthropic when a key is set, else the offline agent). */
  kind?: string | null;
  /** `[agent] api_key_env`: the variable the agent reads its key from. */
  apiKeyEnv?: string;
  /** The agent proposes with an API key (anthropic, claude-code, command, the default). */
  usesKey?: boolean;
  /** The server's environment (which a loop it starts inherits) has that variable. */
  keyInEnvironment?: boolean;
}

export type KeySource = 'editor' | 'environment' | 'none';

export interface Provider {
  label: string;
  variable: string;
  placeholder: string;
}

/** The providers whose keys the editor keeps; any other variable is kept under its own name. */
export const PROVIDERS: readonly Provider[] = [
  { label: 'Anthropic', variable: 'ANTHROPIC_API_KEY', placeholder: 'sk-ant-…' },
  { label: 'OpenAI', variable: 'OPENAI_API_KEY', placeholder: 'sk-…' },
];

export const DEFAULT_VARIABLE = 'ANTHROPIC_API_KEY';
const SECRET_PREFIX = 'ratchet.apiKey.';

/** The SecretStorage entry of a variable's key (one per variable, so per provider). */
export function secretName(variable: string): string {
  return `${SECRET_PREFIX}${variable}`;
}

export function variableOfSecret(name: string): string | undefined {
  return name.startsWith(SECRET_PREFIX) ? name.slice(SECRET_PREFIX.length) : undefined;
}

/** `Anthropic`, `OpenAI`, or the variable itself. */
export function providerLabel(variable: string): string {
  return PROVIDERS.find((p) => p.variable === variable)?.label ?? variable;
}

/** The variable the project's agent reads its key from (the default before the server says). */
export function variableOf(agent: AgentInfo | null | undefined): string {
  const name = agent?.apiKeyEnv?.trim();
  return name ? name : DEFAULT_VARIABLE;
}

/** The key a loop started from this editor gets: the editor's own wins over the environment's
 * (the user set it here on purpose); a loop started from a terminal keeps its environment. */
export function keySource(inEditor: boolean, inEnvironment: boolean): KeySource {
  return inEditor ? 'editor' : inEnvironment ? 'environment' : 'none';
}

/** Why a typed key cannot be one, or undefined when it can (the input box's validation). */
export function keyProblem(value: string): string | undefined {
  const key = value.trim();
  if (!key) {
    return 'Paste the key (it is kept in VS Code’s secret storage, never in a file or a log).';
  }
  if (key.length > 4096 || /\s/.test(key) || /[^\x21-\x7e]/.test(key)) {
    return 'An API key is one word of printable characters.';
  }
  return undefined;
}

export interface KeyView {
  visible: boolean;
  text: string;
  /** Markdown. */
  tooltip: string;
  missing: boolean;
}

/** The status bar item that says where the key comes from; a click sets it. Hidden where no
 * key is read: an untrusted folder, an agent that needs none, no project. */
export function keyView(agent: AgentInfo | null | undefined, source: KeySource, trusted: boolean): KeyView {
  if (!trusted || !agent || agent.usesKey === false) {
    return { visible: false, text: '', tooltip: '', missing: false };
  }
  const variable = variableOf(agent);
  const provider = providerLabel(variable);
  const offline = agent.kind === null || agent.kind === undefined;
  const lines = [`**Ratchet** — the agent's ${provider === variable ? '' : `${provider} `}API key (\`${variable}\`)`, ''];
  let text: string;
  if (source === 'editor') {
    text = `$(key) ${provider} key: editor`;
    lines.push("From the editor's secret storage: a loop started from this window gets it, and only that loop's process (never an experiment, a log or a trace).");
  } else if (source === 'environment') {
    text = `$(key) ${provider} key: environment`;
    lines.push(`From the environment VS Code was started with (\`${variable}\`).`);
  } else {
    text = `$(warning) no ${provider} key`;
    if (offline) {
      lines.push('None: the loop uses the offline agent until a key is set.');
    } else if (agent.kind === 'anthropic') {
      lines.push('None: the anthropic agent cannot propose without one.');
    } else {
      lines.push(`None: the ${agent.kind} agent's CLI uses its own login, if it has one.`);
    }
  }
  lines.push('', 'Click to set the key the editor keeps (“Ratchet: Set API Key…”); “Ratchet: Clear API Key” forgets it.');
  return { visible: true, text, tooltip: lines.join('\n'), missing: source === 'none' && agent.kind === 'anthropic' };
}

/** Arguments for a command that may start the loop, with the key the editor keeps added to
 * its options object (a bare experiment number becomes `{id}`). */
export function withApiKey(arg: unknown, key: string | undefined): unknown {
  if (!key) {
    return arg;
  }
  if (typeof arg === 'number') {
    return { id: arg, apiKey: key };
  }
  if (arg && typeof arg === 'object' && !Array.isArray(arg)) {
    return { ...(arg as Record<string, unknown>), apiKey: key };
  }
  return { apiKey: key };
}

/** `text` with every kept key replaced (an LSP trace of a start request carries one). */
export function redact(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 8 && out.includes(secret)) {
      out = out.split(secret).join('[REDACTED]');
    }
  }
  return out;
}
