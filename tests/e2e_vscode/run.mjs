// End-to-end test of the Ratchet extension in a real VS Code.
//
// Installs the packaged .vsix into code-server (started on 127.0.0.1 with its own dirs), opens
// a copy of a tiny loop (tests/conftest.py's TRAIN and CONFIG, a committed git repository, a
// 1-2 s experiment, review = "propose") and drives the workbench with playwright-core in
// headless Chromium:
//
//   1. run "Ratchet: Start Loop" from the command palette;
//   2. wait until the status bar shows a finished experiment;
//   3. the review gate is on: accept a proposal from its CodeLens and see it run and finish;
//   4. open the experiments view and see the rows and the chart; select a row: its diff opens.
//
// Each step saves a screenshot under artifacts/e2e/ (RATCHET_E2E_ARTIFACTS to change it); any
// expectation not met fails the run (exit status 1) with a screenshot of what was there.
//
// Environment: RATCHET_PYTHON (an interpreter with Ratchet installed; default python3),
// RATCHET_E2E_KEEP=1 keeps the temp folder, RATCHET_E2E_TIMEOUT_S (default 240).

import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const TOOLS = path.join(ROOT, '.tools');
const NODE24 = path.join(TOOLS, 'node24', 'bin', 'node');
const CODE_SERVER = path.join(TOOLS, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const VSIX = process.env.RATCHET_VSIX || path.join(ROOT, 'vscode-extension', 'ratchet.vsix');
const ARTIFACTS = process.env.RATCHET_E2E_ARTIFACTS || path.join(ROOT, 'artifacts', 'e2e');
const PYTHON = process.env.RATCHET_PYTHON || 'python3';
const CHROMIUM = process.env.RATCHET_CHROMIUM || '/usr/bin/chromium';
const TOTAL_TIMEOUT_S = Number(process.env.RATCHET_E2E_TIMEOUT_S || 240);
const STEP_TIMEOUT_MS = 60_000;

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const log = (message) => console.log(`[e2e ${elapsed()}] ${message}`);

class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

for (const [what, file] of [
  ['Node 24 (scripts/install-vscode-deps.sh)', NODE24],
  ['code-server (scripts/install-vscode-deps.sh)', CODE_SERVER],
  ['the packaged extension (scripts/install-vscode-deps.sh builds it)', VSIX],
  ['Chromium (apt-get install chromium)', CHROMIUM],
]) {
  if (!fs.existsSync(file)) {
    console.error(`[e2e] missing ${what}: ${file}`);
    process.exit(2);
  }
}

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });
const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'ratchet-e2e-'));
const dirs = {
  userData: path.join(temp, 'user-data'),
  extensions: path.join(temp, 'extensions'),
  xdgConfig: path.join(temp, 'xdg-config'),
  xdgData: path.join(temp, 'xdg-data'),
  xdgCache: path.join(temp, 'xdg-cache'),
  tmp: path.join(temp, 'tmp'),
  home: path.join(temp, 'home'),
};
for (const dir of Object.values(dirs)) {
  fs.mkdirSync(dir, { recursive: true });
}
const project = path.join(temp, 'project');
const configFile = path.join(temp, 'code-server.yaml');

let serverProcess = null;
let browser = null;
let shots = 0;
const shotList = [];

function codeServerEnv() {
  return {
    ...process.env,
    PATH: `${path.dirname(NODE24)}:${process.env.PATH}`,
    XDG_CONFIG_HOME: dirs.xdgConfig,
    XDG_DATA_HOME: dirs.xdgData,
    XDG_CACHE_HOME: dirs.xdgCache,
    TMPDIR: dirs.tmp,
    EXTENSIONS_GALLERY: '{}',
    CS_DISABLE_FILE_DOWNLOADS: '1',
    // the Ratchet server and its experiments run from here: keep them off the network too
    ANTHROPIC_API_KEY: '',
  };
}

function codeServerArgs(extra) {
  return [
    CODE_SERVER,
    '--config', configFile,
    '--user-data-dir', dirs.userData,
    '--extensions-dir', dirs.extensions,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    ...extra,
  ];
}

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Every process of code-server's session (setsid): the group first, then stragglers. */
function sessionPids(sid) {
  try {
    const out = execFileSync('ps', ['-eo', 'pid=,sid='], { encoding: 'utf8' });
    return out
      .split('\n')
      .map((line) => line.trim().split(/\s+/).map(Number))
      .filter(([pid, s]) => s === sid && pid !== process.pid)
      .map(([pid]) => pid);
  } catch {
    return [];
  }
}

