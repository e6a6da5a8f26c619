// Unified diffs (an experiment's `diff`) → changes located in the user's current text →
// what the editor draws: lines to mark as removed, the proposed text as ghost text, and where
// the Accept & Run / Reject lenses go. Pure: no vscode here.

export interface DiffLine {
  kind: ' ' | '-' | '+';
  text: string;
}

export interface Hunk {
  oldStart: number; // 1-based, as in the header
  oldLines: number;
  newStart: number;
  newLines: number;
  lines: DiffLine[];
}

export interface ParsedDiff {
  oldPath: string;
  newPath: string;
  hunks: Hunk[];
}

const HUNK = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/;

export function parseUnifiedDiff(diff: string): ParsedDiff {
  const result: ParsedDiff = { oldPath: '', newPath: '', hunks: [] };
  let hunk: Hunk | null = null;
  for (const raw of diff.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (hunk === null || (!line.startsWith(' ') && !line.startsWith('-') && !line.startsWith('+') && !line.startsWith('\\'))) {
      if (line.startsWith('--- ')) {
        result.oldPath = stripPrefix(line.slice(4));
        hunk = null;
        continue;
      }
      if (line.startsWith('+++ ')) {
        result.newPath = stripPrefix(line.slice(4));
        hunk = null;
        continue;
      }
    }
    const header = HUNK.exec(line);
    if (header) {
      hunk = {
        oldStart: Number(header[1]),
        oldLines: header[2] === undefined ? 1 : Number(header[2]),
        newStart: Number(header[3]),
        newLines: header[4] === undefined ? 1 : Number(header[4]),
        lines: [],
      };
      result.hunks.push(hunk);
      continue;
    }
    if (!hunk) {
      continue;
    }
    if (line.startsWith('\\')) {
      continue; // "\ No newline at end of file"
    }
    const kind = line[0];
    if (kind === ' ' || kind === '-' || kind === '+') {
      hunk.lines.push({ kind, text: line.slice(1) });
    } else if (line === '') {
      // difflib writes an empty context line as ' ', but a trailing '' is just the end
      continue;
    }
  }
  return result;
}

