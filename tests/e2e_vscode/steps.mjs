// The end-to-end test's steps (run.mjs lists them): each drives the workbench and waits, with
// a deadline, for what a user would see.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PYTHON, log, poll, processesMatching } from './harness.mjs';
import { assert, clearToasts, editorText, experimentsView, finishedCount, inlayHints, openFile, pickItem, runCommand, statusText, toast, waitStatus } from './workbench.mjs';

const SERVER_FACE = process.env.RATCHET_E2E_SERVER_FACE || 'auto';
const LOOP_PROCESS = process.env.RATCHET_E2E_LOOP_PROCESS === '1';
const SERVER_LOG = 'Ratchet Server.log';

const serverPids = (project) => processesMatching(new RegExp(`-C ${project.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} serve`)).map((p) => p.pid);
const awaiting = (text) => /exp (\d+)(?:, exp \d+)* awaiting review/.exec(text);
const git = (cwd, ...args) => execFileSync('git', args, { cwd, encoding: 'utf8' });

async function focusEditor(page) {
  await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().click();
}

/** 1-2: the workbench, Start Loop, the baseline. */
async function start(c) {
  const { page, server, shots } = c;
  await waitStatus(page, 'a running server', /Ratchet \((idle|running|review|paused)\)/, 90_000);
  const serverLog = server.readLog(SERVER_LOG);
  assert(serverLog.includes(`in ${PYTHON} (from setting)`), `the server did not start from the ratchet.python Machine setting (${PYTHON}):\n${serverLog}`);
  c.face = SERVER_FACE === 'auto' ? /codeLens: yes, inlayHint: yes/.test(serverLog) : SERVER_FACE === '1';
  log(`server lenses and inlay hints: ${c.face ? 'asserted' : 'not asserted (the server advertises none yet)'}; loop process steps: ${LOOP_PROCESS ? 'on' : 'off (RATCHET_E2E_LOOP_PROCESS)'}`);
  await openFile(page, 'train.py');
  await page.locator('.activitybar .action-label[aria-label^="Ratchet"]').first().waitFor({ state: 'visible', timeout: 15_000 });
  await shots.take(page, 'workbench', 'train.py open, the Ratchet status bar item idle, the ratchet icon in the activity bar');
  await runCommand(page, 'Ratchet: Start Loop', () => shots.take(page, 'command-palette', 'the palette filtered to "Ratchet: Start Loop"'));
  const finished = await waitStatus(page, 'the baseline finished', (t) => (finishedCount(t)?.total ?? 0) >= 1, 90_000);
  c.pid = serverPids(c.project)[0];
  log(`baseline done: "${finished}" (server pid ${c.pid})`);
}

/** Waits for the next proposal; asserts the server's lenses and ghost text when it has them. */
async function nextProposal(c, after) {
  const { page } = c;
  const text = await waitStatus(page, `a proposal after exp ${after} awaiting review`, (t) => {
    const m = awaiting(t);
    return m && Number(m[1]) > after;
  }, 90_000);
  const id = Number(awaiting(text)[1]);
  if (c.face) {
    const lens = page.locator('.monaco-editor .codelens-decoration a', { hasText: 'Accept' }).first();
    await poll(`exp ${id}'s Accept lens from the server`, async () => (await lens.count()) > 0 && lens.isVisible(), 30_000);
    const hints = await poll(`exp ${id}'s proposed text as inlay hints`, async () => {
      const found = await inlayHints(page);
      return found.length > 0 ? found : null;
    }, 30_000);
    log(`exp ${id}: lens and ${hints.length} inlay hint(s): ${JSON.stringify(hints.slice(0, 3))}`);
  }
  return { id, text };
}

