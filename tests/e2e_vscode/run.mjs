// End-to-end test of the Ratchet extension in a real VS Code (code-server), driven by
// playwright-core in headless Chromium, on a copy of tests/conftest.py's tiny loop with the
// review gate on. Each step waits for conditions with deadlines (no fixed sleeps) and saves a
// screenshot under artifacts/e2e/; any expectation not met fails the run (exit 1).
//
//   1. the workbench: the server starts from ratchet.python (a Machine setting), the own icon;
//   2. Start Loop; the baseline finishes (status bar);
//   3. a proposal waits: status bar, tree badge; the server's lenses and ghost text (asserted
//      when the server provides them: see SERVER_FACE); Reject it with Ctrl+Shift+Backspace;
//   4. the next one: Accept & Run with Ctrl+Shift+Enter; it runs and finishes;
//   5. the experiments view: rows, chart; a row keeps focus across a live patch; one diff
//      beside the view, replaced (not added) when another row is picked;
//   6. ratchet.reviewGate changed mid-loop: the server is not restarted, the loop goes on;
//   7. a hand edit run from the buffer and kept: on its line a Hint diagnostic (Monaco's
//      .squiggly-hint), no error/warning/info squiggle, the Problems count unchanged; Apply
//      Best into train.py with an unsaved edit: the edit stays, the best arrives;
//   8. Revert Experiment…: a revert experiment runs;
//   9. the server killed: the client restarts it and says what happened (with the loop in a
//      process of its own, RATCHET_E2E_LOOP_PROCESS=1: that the loop is still running);
//  10. a window reload: the experiments view comes back (serializer); with the loop in its
//      own process, it is still running and shown live;
//  11. ratchet.python: a repository's .vscode/settings.json cannot set it (machine scope); a
//      Python 3.10 in the Machine setting is named as too old;
//  12. the server log has no traceback;
//  13. Restricted Mode: a fresh code-server with workspace trust on, an untrusted folder with
//      a nested project: no server process starts, the views say why, Start Loop is not
//      offered, Select Project lists both projects; trusting the folder starts both servers;
//  14. a key the editor keeps: a window whose environment has no ANTHROPIC_API_KEY, a project
//      with the anthropic agent against a local Messages API stand-in (fake_api.py): the
//      status bar says "no Anthropic key"; Ratchet: Set API Key… through the palette; it says
//      "editor"; Start Loop; a proposal waits; the stand-in saw that key and only it; the key
//      is in no log, trace, ledger row, run log, nor the server's environment.
//
// Environment: RATCHET_PYTHON (an interpreter with Ratchet; default python3),
// RATCHET_E2E_TIMEOUT_S (default 300), RATCHET_E2E_KEEP=1 keeps the temp folder,
// RATCHET_E2E_SERVER_FACE=auto|1|0 (lenses and inlay hints from the server: auto asserts them
// when the server advertises codeLens and inlayHint), RATCHET_E2E_LOOP_PROCESS=1 (the loop has
// a process of its own: the server side of issue 12). tests/test_vscode_e2e.py sets both to 1
// when the package under test has that server side (ratchet.lsp.loop, ratchet.lsp.marks).

import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ARTIFACTS, CHROMIUM, CODE_SERVER, CodeServer, Failure, HERE, NODE24, PYTHON, Shots, USER_SETTINGS, VSIX, elapsed, fail, launchBrowser, log, poll, processesMatching } from './harness.mjs';
import { steps } from './steps.mjs';

const TOTAL_TIMEOUT_S = Number(process.env.RATCHET_E2E_TIMEOUT_S || 300);

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
const shots = new Shots();
const servers = [];
const browsers = [];
const fakes = [];

