// Unified diffs (an experiment's `diff`): the file they change. Where a proposal sits in the
// user's text (lenses, ghost text) is the server's job now: every LSP client gets it.

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

/** The editable file's path in a diff's headers (`b/train.py` → `train.py`). */
export function pathOfDiff(diff: string): string {
  const parsed = parseUnifiedDiff(diff);
  return parsed.newPath && parsed.newPath !== '/dev/null' ? parsed.newPath : parsed.oldPath;
}