/** 3-4: a proposal rejected with the keyboard, the next accepted with the keyboard. */
async function review(c) {
  const { page, shots, results } = c;
  const first = await nextProposal(c, 0);
  const badge = page.locator('.activitybar .action-item:has(.action-label[aria-label^="Ratchet"]) .badge-content').first();
  await poll('the badge on the Ratchet activity-bar icon', async () => (await badge.count()) > 0 && (await badge.innerText()).trim() === '1', 15_000);
  await shots.take(page, 'proposal-waiting', `exp ${first.id} awaiting review ("${first.text}"), badge 1 on the activity-bar icon${c.face ? ', lenses and ghost text from the server' : ''}`);
  // the sidebar tree: the waiting proposal with its inline actions
  await runCommand(page, 'Ratchet: Focus on Experiments View');
  const treeRow = page.locator('.monaco-list-row[aria-label^="experiment ' + first.id + ',"]').first();
  await treeRow.waitFor({ state: 'visible', timeout: 15_000 });
  await treeRow.hover();
  await poll(`exp ${first.id}'s inline Accept and Reject in the tree`, async () => (await treeRow.locator('.action-label[aria-label^="Accept Proposal"]').count()) > 0 && (await treeRow.locator('.action-label[aria-label^="Reject Proposal"]').count()) > 0, 10_000);
  await shots.take(page, 'tree-proposal', `the Experiments tree in the Ratchet sidebar: exp ${first.id} awaiting review with inline Accept / Reject / Open Diff on hover, the badge on the icon`);
  await runCommand(page, 'View: Show Explorer');
  await openFile(page, 'train.py');
  await focusEditor(page);
  await page.keyboard.press('Control+Shift+Backspace');
  const second = await nextProposal(c, first.id);
  results.rejected = first.id;
  log(`rejected exp ${first.id} with Ctrl+Shift+Backspace; exp ${second.id} waits now`);
  const before = finishedCount(await statusText(page))?.total ?? 0;
  await focusEditor(page);
  await page.keyboard.press('Control+Shift+Enter');
  const done = await waitStatus(page, `exp ${second.id} accepted, run and finished`, (t) => (finishedCount(t)?.total ?? 0) > before && !t.includes(`exp ${second.id} awaiting`), 90_000);
  results.accepted = second.id;
  await shots.take(page, 'accepted-finished', `exp ${second.id} accepted with Ctrl+Shift+Enter and finished: "${done}"`);
}

/** 5: the view patches rows live, keeps focus, opens one diff beside it, the log on demand. */
async function view(c) {
  const { page, shots, results } = c;
  const id = results.accepted;
  await runCommand(page, 'Ratchet: Show Experiments');
  const frame = experimentsView(page);
  const row = frame.locator(`#experiments tbody tr[data-id="${id}"]`);
  await poll(`exp ${id}'s row with a result`, async () => ['kept', 'discarded'].includes(await row.getAttribute('data-status', { timeout: 1000 })), 30_000);
  const rejected = await frame.locator(`#experiments tbody tr[data-id="${results.rejected}"]`).getAttribute('data-status');
  assert(rejected === 'rejected', `exp ${results.rejected} shows "${rejected}" in the view, not rejected`);
  // a keyboard action in the grid (R: reject) changes rows live: the focused row stays focused
  const waitingId = Number(awaiting(await statusText(page))?.[1]);
  assert(waitingId > id, `no proposal waits after exp ${id}: "${await statusText(page)}"`);
  const body = frame.locator('body');
  const waitingRow = frame.locator(`#experiments tbody tr[data-id="${waitingId}"]`);
  await waitingRow.click();
  const patches = Number(await body.getAttribute('data-patches'));
  await page.keyboard.press('r');
  await poll(`exp ${waitingId} rejected from the grid, patched in place`, async () => (await waitingRow.getAttribute('data-status')) === 'rejected' && Number(await body.getAttribute('data-patches')) > patches, 30_000);
  const focused = await body.evaluate(() => document.activeElement?.closest('tr')?.dataset.id ?? null);
  assert(focused === String(waitingId), `the focused row after a live patch is ${focused}, not exp ${waitingId}: the view was rebuilt`);
  const upserted = Number(await body.getAttribute('data-last-upsert'));
  const rows = Number(await body.getAttribute('data-rows'));
  results.rejectedFromGrid = waitingId;
  await row.click();
  await poll(`exp ${id}'s diff beside the view`, async () => (await page.locator('.monaco-diff-editor').count()) > 0 && (await page.locator('.tabs-container .tab', { hasText: `exp ${id}` }).count()) > 0, 30_000);
  await shots.take(page, 'experiments-view', `the view: ${rows} rows; exp ${waitingId} rejected with R in the grid kept the focus through a live patch of ${upserted} row(s); exp ${id}'s diff beside`);
  await frame.locator('tr[data-id="0"]').click();
  await row.click();
  await page.keyboard.press('l');
  await poll(`exp ${id}'s log in the same group`, async () => (await page.locator('.tabs-container .tab', { hasText: `${id}.log` }).count()) > 0, 15_000);
  const groups = await page.locator('.editor-group-container').count();
  const tabs = await page.locator('.tabs-container .tab', { hasText: /exp[- ]\d+|\d+\.log/ }).count();
  assert(groups <= 2, `${groups} editor groups after opening diffs and a log (expected the view's and one beside it)`);
  assert(tabs <= 2, `${tabs} experiment tabs after three rows and a log: previews should replace each other`);
  const chart = frame.locator('#chart');
  Object.assign(results, { rows, lastPatch: upserted, groups, experimentTabs: tabs, points: Number(await chart.getAttribute('data-points')), keptPoints: Number(await chart.getAttribute('data-kept')) });
  await frame.locator('#chart .u-over').first().hover();
  await poll('the chart readout under the cursor', async () => /^exp \d+/.test(await frame.locator('#readout').innerText()), 10_000);
  await shots.take(page, 'view-log-and-readout', `exp ${id}'s log replaced its diff beside the view (${groups} groups, ${tabs} experiment tab(s)); the chart's readout: "${await frame.locator('#readout').innerText()}"`);
}