async function stopCodeServer() {
  if (!serverProcess || serverProcess.pid === undefined) {
    return;
  }
  const pgid = serverProcess.pid; // detached: true → setsid(): its pid is the group and session id
  serverProcess = null;
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    // already gone
  }
  for (let i = 0; i < 50 && sessionPids(pgid).length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
  for (const pid of sessionPids(pgid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function findLog(name) {
  const logs = path.join(dirs.userData, 'logs');
  const stack = fs.existsSync(logs) ? [logs] : [];
  while (stack.length) {
    const dir = stack.pop();
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        stack.push(full);
      } else if (entry.name === name) {
        return full;
      }
    }
  }
  return null;
}

/** The extension's output channels (server log, agent trace) and the window's logs, kept. */
function saveLogs() {
  const logs = path.join(dirs.userData, 'logs');
  if (!fs.existsSync(logs)) {
    return;
  }
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (/Ratchet|exthost\.log|remoteexthost\.log/.test(entry.name)) {
        found.push(full);
      }
    }
  };
  walk(logs);
  for (const file of found) {
    fs.copyFileSync(file, path.join(ARTIFACTS, `log-${path.basename(file).replace(/[^A-Za-z0-9_.-]+/g, '-')}`));
  }
}

async function cleanup() {
  try {
    saveLogs();
  } catch (error) {
    log(`could not save the logs: ${error.message}`);
  }
  if (browser) {
    await browser.close().catch(() => undefined);
    browser = null;
  }
  await stopCodeServer();
  if (process.env.RATCHET_E2E_KEEP) {
    log(`kept ${temp}`);
  } else {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    cleanup().finally(() => process.exit(130));
  });
}

