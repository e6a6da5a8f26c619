// The experiments table as an ARIA grid, patched row by row: a changed row's cells are
// rewritten in place (the focused row stays focused, a text selection elsewhere survives),
// new rows go in id order (newest first), and one roving tabindex moves with ↑/↓/Home/End.

import type { TableRow } from '../logic/table';

export interface GridHandlers {
  open(id: number): void;
  log(id: number): void;
  action(command: string, id: number): void;
}

const ACTION_KEYS: Record<string, { action: TableRow['actions'][number]; command: string }> = {
  a: { action: 'accept', command: 'ratchet.accept' },
  r: { action: 'reject', command: 'ratchet.reject' },
  s: { action: 'stop', command: 'ratchet.stopExperiment' },
};

export class Grid {
  private readonly rows = new Map<number, HTMLTableRowElement>();
  private readonly data = new Map<number, TableRow>();
  selected: number | null = null;

  constructor(
    private readonly table: HTMLTableElement,
    private readonly tbody: HTMLElement,
    private readonly handlers: GridHandlers,
  ) {
    tbody.addEventListener('keydown', (event) => this.onKey(event));
    tbody.addEventListener('click', (event) => {
      const row = (event.target as HTMLElement).closest('tr');
      if (row?.dataset.id) {
        this.select(Number(row.dataset.id), true);
        handlers.open(Number(row.dataset.id));
      }
    });
  }

  get size(): number {
    return this.rows.size;
  }

  remove(id: number): void {
    this.rows.get(id)?.remove();
    this.rows.delete(id);
    this.data.delete(id);
  }

  upsert(row: TableRow, running: string | undefined): void {
    let tr = this.rows.get(row.id);
    if (!tr) {
      tr = document.createElement('tr');
      tr.setAttribute('role', 'row');
      tr.dataset.id = String(row.id);
      tr.tabIndex = -1;
      for (let i = 0; i < 7; i++) {
        const td = document.createElement('td');
        td.setAttribute('role', 'gridcell');
        tr.appendChild(td);
      }
      this.insertInOrder(tr, row.id);
      this.rows.set(row.id, tr);
    }
    this.data.set(row.id, row);
    tr.dataset.status = row.status;
    tr.className = `tone-${row.tone}${row.isBest ? ' best' : ''}${row.id === this.selected ? ' selected' : ''}`;
    tr.title = [row.reason || row.statusLabel, ...(row.evidence ?? [])].join('\n');
    tr.setAttribute('aria-selected', String(row.id === this.selected));
    const cells: [string, string][] = [
      [String(row.id), 'num'],
      [`${row.symbol} ${row.statusLabel}${row.isBest ? ' ★' : ''}`, 'status'],
      [row.holdout ? `${row.metric} (holdout ${row.holdout})` : row.metric, 'num'],
      [row.delta, `num delta ${row.deltaTone}`],
      [row.description, 'description'],
      [running ?? row.duration, 'num duration'],
      [row.cost, 'num'],
    ];
    cells.forEach(([text, cls], i) => {
      const td = tr.children[i] as HTMLElement;
      if (td.textContent !== text) {
        td.textContent = text;
      }
      td.className = cls;
    });
  }

  /** Only the duration cells of running rows (the clock ticks once a second). */
  tick(running: Record<number, string>): void {
    for (const [id, text] of Object.entries(running)) {
      const cell = this.rows.get(Number(id))?.querySelector('td.duration');
      if (cell && cell.textContent !== text) {
        cell.textContent = text;
      }
    }
  }

  /** Row indexes for screen readers and the roving tabindex, after a patch. */
  finish(): void {
    this.table.setAttribute('aria-rowcount', String(this.rows.size + 1));
    Array.from(this.tbody.children).forEach((tr, i) => tr.setAttribute('aria-rowindex', String(i + 2)));
    const focusable = this.rows.get(this.selected ?? -1) ?? (this.tbody.firstElementChild as HTMLTableRowElement | null);
    for (const tr of this.rows.values()) {
      tr.tabIndex = tr === focusable ? 0 : -1;
    }
  }

  select(id: number, focus: boolean): void {
    const previous = this.selected;
    this.selected = id;
    for (const key of [previous, id]) {
      const tr = key === null ? undefined : this.rows.get(key);
      tr?.classList.toggle('selected', key === id);
      tr?.setAttribute('aria-selected', String(key === id));
    }
    this.finish();
    const tr = this.rows.get(id);
    if (focus && tr) {
      tr.focus();
      tr.scrollIntoView({ block: 'nearest' });
    }
  }

  private insertInOrder(tr: HTMLTableRowElement, id: number): void {
    // newest first: before the first row with a smaller id
    const after = Array.from(this.tbody.children).find((el) => Number((el as HTMLElement).dataset.id) < id);
    this.tbody.insertBefore(tr, after ?? null);
  }

  private onKey(event: KeyboardEvent): void {
    const current = (event.target as HTMLElement).closest('tr');
    if (!current?.dataset.id) {
      return;
    }
    const id = Number(current.dataset.id);
    const order = Array.from(this.tbody.children) as HTMLElement[];
    const index = order.indexOf(current);
    const moves: Record<string, number> = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: order.length - 1, PageDown: index + 10, PageUp: index - 10 };
    if (event.key in moves) {
      event.preventDefault();
      const target = order[Math.max(0, Math.min(order.length - 1, moves[event.key]))];
      this.select(Number(target.dataset.id), true);
      return;
    }
    const key = event.key.toLowerCase();
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      this.select(id, true);
      this.handlers.open(id);
    } else if (key === 'l') {
      this.handlers.log(id);
    } else if (ACTION_KEYS[key] && this.data.get(id)?.actions.includes(ACTION_KEYS[key].action)) {
      this.handlers.action(ACTION_KEYS[key].command, id);
    }
  }
}
