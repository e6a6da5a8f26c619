// The end-to-end test's machinery: code-server on 127.0.0.1 with its own dirs, headless
// Chromium through playwright-core, screenshots, logs, and waits that end at a deadline.
// Nothing here sleeps for a fixed time: every wait polls a condition until its deadline.

import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
const TOOLS = path.join(ROOT, '.tools');
export const NODE24 = path.join(TOOLS, 'node24', 'bin', 'node');
export const CODE_SERVER = path.join(TOOLS, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const VSIX = process.env.RATCHET_VSIX || path.join(ROOT, 'vscode-extension', 'ratchet.vsix');
export const ARTIFACTS = process.env.RATCHET_E2E_ARTIFACTS || path.join(ROOT, 'artifacts', 'e2e');
export const PYTHON = process.env.RATCHET_PYTHON || 'python3';
export const CHROMIUM = process.env.RATCHET_CHROMIUM || '/usr/bin/chromium';

const started = Date.now();
export const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
export const log = (message) => console.log(`[e2e ${elapsed()}] ${message}`);

export class Failure extends Error {}
export function fail(message) {
  throw new Failure(message);
}

/** Polls `fn` until it returns something truthy; fails at the deadline saying what it waited for. */
export async function poll(what, fn, timeoutMs = 60_000, intervalMs = 150) {
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

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Every process of a session (setsid), for a clean stop. */
export function sessionPids(sid) {
  try {
    return execFileSync('ps', ['-eo', 'pid=,sid='], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.trim().split(/\s+/).map(Number))
      .filter(([pid, s]) => s === sid && pid !== process.pid)
      .map(([pid]) => pid);
  } catch {
    return [];
  }
}

/** Processes whose command line matches `pattern` (the Ratchet server of one project). */
export function processesMatching(pattern) {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(.*)$/.exec(line))
    .filter((m) => m && pattern.test(m[2]))
    .map((m) => ({ pid: Number(m[1]), args: m[2] }));
}

export const USER_SETTINGS = {
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
  'git.enabled': false,
  'files.autoSave': 'off', // the test's unsaved edits must stay unsaved
  'editor.codeLens': true,
  'editor.inlayHints.enabled': 'on',
  'editor.minimap.enabled': false,
  'window.restoreWindows': 'none',
  'workbench.colorTheme': 'Default Dark Modern',
  'ratchet.notifications.newBest': false,
};

/** One code-server with its own user data, extensions and temp dirs under `temp`. */
export class CodeServer {
  constructor(temp, { trust = false } = {}) {
    this.temp = temp;
    this.trust = trust;
    this.dirs = Object.fromEntries(
      ['userData', 'extensions', 'xdgConfig', 'xdgData', 'xdgCache', 'tmp'].map((name) => [name, path.join(temp, name)]),
    );
    for (const dir of Object.values(this.dirs)) {
      fs.mkdirSync(dir, { recursive: true });
    }
    this.config = path.join(temp, 'code-server.yaml');
    this.process = null;
  }

  env() {
    return {
      ...process.env,
      PATH: `${path.dirname(NODE24)}:${process.env.PATH}`,
      XDG_CONFIG_HOME: this.dirs.xdgConfig,
      XDG_DATA_HOME: this.dirs.xdgData,
      XDG_CACHE_HOME: this.dirs.xdgCache,
      TMPDIR: this.dirs.tmp,
      EXTENSIONS_GALLERY: '{}',
      CS_DISABLE_FILE_DOWNLOADS: '1',
      ANTHROPIC_API_KEY: '', // the server and its experiments stay off the network
    };
  }

  args(extra) {
    return [CODE_SERVER, '--config', this.config, '--user-data-dir', this.dirs.userData, '--extensions-dir', this.dirs.extensions, '--disable-telemetry', '--disable-update-check', ...(this.trust ? [] : ['--disable-workspace-trust']), ...extra];
  }

  get userSettingsFile() {
    return path.join(this.dirs.userData, 'User', 'settings.json');
  }

  /** User settings, and the Machine settings (code-server is a remote: machine-scoped
   * settings such as ratchet.python count only there). */
  writeSettings(user, machine) {
    for (const [scope, settings] of [['User', user], ['Machine', machine]]) {
      fs.mkdirSync(path.join(this.dirs.userData, scope), { recursive: true });
      fs.writeFileSync(path.join(this.dirs.userData, scope, 'settings.json'), JSON.stringify(settings, null, 2));
    }
  }

  install(vsix) {
    const out = execFileSync(NODE24, this.args(['--install-extension', vsix, '--force']), { env: this.env(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (!/was successfully installed|already installed/i.test(out)) {
      fail(`code-server did not install the extension: ${out}`);
    }
    return fs.readdirSync(this.dirs.extensions).filter((name) => name.startsWith('ratchet.ratchet'));
  }

  async start(folder, logName) {
    this.port = await freePort();
    fs.writeFileSync(this.config, `bind-addr: 127.0.0.1:${this.port}\nauth: none\ncert: false\n`);
    const out = fs.openSync(path.join(ARTIFACTS, logName), 'w');
    this.process = spawn(NODE24, this.args(['--bind-addr', `127.0.0.1:${this.port}`, '--auth', 'none', folder]), {
      env: this.env(),
      cwd: this.temp,
      detached: true, // setsid(): stopped as a group
      stdio: ['ignore', out, out],
    });
    this.base = `http://127.0.0.1:${this.port}`;
    await poll(`code-server to answer on ${this.base}`, async () => {
      const response = await fetch(`${this.base}/healthz`).catch(() => null);
      return response && response.ok;
    }, 60_000, 250);
    return this.base;
  }

  async stop() {
    const pgid = this.process?.pid;
    this.process = null;
    if (pgid === undefined) {
      return;
    }
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // gone
    }
    await poll('code-server to stop', async () => sessionPids(pgid).length === 0, 5_000, 100).catch(() => undefined);
    for (const pid of sessionPids(pgid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  /** The newest file of that name under the logs (the output channels are files there). */
  findLog(name) {
    const found = [];
    const walk = (dir) => {
      for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          walk(full);
        } else if (entry.name === name) {
          found.push(full);
        }
      }
    };
    walk(path.join(this.dirs.userData, 'logs'));
    return found.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0] ?? null;
  }

  readLog(name) {
    const file = this.findLog(name);
    return file ? fs.readFileSync(file, 'utf8') : '';
  }

  /** Copies the extension's output channels and the extension host's logs to the artifacts. */
  saveLogs(prefix) {
    const walk = (dir) => {
      for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          walk(full);
        } else if (/Ratchet|exthost\.log/.test(entry.name)) {
          const rel = path.relative(path.join(this.dirs.userData, 'logs'), full).replace(/[^A-Za-z0-9_.-]+/g, '-');
          fs.copyFileSync(full, path.join(ARTIFACTS, `${prefix}-${rel}`));
        }
      }
    };
    walk(path.join(this.dirs.userData, 'logs'));
  }
}

export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  // nothing but loopback: any other request is a bug of the test or of the product
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['127.0.0.1', 'localhost'].includes(url.hostname) || url.protocol === 'data:' || url.protocol === 'blob:') {
      return route.continue();
    }
    log(`blocked a request to ${url.origin}`);
    return route.abort();
  });
  return { browser, context };
}

/** Screenshots, numbered, with what each shows. */
export class Shots {
  constructor() {
    this.list = [];
  }

  async take(page, name, what) {
    const file = path.join(ARTIFACTS, `${String(this.list.length + 1).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
    this.list.push({ file: path.relative(ROOT, file), what });
    log(`screenshot ${path.basename(file)}: ${what}`);
  }
}
