// The server's stderr, line by line: the level each line was logged at, and a limit on how
// many lines a burst may bring. Pure: no vscode here.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** `ratchet-lsp WARNING ...` (the server's logging format) and tracebacks: a record's
 * continuation lines (a traceback's frames) keep the level of the record they belong to. */
export function levelOf(line: string, previous: Level): Level {
  const match = /^ratchet-lsp (DEBUG|INFO|WARNING|ERROR|CRITICAL)\b/.exec(line);
  if (match) {
    return ({ DEBUG: 'debug', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'error' } as const)[match[1] as 'DEBUG'];
  }
  if (line.startsWith('Traceback (most recent call last)')) {
    return 'error';
  }
  return previous;
}

/** The Python logger level for the channel's level (`RATCHET_LSP_LOG`). One step down:
 * pygls logs every JSON-RPC message at INFO, which is trace-level detail for a user. */
export function pythonLevel(level: Level | 'off'): string {
  return { off: 'CRITICAL', error: 'ERROR', warn: 'WARNING', info: 'WARNING', debug: 'INFO', trace: 'DEBUG' }[level];
}

/** Lets `max` lines through per window; the first line over says `cut`, later ones `drop`
 * until the window ends. */
export class LineLimiter {
  private windowStart = -Infinity;
  private count = 0;

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  take(now: number): 'pass' | 'cut' | 'drop' {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.count = 0;
    }
    this.count++;
    if (this.count <= this.max) {
      return 'pass';
    }
    return this.count === this.max + 1 ? 'cut' : 'drop';
  }
}