function stripPrefix(path: string): string {
  const clean = path.split('\t')[0].trim();
  return clean.replace(/^[ab]\//, '');
}

/** One contiguous change inside a hunk: lines removed and lines added at one place. */
export interface Change {
  before: string[]; // context lines just before (up to 3)
  removed: string[];
  added: string[];
  after: string[]; // context lines just after (up to 3)
  /** 0-based line in the old text where `removed` starts (or where `added` goes). */
  oldLine: number;
}

export function changesOf(parsed: ParsedDiff): Change[] {
  const changes: Change[] = [];
  for (const hunk of parsed.hunks) {
    let oldLine = hunk.oldStart - 1;
    if (hunk.oldLines === 0) {
      oldLine = hunk.oldStart; // an insertion after line oldStart
    }
    let i = 0;
    const lines = hunk.lines;
    while (i < lines.length) {
      if (lines[i].kind === ' ') {
        oldLine++;
        i++;
        continue;
      }
      const start = i;
      const removed: string[] = [];
      const added: string[] = [];
      while (i < lines.length && lines[i].kind !== ' ') {
        (lines[i].kind === '-' ? removed : added).push(lines[i].text);
        i++;
      }
      const before = lines.slice(Math.max(0, start - 3), start).filter((l) => l.kind === ' ').map((l) => l.text);
      const after: string[] = [];
      for (let j = i; j < lines.length && lines[j].kind === ' ' && after.length < 3; j++) {
        after.push(lines[j].text);
      }
      changes.push({ before, removed, added, after, oldLine });
      oldLine += removed.length;
    }
  }
  return changes;
}

/** A change placed in the user's current text. */
export interface Located {
  change: Change;
  /** 0-based first line of `removed` in the document; for a pure insertion, the line the
   * added lines go before (may equal the line count: at the end). */
  line: number;
}

function matchesAt(doc: string[], at: number, lines: string[]): boolean {
  if (at < 0 || at + lines.length > doc.length) {
    return false;
  }
  for (let k = 0; k < lines.length; k++) {
    if (doc[at + k].trimEnd() !== lines[k].trimEnd()) {
      return false;
    }
  }
  return true;
}

/** Where a sequence occurs, the occurrence closest to `near` first; -1 if nowhere. */
function findNear(doc: string[], lines: string[], near: number): number {
  if (lines.length === 0) {
    return -1;
  }
  let found = -1;
  let distance = Infinity;
  for (let at = 0; at + lines.length <= doc.length; at++) {
    if (matchesAt(doc, at, lines) && Math.abs(at - near) < distance) {
      found = at;
      distance = Math.abs(at - near);
    }
  }
  return found;
}

/**
 * Finds each change in the user's text by content (the user's file may differ from the text
 * the proposal was made from: other kept experiments, the user's own edits). A change whose
 * lines cannot be found is left out of `located` and listed in `unplaced`.
 */
export function locateChanges(docText: string, changes: Change[]): { located: Located[]; unplaced: Change[] } {
  const doc = docText.split(/\r?\n/);
  const located: Located[] = [];
  const unplaced: Change[] = [];
  let shift = 0; // how far the document has drifted from the diff's old text so far
  for (const change of changes) {
    const near = change.oldLine + shift;
    let line = -1;
    const full = [...change.before, ...change.removed, ...change.after];
    const at = findNear(doc, full, near - change.before.length);
    if (at >= 0) {
      line = at + change.before.length;
    } else if (change.removed.length > 0) {
      line = findNear(doc, change.removed, near);
    } else {
      // a pure insertion: anchor on the context before it, else after it
      const b = findNear(doc, change.before, near - change.before.length);
      if (b >= 0) {
        line = b + change.before.length;
      } else {
        const a = findNear(doc, change.after, near);
        line = a;
      }
      if (line < 0 && change.before.length === 0 && change.after.length === 0) {
        line = Math.min(Math.max(near, 0), doc.length);
      }
    }
    if (line < 0) {
      unplaced.push(change);
      continue;
    }
    shift = line - change.oldLine;
    located.push({ change, line });
  }
  return { located, unplaced };
}

/** What to draw for one located change. */
export interface Marks {
  /** The first line of the change: the CodeLens goes above it. */
  anchorLine: number;
  /** Lines the proposal replaces or removes: struck through / tinted. */
  removedLines: number[];
  /** Ghost text at the end of a line (`→ new text`); several per line never happen. */
  ghosts: { line: number; text: string }[];
  /** Lines only added, shown as ghost text after the line above them. */
  inserted: number;
}

export const GHOST_MAX = 120;

function clip(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > GHOST_MAX ? `${trimmed.slice(0, GHOST_MAX - 1)}…` : trimmed;
}

export function marksFor(located: Located, lineCount: number): Marks {
  const { change, line } = located;
  const removedLines = change.removed.map((_, k) => line + k).filter((l) => l < lineCount);
  const ghosts: Marks['ghosts'] = [];
  if (change.removed.length > 0) {
    // removed line k shows added line k; added lines beyond the removed ones trail the last
    const last = change.removed.length - 1;
    for (let k = 0; k <= last; k++) {
      if (k >= change.added.length) {
        ghosts.push({ line: line + k, text: '✗ removed' });
        continue;
      }
      const extra = k === last ? change.added.length - change.removed.length : 0;
      const more = extra > 0 ? `  (+${extra} more line${extra === 1 ? '' : 's'})` : '';
      ghosts.push({ line: line + k, text: `→ ${clip(change.added[k])}${more}` });
    }
    return { anchorLine: line, removedLines, ghosts, inserted: 0 };
  }
  // pure insertion: ghost text at the end of the line above (or of the first line)
  const host = Math.max(0, Math.min(line - 1, lineCount - 1));
  const more = change.added.length > 1 ? `  (+${change.added.length - 1} more line${change.added.length - 1 === 1 ? '' : 's'})` : '';
  ghosts.push({ line: host, text: `+ ${clip(change.added[0] ?? '')}${more}` });
  return { anchorLine: Math.max(0, Math.min(line, lineCount - 1)), removedLines: [], ghosts, inserted: change.added.length };
}

/**
 * The user's text with the located changes applied: the right side of a diff view against
 * the file as the user has it. Null when any change could not be placed.
 */
export function applyLocated(docText: string, located: Located[], unplacedCount: number): string | null {
  if (unplacedCount > 0) {
    return null;
  }
  const eol = docText.includes('\r\n') ? '\r\n' : '\n';
  const doc = docText.split(/\r?\n/);
  const ordered = [...located].sort((a, b) => b.line - a.line);
  for (const { change, line } of ordered) {
    doc.splice(line, change.removed.length, ...change.added);
  }
  return doc.join(eol);
}

/** The editable file's path in a diff's headers (`b/train.py` → `train.py`). */
export function pathOfDiff(diff: string): string {
  const parsed = parseUnifiedDiff(diff);
  return parsed.newPath && parsed.newPath !== '/dev/null' ? parsed.newPath : parsed.oldPath;
}