async function shot(page, name, what) {
  shots += 1;
  const file = path.join(ARTIFACTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  shotList.push({ file: path.relative(ROOT, file), what });
  log(`screenshot ${path.basename(file)}: ${what}`);
}

async function poll(what, fn, timeoutMs = STEP_TIMEOUT_MS, intervalMs = 150) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) {
        return last;
      }
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  fail(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}`);
}

// --- the parts on the page ----------------------------------------------------------------------

const statusItem = (page) => page.locator('.statusbar-item[aria-label^="Ratchet ("]').first();

async function statusText(page) {
  const item = statusItem(page);
  if ((await item.count()) === 0) {
    return '';
  }
  return ((await item.getAttribute('aria-label')) || (await item.innerText()) || '').replace(/\s+/g, ' ').trim();
}

/** kept/total from the status bar text, e.g. "3/14 kept". */
function finishedCount(text) {
  const match = /(\d+)\/(\d+) kept/.exec(text);
  return match ? { kept: Number(match[1]), total: Number(match[2]) } : null;
}

async function runCommand(page, title, screenshot) {
  await page.keyboard.press('Escape');
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input[type="text"]');
  await input.waitFor({ state: 'visible', timeout: 15_000 });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ state: 'visible', timeout: 15_000 });
  if (screenshot) {
    await shot(page, screenshot.name, screenshot.what);
  }
  await page.keyboard.press('Enter');
}

async function openFile(page, name) {
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input[type="text"]');
  await input.waitFor({ state: 'visible', timeout: 15_000 });
  await input.fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ state: 'visible', timeout: 15_000 });
  await page.keyboard.press('Enter');
  await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ state: 'visible', timeout: 15_000 });
  await page.locator('.monaco-editor .view-lines').first().waitFor({ state: 'visible', timeout: 15_000 });
}

// --- the test -----------------------------------------------------------------------------------

async function main() {
  log(`workspace: tests/conftest.py's loop with review = "propose" (python ${PYTHON})`);
  execFileSync(PYTHON, [path.join(HERE, 'make_project.py'), project], { stdio: 'inherit' });
  try {
    execFileSync(PYTHON, ['-c', 'import ratchet.lsp.server'], { stdio: 'pipe' });
  } catch (error) {
    fail(`Ratchet's language server cannot be imported with ${PYTHON}: ${String(error.stderr || error.message).trim()}`);
  }

  const port = await freePort();
  fs.writeFileSync(configFile, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  // code-server is a remote window: machine-scoped settings (ratchet.python) count only from
  // the "Remote" settings (user-data/Machine), the rest from the User settings.
  const userSettings = {
    'chat.disableAIFeatures': true,
    'chat.agentHost.enabled': false,
    'workbench.startupEditor': 'none',
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    'workbench.auxiliaryBar.defaultVisibility': 'hidden',
    'workbench.tips.enabled': false,
    'workbench.enableExperiments': false,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'security.workspace.trust.enabled': false,
    'git.enabled': false,
    'editor.codeLens': true,
    'editor.minimap.enabled': false,
    'window.restoreWindows': 'none',
    'workbench.colorTheme': 'Default Dark Modern',
    'ratchet.notifications.newBest': false,
  };
  for (const [scope, settings] of [
    ['User', userSettings],
    ['Machine', { 'ratchet.python': PYTHON }],
  ]) {
    fs.mkdirSync(path.join(dirs.userData, scope), { recursive: true });
    fs.writeFileSync(path.join(dirs.userData, scope, 'settings.json'), JSON.stringify(settings, null, 2));
  }

  log(`installing ${path.relative(ROOT, VSIX)} into code-server`);
  const install = execFileSync(NODE24, codeServerArgs(['--install-extension', VSIX, '--force']), { env: codeServerEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (!/was successfully installed|already installed/i.test(install)) {
    fail(`code-server did not install the extension: ${install}`);
  }
  const installed = fs.readdirSync(dirs.extensions).filter((name) => name.startsWith('ratchet.ratchet'));
  if (installed.length === 0) {
    fail(`the extension is not in ${dirs.extensions}: ${fs.readdirSync(dirs.extensions).join(', ')}`);
  }
  log(`installed ${installed.join(', ')}`);

  const serverLog = fs.openSync(path.join(ARTIFACTS, 'code-server.log'), 'w');
  serverProcess = spawn(NODE24, codeServerArgs(['--bind-addr', `127.0.0.1:${port}`, '--auth', 'none', project]), {
    env: codeServerEnv(),
    cwd: temp,
    detached: true, // setsid(): stopped as a group with kill -- -PGID
    stdio: ['ignore', serverLog, serverLog],
  });
  serverProcess.on('exit', (code, signal) => log(`code-server exited (${code ?? signal})`));
  const base = `http://127.0.0.1:${port}`;
  await poll('code-server to answer on ' + base, async () => {
    const response = await fetch(`${base}/healthz`).catch(() => null);
    return response && response.ok;
  }, 60_000, 250);
  log(`code-server is up on ${base}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => log(`page error: ${error.message}`));
  // nothing but loopback: any other request is a bug of the test or of the product
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['127.0.0.1', 'localhost'].includes(url.hostname) || url.protocol === 'data:' || url.protocol === 'blob:') {
      return route.continue();
    }
    log(`blocked a request to ${url.origin}`);
    return route.abort();
  });

  try {
    await page.goto(`${base}/?folder=${encodeURIComponent(project)}`, { waitUntil: 'domcontentloaded' });
    await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
    log('workbench loaded');

    // The extension activates (workspaceContains:ratchet.toml) and starts `ratchet serve`.
    await poll('the Ratchet status bar item to show a running server', async () => /Ratchet \((idle|running|review|paused)\)/.test(await statusText(page)), 90_000);
    log(`status bar: ${await statusText(page)}`);
    const serverLogFile = findLog('Ratchet Server.log');
    const started = serverLogFile ? fs.readFileSync(serverLogFile, 'utf8') : '';
    if (!started.includes(`interpreter ${PYTHON} (from setting)`)) {
      fail(`the server did not start from the ratchet.python setting (${PYTHON}); its log says:\n${started}`);
    }
    await openFile(page, 'train.py');
    await shot(page, 'workbench', 'code-server with the project open, train.py in the editor, the Ratchet status bar item idle');

    // 1. Start Loop from the command palette.
    await runCommand(page, 'Ratchet: Start Loop', { name: 'command-palette', what: 'the command palette filtered to "Ratchet: Start Loop"' });
    log('ran Ratchet: Start Loop');

    // 2. The baseline runs and finishes: the status bar shows it.
    let sawRunning = false;
    const finished = await poll('the status bar to show a finished experiment', async () => {
      const text = await statusText(page);
      if (!sawRunning && /Ratchet \(running\): exp \d+ · /.test(text)) {
        sawRunning = true;
        await shot(page, 'status-running', `an experiment running, in the status bar: "${text}"`);
      }
      const counts = finishedCount(text);
      return counts && counts.total >= 1 ? { text, counts } : null;
    }, 90_000, 100);
    await shot(page, 'status-finished', `the status bar after the first finished experiment: "${finished.text}"`);

    // 3. The review gate is on: the next proposal waits, with a CodeLens above its change.
    const lens = page.locator('.monaco-editor .codelens-decoration a', { hasText: 'Accept & Run' }).first();
    await poll('a proposal with an "Accept & Run" CodeLens in train.py', async () => (await lens.count()) > 0 && (await lens.isVisible()), 90_000);
    const lensLine = page.locator('.monaco-editor .codelens-decoration', { hasText: 'Accept & Run' }).first();
    const lensText = (await lensLine.innerText()).replace(/\s+/g, ' ');
    const idMatch = /Ratchet exp (\d+)/.exec(lensText);
    if (!idMatch) {
      fail(`the CodeLens does not name its experiment: "${lensText}"`);
    }
    const proposal = Number(idMatch[1]);
    const waiting = await poll('the status bar to show the proposal awaiting review', async () => {
      const text = await statusText(page);
      return text.includes(`exp ${proposal} awaiting review`) ? text : null;
    }, 30_000);
    const ghosts = await page.locator('.monaco-editor .view-overlays .cdr, .monaco-editor .view-lines [class*="ced-"]').count();
    log(`proposal exp ${proposal}: "${lensText}"; status "${waiting}"; ${ghosts} decorated spans`);
    await shot(page, 'proposal-codelens', `exp ${proposal} awaiting review: tinted line, ghost text and the Accept & Run / Reject / Diff CodeLens; status "${waiting}"`);
    const before = finishedCount(waiting)?.total ?? finished.counts.total;

    await lens.click();
    log(`clicked Accept & Run on exp ${proposal}`);
    let sawAccepted = false;
    const after = await poll(`exp ${proposal} to run and finish`, async () => {
      const text = await statusText(page);
      if (!sawAccepted && text.includes(`running): exp ${proposal} ·`)) {
        sawAccepted = true;
        await shot(page, 'accepted-running', `exp ${proposal} running after Accept & Run: "${text}"`);
      }
      const counts = finishedCount(text);
      return counts && counts.total > before && !text.includes(`exp ${proposal} awaiting review`) ? text : null;
    }, 90_000, 100);
    if (!sawAccepted) {
      log(`(exp ${proposal} ran between two looks at the status bar)`);
    }
    await poll(`exp ${proposal}'s CodeLens to go once it is decided`, async () => (await page.locator('.monaco-editor .codelens-decoration', { hasText: `Ratchet exp ${proposal}:` }).count()) === 0, 15_000);
    await shot(page, 'accepted-finished', `after exp ${proposal} finished: "${after}"`);

    // 4. The experiments view: rows and the chart.
    await runCommand(page, 'Ratchet: Show Experiments');
    const view = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    const rows = view.locator('#experiments tbody tr');
    await poll('rows in the experiments view', async () => (await rows.count()) >= 2, 30_000);
    const row = view.locator(`#experiments tbody tr[data-id="${proposal}"]`);
    const rowStatus = await poll(`exp ${proposal}'s row to show a measured result`, async () => {
      if ((await row.count()) === 0) {
        return null;
      }
      const status = await row.getAttribute('data-status');
      return ['kept', 'discarded'].includes(status) ? status : null;
    }, 30_000);
    const chart = view.locator('#chart');
    await view.locator('#chart canvas').first().waitFor({ state: 'visible', timeout: 15_000 });
    const points = Number(await chart.getAttribute('data-points'));
    const kept = Number(await chart.getAttribute('data-kept'));
    if (!(points >= 2 && kept >= 1)) {
      fail(`the chart shows ${points} measured points and ${kept} kept ones; expected at least 2 and 1`);
    }
    const rowCount = await rows.count();
    log(`experiments view: ${rowCount} rows, exp ${proposal} ${rowStatus}; chart ${points} points, ${kept} kept`);
    await shot(page, 'experiments-view', `the experiments view: ${rowCount} rows (exp ${proposal} ${rowStatus}) and the chart (${points} points, ${kept} kept, the running best as a step line)`);

    // Selecting a row opens its diff (and its log).
    await row.click();
    await poll(`exp ${proposal}'s diff to open`, async () => {
      const tab = page.locator('.tabs-container .tab', { hasText: `exp ${proposal}` });
      return (await tab.count()) > 0 && (await page.locator('.monaco-diff-editor').count()) > 0;
    }, 30_000);
    await page.locator('.tabs-container .tab', { hasText: `${proposal}.log` }).first().waitFor({ state: 'visible', timeout: 15_000 });
    await page.waitForTimeout(500);
    await shot(page, 'experiment-diff-and-log', `exp ${proposal} selected in the table: its diff (side by side) and its log opened beside the view`);

    // 5. The interpreter setting changes to one without Ratchet: the server restarts, fails,
    //    and a message gives the exact install command.
    const bare = path.join(temp, 'python-without-ratchet');
    fs.writeFileSync(bare, `#!/bin/sh\nexec ${PYTHON} -I -S "$@"\n`, { mode: 0o755 });
    await runCommand(page, 'Preferences: Open User Settings');
    await page.locator('.settings-editor').first().waitFor({ state: 'visible', timeout: 15_000 });
    await page.locator('.settings-editor .settings-tabs-widget .action-label', { hasText: 'Workspace' }).first().click();
    await page.waitForTimeout(300);
    await page.keyboard.press('Control+F'); // the settings search box
    await page.keyboard.type('ratchet.python');
    await page.locator('.settings-editor .settings-tree-container .setting-item-contents', { hasText: 'Ratchet: Python' }).first().waitFor({ state: 'visible', timeout: 15_000 });
    await page.waitForTimeout(300);
    const field = page.locator('.settings-editor .settings-tree-container .setting-item-contents', { hasText: 'Ratchet: Python' }).locator('input').first();
    await field.waitFor({ state: 'visible', timeout: 15_000 });
    await field.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.type(bare);
    await page.keyboard.press('Tab');
    const workspaceSettings = path.join(project, '.vscode', 'settings.json');
    await poll('the setting to be written to .vscode/settings.json', async () => fs.existsSync(workspaceSettings) && fs.readFileSync(workspaceSettings, 'utf8').includes(bare), 15_000);
    await shot(page, 'settings-python', `the Settings editor: ratchet.python set (Workspace) to ${bare}`);
    await page.keyboard.press('Escape'); // close the settings editor
    const expected = `Ratchet's Python packages are not installed in ${bare}`;
    const toast = page.locator('.notifications-toasts .notification-toast', { hasText: expected }).first();
    await toast.waitFor({ state: 'visible', timeout: 60_000 });
    const toastText = (await toast.innerText()).replace(/\s+/g, ' ');
    if (!toastText.includes(`${bare} -m pip install -r `) || !toastText.includes('requirements.txt')) {
      fail(`the message does not give the install command: "${toastText}"`);
    }
    await poll('the status bar to show the server offline', async () => /Ratchet \(offline\)/.test(await statusText(page)), 15_000);
    await shot(page, 'not-installed', `ratchet.python set to an interpreter without Ratchet: the server restarts and a message offers "${bare} -m pip install -r …/bundled/requirements.txt"`);

    fs.writeFileSync(
      path.join(ARTIFACTS, 'summary.json'),
      JSON.stringify({ ok: true, seconds: (Date.now() - started) / 1000, proposal, rowStatus, rows: rowCount, points, kept, screenshots: shotList }, null, 2),
    );
    log(`passed in ${elapsed()}`);
  } catch (error) {
    await shot(page, 'failure', `what was on screen when it failed: ${error.message}`).catch(() => undefined);
    fs.writeFileSync(path.join(ARTIFACTS, 'summary.json'), JSON.stringify({ ok: false, error: String(error.stack || error), screenshots: shotList }, null, 2));
    throw error;
  }
}

const overall = setTimeout(() => {
  console.error(`[e2e] the whole test took longer than ${TOTAL_TIMEOUT_S}s`);
  cleanup().finally(() => process.exit(1));
}, TOTAL_TIMEOUT_S * 1000);

try {
  await main();
  clearTimeout(overall);
  await cleanup();
  process.exit(0);
} catch (error) {
  clearTimeout(overall);
  console.error(`[e2e ${elapsed()}] FAILED: ${error instanceof Failure ? error.message : error.stack || error}`);
  try {
    saveLogs();
    for (const name of fs.readdirSync(ARTIFACTS).filter((n) => n.includes('Ratchet-Server'))) {
      const tail = fs.readFileSync(path.join(ARTIFACTS, name), 'utf8').split('\n').slice(-25).join('\n');
      console.error(`--- ${name} (last lines) ---\n${tail}`);
    }
  } catch {
    // the logs are a help, not the test
  }
  const logFile = path.join(ARTIFACTS, 'code-server.log');
  if (fs.existsSync(logFile)) {
    const tail = fs.readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
    console.error(`--- code-server.log (last lines) ---\n${tail}`);
  }
  await cleanup();
  process.exit(1);
}
