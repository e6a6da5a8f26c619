// Starts `ratchet serve` as a child process and hands the language client its stdio as a
// message transport (the public `ServerOptions` form that returns `MessageTransports`).
//
// Two things happen here rather than in vscode-languageclient:
// - the server's stderr goes to the log channel line by line, at the level the Python logger
//   wrote it with (`ratchet-lsp WARNING ...`), so the channel's log level filters it, and a
//   runaway stream is cut (a flood of one error must not fill the disk);
// - the server's `executeCommandProvider` is read and then dropped from its capabilities:
//   the extension registers the VS Code commands with those names itself, once for every
//   project, and routes them to the right project's server. The client would otherwise
//   register them per client and the second project's client would fail to start.

import { spawn, type ChildProcess } from 'node:child_process';
import type * as vscode from 'vscode';
import {
  AbstractMessageReader,
  type DataCallback,
  type Disposable,
  type Message,
  type MessageReader,
  type MessageTransports,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-languageclient/node';
import { LineLimiter, levelOf } from './logic/serverLog';

export interface SpawnSpec {
  command: string;
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
}

interface InitializeResponse {
  id: number | string;
  result: { capabilities?: { executeCommandProvider?: { commands?: string[] } } };
}

function isInitializeResponse(message: Message, initializeId: number | string | undefined): message is Message & InitializeResponse {
  const m = message as Partial<InitializeResponse>;
  return initializeId !== undefined && m.id === initializeId && !!m.result && typeof m.result === 'object';
}

/** Reads the server's messages; takes the command list out of the initialize response. */
class CommandStrippingReader extends AbstractMessageReader {
  initializeId: number | string | undefined;

  constructor(
    private readonly inner: MessageReader,
    private readonly onCommands: (commands: string[]) => void,
  ) {
    super();
    inner.onError((error) => this.fireError(error));
    inner.onClose(() => this.fireClose());
    inner.onPartialMessage((info) => this.firePartialMessage(info));
  }

  listen(callback: DataCallback): Disposable {
    return this.inner.listen((message) => {
      if (isInitializeResponse(message, this.initializeId)) {
        const capabilities = message.result.capabilities;
        this.onCommands(capabilities?.executeCommandProvider?.commands ?? []);
        if (capabilities) {
          delete capabilities.executeCommandProvider;
        }
      }
      callback(message);
    });
  }
}

/** Spawns the server; `onExit` hears how it ended (for the message after a crash). */
export function serverTransport(
  spec: SpawnSpec,
  log: vscode.LogOutputChannel,
  onCommands: (commands: string[]) => void,
  onProcess: (child: ChildProcess) => void,
): Promise<MessageTransports> {
  const child = spawn(spec.command, spec.args, { cwd: spec.cwd, env: spec.env, stdio: ['pipe', 'pipe', 'pipe'] });
  onProcess(child);
  const limiter = new LineLimiter(400, 10_000);
  let level: ReturnType<typeof levelOf> = 'info';
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const verdict = limiter.take(Date.now());
      if (verdict === 'drop') {
        continue;
      }
      if (verdict === 'cut') {
        log.warn('[client] the server writes too much to stderr: dropping its lines for the next 10 s');
        continue;
      }
      level = levelOf(line, level);
      log[level](line);
    }
  });
  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`could not run ${spec.command}: ${error.message}`)));
    child.once('spawn', () => {
      const reader = new CommandStrippingReader(new StreamMessageReader(child.stdout), onCommands);
      const writer = new StreamMessageWriter(child.stdin);
      const write = writer.write.bind(writer);
      // the initialize request is the first the client sends: its id names the response
      writer.write = (message: Message) => {
        const m = message as { id?: number | string; method?: string };
        if (m.method === 'initialize') {
          reader.initializeId = m.id;
        }
        return write(message);
      };
      resolve({ reader, writer, detached: false });
    });
  });
}