function writeWorkspaceSettings(project, settings) {
  const file = path.join(project, '.vscode', 'settings.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const current = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
  fs.writeFileSync(file, JSON.stringify({ ...current, ...settings }, null, 2));
}

/** 5b: a theme change: the view's chart is drawn again in the new theme's colours. */
async function themeChange(c) {
  const { page, shots, results } = c;
  const frame = experimentsView(page);
  const chart = frame.locator('#chart');
  const builds = Number(await chart.getAttribute('data-builds'));
  const dark = await chart.getAttribute('data-best-color');
  writeWorkspaceSettings(c.project, { 'workbench.colorTheme': 'Default Light Modern' });
  await poll('the chart redrawn for the light theme', async () => Number(await chart.getAttribute('data-builds')) > builds && (await chart.getAttribute('data-best-color')) !== dark, 30_000);
  results.theme = { dark, light: await chart.getAttribute('data-best-color') };
  await shots.take(page, 'light-theme', `the theme switched to Default Light Modern: the chart redrawn with the light theme's colours (${dark} → ${results.theme.light})`);
}

/** 6: ratchet.reviewGate changed mid-loop: no restart, the loop goes on. */
async function settingMidLoop(c) {
  const { page, server, shots, results } = c;
  // the workspace's settings file, as a person editing .vscode/settings.json would
  writeWorkspaceSettings(c.project, { 'ratchet.reviewGate': 'auto' });
  await poll('the review gate sent to the server live', async () => server.readLog(SERVER_LOG).includes('review gate auto: sent to the server live'), 30_000);
  const pids = serverPids(c.project);
  assert(pids.includes(c.pid), `the server was restarted by a setting change (pid ${c.pid} gone: ${pids})`);
  const text = await statusText(page);
  assert(!/Ratchet \((idle|offline)\)/.test(text), `the loop stopped after the setting change: "${text}"`);
  results.settingMidLoop = { serverPid: c.pid, status: text };
  if (LOOP_PROCESS) {
    // the proposal already waiting keeps waiting; accepted, the ones after it run unattended
    const before = finishedCount(text)?.total ?? 0;
    await runCommand(page, 'Ratchet: Accept Proposal & Run');
    await waitStatus(page, 'experiments running unattended (review gate auto, live)', (t) => (finishedCount(t)?.total ?? 0) >= before + 2 && !awaiting(t), 60_000);
  }
  await shots.take(page, 'setting-mid-loop', `ratchet.reviewGate set to auto mid-loop: same server (pid ${c.pid}), the loop still on: "${text}"`);
}

/** 7-8: a hand edit run from the buffer, Apply Best into a buffer with unsaved edits, Revert. */
async function applyAndRevert(c) {
  const { page, shots, results, project } = c;
  // the loop waits on a proposal (review gate): stop it, so the edit runs at once on its own
  await runCommand(page, 'Ratchet: Stop Loop');
  await waitStatus(page, 'the loop stopped', /Ratchet \(idle\)/, 30_000);
  await openFile(page, 'train.py');
  const problemsBefore = await problemsLabel(page);
  // score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100: this edit scores 0, nothing beats it
  for (const [line, text] of [['LR = 0.5', 'LR = 0.3'], ['WIDTH = 8', 'WIDTH = 12']]) {
    await page.locator('.editor-group-container.active .view-line', { hasText: line }).first().click();
    await page.keyboard.press('End');
    await page.keyboard.press('Shift+Home');
    await page.keyboard.type(text);
  }
  const before = finishedCount(await statusText(page))?.total ?? 0;
  await runCommand(page, 'Ratchet: Run Current File as Experiment');
  await page.locator('.quick-input-widget', { hasText: 'One line saying what you changed' }).waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Enter');
  const kept = await waitStatus(page, 'the hand edit kept', (t) => (finishedCount(t)?.total ?? 0) > before && /score 0 /.test(t), 60_000);
  log(`the buffer's LR = 0.3, WIDTH = 12 ran and was kept: "${kept}"`);
  if (c.face) {
    await keepWithoutSquiggle(c, problemsBefore);
  }
  await runCommand(page, 'File: Revert File');
  await poll('train.py back to its saved text', async () => (await editorText(page)).includes('LR = 0.5'), 10_000);
  await page.keyboard.press('Control+End');
  await page.keyboard.type('\n# my own note');
  await poll('train.py dirty', async () => (await page.locator('.tabs-container .tab.dirty', { hasText: 'train.py' }).count()) > 0, 10_000);
  await runCommand(page, 'Ratchet: Apply Best');
  const applied = await poll('the best applied into the unsaved buffer, the note kept', async () => {
    const text = await editorText(page);
    return text.includes('LR = 0.3') && text.includes('WIDTH = 12') && text.includes('# my own note') ? text : null;
  }, 30_000);
  const branch = git(project, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/ratchet/').trim().split('\n')[0];
  const best = git(project, 'show', `${branch}:train.py`).trimEnd();
  assert(applied.replace(/\n# my own note\s*$/, '').trimEnd() === best, `the buffer after Apply Best is not the best plus the note:\n${applied}\n--- best (${branch}) ---\n${best}`);
  await shots.take(page, 'apply-best-dirty', 'Apply Best into train.py with an unsaved edit: LR = 0.3 and WIDTH = 12 from the best, "# my own note" kept, the tab still dirty');
  const total = finishedCount(await statusText(page))?.total ?? 0;
  await runCommand(page, 'Ratchet: Revert Experiment…');
  await pickItem(page, 'an edit made in the editor');
  const reverted = await waitStatus(page, 'the revert run and kept', (t) => (finishedCount(t)?.total ?? 0) > total && !/score 0 /.test(t), 60_000);
  results.revert = reverted;
  await shots.take(page, 'reverted', `Revert Experiment… on the kept hand edit: "${reverted}"`);
  await runCommand(page, 'File: Revert File');
}

/** The Problems status bar item's label: "No Problems", or "Errors: 1, Warnings: 2" (Hints
 * are not counted there). */
async function problemsLabel(page) {
  const item = page.locator('[id="status.problems"] .statusbar-item-label').first();
  await item.waitFor({ state: 'attached', timeout: 15_000 });
  return (await item.getAttribute('aria-label')) || '';
}

/** 7b: a keep is a Hint diagnostic on the line it changed: Monaco draws it as `.squiggly-hint`
 * (a few dots, in the overlay of that line), no error/warning/info squiggle, and the Problems
 * count is what it was before the run. */
async function keepWithoutSquiggle(c, problemsBefore) {
  const { page, shots, results } = c;
  const line = await poll('a diagnostic mark on the kept hand edit\'s line', async () => page.evaluate(() => {
    const editor = document.querySelector('.editor-group-container.active .monaco-editor');
    const text = (el) => el.textContent.replace(/\u00a0/g, ' ');
    // the line with the edit and, as an inlay hint at its end, the keep's result
    const row = Array.from(editor?.querySelectorAll('.view-lines .view-line') ?? []).find((l) => /LR = 0\.3.*exp \d+ kept: score \S+ → 0 \(/.test(text(l)));
    const overlay = row && Array.from(editor.querySelectorAll('.view-overlays > div')).find((o) => o.style.top === row.style.top);
    const marks = Array.from(overlay?.querySelectorAll('[class*="squiggly-"]') ?? []).flatMap((el) => Array.from(el.classList).filter((n) => n.startsWith('squiggly-')));
    return marks.length > 0 ? { text: text(row), marks } : null;
  }), 30_000);
  const squiggles = line.marks.filter((m) => m !== 'squiggly-hint');
  assert(squiggles.length === 0, `the kept result's line has ${squiggles.join(', ')}: a keep must be a Hint, not a squiggle (${line.text})`);
  const problems = await problemsLabel(page);
  assert(problems === problemsBefore, `the Problems count changed with a keep: "${problemsBefore}" → "${problems}"`);
  results.keepMark = { line: line.text, marks: line.marks, problems };
  await shots.take(page, 'keep-no-squiggle', `the kept hand edit on its line: an inlay hint and a Hint diagnostic (${line.marks.join(', ')}), no squiggle; Problems "${problems}"`);
}

/** 9-10: the server killed, then the window reloaded: the client restarts the server and
 * says what happened; the experiments view comes back (its serializer). With the loop in a
 * process of its own (RATCHET_E2E_LOOP_PROCESS=1), the loop survives both and shows live. */
async function restarts(c) {
  const { page, server, shots, results } = c;
  await clearToasts(page);
  if (LOOP_PROCESS) {
    await runCommand(page, 'Ratchet: Start Loop');
    await waitStatus(page, 'the loop running again', /Ratchet \((running|review)\)/, 30_000);
  }
  const pid = serverPids(c.project)[0];
  process.kill(pid, 'SIGKILL');
  const message = await toast(page, 'was restarted', 60_000);
  assert(message.includes('killed by SIGKILL'), `the restart message does not say what happened: "${message}"`);
  if (LOOP_PROCESS) {
    assert(/is still running/.test(message), `the loop did not survive the server: "${message}"`);
  }
  const text = await waitStatus(page, 'the server back after the kill', /Ratchet \((idle|running|review|paused)\)/, 60_000);
  results.serverKill = { pid, message, status: text };
  await shots.take(page, 'server-killed', `the server (pid ${pid}) killed: "${message}"; status bar "${text}"`);

  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
  const after = await waitStatus(page, 'the server back after a window reload', LOOP_PROCESS ? /Ratchet \((running|review|paused)\)/ : /Ratchet \((idle|running|review|paused)\)/, 90_000);
  if (LOOP_PROCESS) {
    assert(/loop: pid \d+, attached/.test(server.readLog(SERVER_LOG)), 'after the reload the server did not attach to the running loop');
  }
  await page.locator('.tabs-container .tab', { hasText: 'Ratchet Experiments' }).first().click();
  const rows = await poll('the experiments view restored after the reload (serializer), with its rows', async () => Number(await experimentsView(page).locator('body').getAttribute('data-rows')) || null, 30_000);
  results.reload = { status: after, rows };
  await shots.take(page, 'after-reload', `after a window reload: the experiments view restored with ${rows} rows; status bar "${after}"`);
}

/** 11: the interpreter settings: a repository cannot choose what runs (ratchet.python is
 * machine-scoped), and a Python older than 3.11 is named as too old. */
async function interpreters(c) {
  const { page, server, shots, results, temp } = c;
  await clearToasts(page);
  // a Python 3.10 as far as the probe can tell: the real one with version_info replaced
  const old = path.join(temp, 'python3.10');
  fs.writeFileSync(old, `#!/bin/sh\nexec ${PYTHON} -c 'import sys; sys.version_info = (3, 10, 12, "final", 0); code = sys.argv[1]; sys.argv = sys.argv[1:]; exec(code)' "$2" "$3"\n`, { mode: 0o755 });
  const restartLines = () => server.readLog(SERVER_LOG).split('\n').filter((l) => l.includes('restarting the server'));
  const before = restartLines().length;
  // the review gate in the same write shows when the extension has read it
  writeWorkspaceSettings(c.project, { 'ratchet.python': old, 'ratchet.reviewGate': 'propose' });
  await poll('the workspace settings read', async () => server.readLog(SERVER_LOG).includes('review gate propose: sent to the server live'), 30_000);
  assert(restartLines().length === before, `a repository's .vscode/settings.json restarted the server with its own ratchet.python: ${restartLines().slice(before)}`);
  const machine = path.join(server.dirs.userData, 'Machine', 'settings.json');
  fs.writeFileSync(machine, JSON.stringify({ 'ratchet.python': old }, null, 2));
  const message = await toast(page, 'too old', 60_000);
  assert(message.includes('Python 3.10 is too old: Ratchet needs 3.11+'), `the message does not name the version: "${message}"`);
  await poll('the restart for the Machine setting in the log', async () => restartLines().length === before + 1, 15_000);
  results.tooOld = message;
  await shots.take(page, 'python-too-old', `ratchet.python (Machine) set to a Python 3.10: "${message}"; the same value in .vscode/settings.json was ignored (machine scope)`);
}

function noTracebacks(c) {
  const text = c.server.readLog(SERVER_LOG);
  const count = (text.match(/Traceback \(most recent call last\)/g) ?? []).length;
  c.results.serverLog = { lines: text.split('\n').length, bytes: text.length, tracebacks: count };
  assert(count === 0, `the server log has ${count} traceback(s):\n${text.slice(text.indexOf('Traceback') - 400, text.indexOf('Traceback') + 1600)}`);
}

export const steps = {
  async loop(c) {
    await start(c);
    await review(c);
    await view(c);
    await themeChange(c);
    await settingMidLoop(c);
    await applyAndRevert(c);
    await restarts(c);
    await interpreters(c);
    noTracebacks(c);
  },

  /** 14: a key the editor keeps, set through the palette, used by a loop started here. */
  async apiKey(c) {
    const { page, server, shots, results, project, api, temp } = c;
    const KEY = 'sk-ant-e2e-editor-kept-0123456789SECRET';
    await waitStatus(page, 'a running server', /Ratchet \((idle|running|review|paused)\)/, 90_000);
    const keyItem = page.locator('.statusbar-item[aria-label*="activate to set the key"]').first();
    const keyLabel = async () => ((await keyItem.count()) ? (await keyItem.getAttribute('aria-label')) || '' : '');
    await poll('the key item to say there is no key', async () => (await keyLabel()).includes('no Anthropic key'), 30_000);
    await shots.take(page, 'api-key-none', 'a window with no ANTHROPIC_API_KEY, the anthropic agent: the status bar says "no Anthropic key" (a click sets it)');
    await runCommand(page, 'Ratchet: Set API Key');
    const box = page.locator('.quick-input-widget input[type="password"]').first();
    await box.waitFor({ state: 'visible', timeout: 15_000 });
    await box.fill(KEY);
    await shots.take(page, 'api-key-input', 'Ratchet: Set API Key… asks for the key in a password box');
    await page.keyboard.press('Enter');
    await poll('the key item to say the key is the editor\'s', async () => (await keyLabel()).includes('Anthropic key: editor'), 30_000);
    await runCommand(page, 'Ratchet: Start Loop');
    const text = await waitStatus(page, 'a proposal from the anthropic agent awaiting review', (t) => !!awaiting(t), 120_000);
    await shots.take(page, 'api-key-proposal', `the key from the editor: the anthropic agent proposed ("${text}")`);
    const sent = fs.readFileSync(api.keys, 'utf8').split('\n').filter(Boolean);
    assert(sent.length > 0 && sent.every((k) => k === KEY), `the Messages API was sent ${JSON.stringify(sent.map((k) => k.slice(0, 12)))}, not the editor's key`);
    // the key is nowhere it should not be: the server's environment, a log, a trace, the
    // ledger, a run's log (the code-server's logs: every output channel, the extension host's)
    for (const pid of serverPids(project)) {
      assert(!fs.readFileSync(`/proc/${pid}/environ`, 'latin1').includes(KEY), `the key is in the server's environment (pid ${pid})`);
    }
    const files = [];
    const walk = (dir) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.isFile()) files.push(full);
      }
    };
    walk(path.join(project, '.ratchet'));
    walk(path.join(server.dirs.userData, 'logs'));
    walk(server.dirs.tmp);
    const leaks = files.filter((f) => fs.readFileSync(f).includes(KEY));
    assert(leaks.length === 0, `the key leaked into ${leaks.join(', ')}`);
    assert(files.some((f) => f.endsWith('Ratchet Server.log')) && files.some((f) => f.endsWith('.sqlite')), `searched too little: ${files.length} files`);
    results.apiKey = { requests: sent.length, filesSearched: files.length, temp: path.basename(temp) };
    log(`the editor's key reached the Messages API (${sent.length} requests) and none of ${files.length} files`);
  },

  /** 12: an untrusted folder: nothing runs, and the views say why. */
  async restricted(c) {
    const { page, server, shots, results, project } = c;
    await waitStatus(page, 'Ratchet offline in Restricted Mode', /Ratchet \(offline\)/, 60_000);
    await runCommand(page, 'Ratchet: Focus on Experiments View');
    const welcome = page.locator('.welcome-view-content', { hasText: 'Restricted Mode' }).first();
    await welcome.waitFor({ state: 'visible', timeout: 15_000 });
    await page.keyboard.press('F1');
    await page.locator('.quick-input-widget input[type="text"]').fill('>Ratchet: ');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Ratchet: Show Experiments' }).first().waitFor({ state: 'visible', timeout: 10_000 });
    const startRows = await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Ratchet: Start Loop' }).count();
    await shots.take(page, 'restricted-mode', 'an untrusted folder in Restricted Mode: the Ratchet view says it runs nothing, Start Loop is not offered, the status bar is offline');
    await page.keyboard.press('Escape');
    // the nested project is found too: one client each, and a pick between them
    await runCommand(page, 'Ratchet: Select Project…');
    await page.locator('.quick-input-widget', { hasText: 'select the project' }).waitFor({ state: 'visible', timeout: 15_000 });
    const items = page.locator('.quick-input-list .monaco-list-row');
    await poll('both projects in the Select Project pick', async () => (await items.count()) === 2, 15_000);
    const labels = (await items.allInnerTexts()).map((t) => t.split('\n')[0]);
    assert(labels.some((l) => l.endsWith('untrusted-project')) && labels.some((l) => l.endsWith('untrusted-project/nested')), `the projects found: ${labels}`);
    await shots.take(page, 'select-project', `Ratchet: Select Project… lists the folder's project and the nested one: ${labels.join(', ')}`);
    await page.keyboard.press('Escape');
    results.projects = labels;
    const pids = [...serverPids(project), ...serverPids(path.join(project, 'nested'))];
    const logText = server.readLog(SERVER_LOG);
    assert(pids.length === 0, `a Ratchet server runs in Restricted Mode: ${pids}`);
    assert(!logText.includes('starting `'), `the extension started a server in Restricted Mode:\n${logText}`);
    assert(startRows === 0, 'Start Loop is offered in Restricted Mode');
    results.restricted = { serverProcesses: pids.length, startLoopOffered: startRows > 0 };
    // trusting the folder starts the servers (one per project) without a reload
    await runCommand(page, 'Workspaces: Manage Workspace Trust');
    await page.locator('.workspace-trust-editor .monaco-button', { hasText: /^Trust$/ }).first().click();
    await waitStatus(page, 'the server started once the folder is trusted', /Ratchet \((idle|running|review|paused)\)/, 60_000);
    await poll('a server for each project', async () => serverPids(project).length === 1 && serverPids(path.join(project, 'nested')).length === 1, 30_000);
    results.trusted = { servers: 2 };
    await shots.take(page, 'trusted', 'the folder trusted: a server per project started, the status bar online');
  },
};