async function cleanup() {
  for (const [i, server] of servers.entries()) {
    try {
      server.saveLogs(`log${i + 1}`);
    } catch (error) {
      log(`could not save the logs: ${error.message}`);
    }
  }
  for (const browser of browsers) {
    await browser.close().catch(() => undefined);
  }
  for (const server of servers) {
    await server.stop();
  }
  for (const fake of fakes) {
    fake.kill('SIGTERM');
  }
  // a loop in a process of its own outlives its window by design: end the test's loops
  const leftovers = processesMatching(new RegExp(temp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  for (const { pid, args } of leftovers) {
    log(`stopping pid ${pid} left by the test: ${args.slice(0, 120)}`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await poll("the test's processes to end", async () => processesMatching(new RegExp(temp)).length === 0, 10_000).catch(() => {
    for (const { pid } of processesMatching(new RegExp(temp))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  if (process.env.RATCHET_E2E_KEEP) {
    log(`kept ${temp}`);
  } else {
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => void cleanup().finally(() => process.exit(130)));
}

/** A committed copy of the test loop in `dest`. */
function makeProject(dest, ...extra) {
  execFileSync(PYTHON, [path.join(HERE, 'make_project.py'), dest, ...extra], { stdio: 'inherit' });
  return dest;
}

/** The Messages API stand-in (fake_api.py): its base URL, and the file of keys it was sent. */
async function startFakeApi() {
  const keys = path.join(temp, 'api-keys.txt');
  const child = spawn(PYTHON, [path.join(HERE, 'fake_api.py'), keys], { stdio: ['pipe', 'pipe', 'inherit'] });
  fakes.push(child);
  const base = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('\n')) resolve(out.split('\n')[0].trim());
    });
    child.once('exit', (code) => reject(new Error(`fake_api.py exited (${code})`)));
  });
  return { base, keys };
}

/** A code-server with the extension installed, and a page on `folder`. */
async function openWorkbench(name, folder, options) {
  const server = new CodeServer(path.join(temp, name), options);
  servers.push(server);
  server.writeSettings({ ...USER_SETTINGS, 'security.workspace.trust.enabled': !!options.trust, 'security.workspace.trust.startupPrompt': 'never' }, { 'ratchet.python': PYTHON });
  log(`installed ${server.install(VSIX).join(', ')} into ${name}`);
  const base = await server.start(folder, `${name}-code-server.log`);
  const { browser, context } = await launchBrowser();
  browsers.push(browser);
  const page = await context.newPage();
  page.on('pageerror', (error) => log(`page error: ${error.message}`));
  await page.goto(`${base}/?folder=${encodeURIComponent(folder)}`, { waitUntil: 'domcontentloaded' });
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
  log(`${name}: workbench loaded on ${base}`);
  return { server, page, context };
}

/** The notification centre's messages, into the log (a failed command says why there). */
async function showNotifications(page) {
  try {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await page.locator('.quick-input-widget input[type="text"]').fill('>Notifications: Show Notifications');
    await page.keyboard.press('Enter');
    const items = page.locator('.notifications-center .notification-list-item-message');
    await items.first().waitFor({ state: 'visible', timeout: 5_000 });
    for (const text of await items.allInnerTexts()) {
      log(`notification: ${text.replace(/\s+/g, ' ')}`);
    }
  } catch {
    log('no notifications');
  }
}

async function main() {
  try {
    execFileSync(PYTHON, ['-c', 'import ratchet.lsp.server'], { stdio: 'pipe' });
  } catch (error) {
    fail(`Ratchet's language server cannot be imported with ${PYTHON}: ${String(error.stderr || error.message).trim()}`);
  }
  const project = makeProject(path.join(temp, 'project'));
  const results = {};
  const main = await openWorkbench('trusted', project, { trust: false });
  try {
    await steps.loop({ ...main, project, shots, results, temp });
  } catch (error) {
    await shots.take(main.page, 'failure', `what was on screen when it failed: ${error.message}`).catch(() => undefined);
    await showNotifications(main.page);
    throw error;
  }
  await main.server.stop();

  const untrusted = makeProject(path.join(temp, 'untrusted-project'));
  makeProject(path.join(untrusted, 'nested')); // a second project inside the first
  const restricted = await openWorkbench('restricted', untrusted, { trust: true });
  try {
    await steps.restricted({ ...restricted, project: untrusted, shots, results });
  } catch (error) {
    await shots.take(restricted.page, 'failure-restricted', `what was on screen when it failed: ${error.message}`).catch(() => undefined);
    throw error;
  }
  await restricted.server.stop();

  const api = await startFakeApi();
  const keyed = makeProject(path.join(temp, 'key-project'), '--anthropic', api.base);
  const keyWindow = await openWorkbench('key', keyed, { trust: false });
  try {
    await steps.apiKey({ ...keyWindow, project: keyed, shots, results, api, temp });
  } catch (error) {
    await shots.take(keyWindow.page, 'failure-api-key', `what was on screen when it failed: ${error.message}`).catch(() => undefined);
    await showNotifications(keyWindow.page);
    throw error;
  }
  return results;
}

const overall = setTimeout(() => {
  console.error(`[e2e] the whole test took longer than ${TOTAL_TIMEOUT_S}s`);
  void cleanup().finally(() => process.exit(1));
}, TOTAL_TIMEOUT_S * 1000);

try {
  const results = await main();
  clearTimeout(overall);
  fs.writeFileSync(path.join(ARTIFACTS, 'summary.json'), JSON.stringify({ ok: true, seconds: Number(elapsed().slice(0, -1)), ...results, screenshots: shots.list }, null, 2));
  log(`passed in ${elapsed()}`);
  await cleanup();
  process.exit(0);
} catch (error) {
  clearTimeout(overall);
  console.error(`[e2e ${elapsed()}] FAILED: ${error instanceof Failure ? error.message : error.stack || error}`);
  fs.writeFileSync(path.join(ARTIFACTS, 'summary.json'), JSON.stringify({ ok: false, error: String(error.stack || error), screenshots: shots.list }, null, 2));
  await cleanup();
  for (const name of fs.readdirSync(ARTIFACTS).filter((n) => /Ratchet-Server|code-server\.log$/.test(n))) {
    const tail = fs.readFileSync(path.join(ARTIFACTS, name), 'utf8').split('\n').slice(-25).join('\n');
    console.error(`--- ${name} (last lines) ---\n${tail}`);
  }
  process.exit(1);
}
