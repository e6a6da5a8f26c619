// The parts of the VS Code workbench the test reads and drives (code-server's DOM).

import { fail, poll } from './harness.mjs';

export const statusItem = (page) => page.locator('.statusbar-item[aria-label^="Ratchet ("]').first();

/** The Ratchet status bar item's accessible label: `Ratchet (running): exp 3 · …`. */
export async function statusText(page) {
  const item = statusItem(page);
  if ((await item.count()) === 0) {
    return '';
  }
  return ((await item.getAttribute('aria-label')) || (await item.innerText()) || '').replace(/\s+/g, ' ').trim();
}

/** kept/total from the status bar text, e.g. "3/14 kept". */
export function finishedCount(text) {
  const match = /(\d+)\/(\d+) kept/.exec(text);
  return match ? { kept: Number(match[1]), total: Number(match[2]) } : null;
}

/** Waits for a status bar text matching `test` (a RegExp or a function). */
export async function waitStatus(page, what, test, timeoutMs = 60_000) {
  return poll(`the status bar to show ${what}`, async () => {
    const text = await statusText(page);
    const ok = typeof test === 'function' ? test(text) : test.test(text);
    return ok ? text : null;
  }, timeoutMs, 100);
}

const quickInput = (page) => page.locator('.quick-input-widget input[type="text"]');

/** Runs a palette command. The palette lists only the commands enabled when it opened, so a
 * command a moment from enabled (Start Loop while the last loop's process is still closing its
 * channel) is looked for again in a fresh palette, until the deadline. */
export async function runCommand(page, title, onShown, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  for (;;) {
    await page.keyboard.press('Escape');
    await page.keyboard.press('F1');
    await quickInput(page).waitFor({ state: 'visible', timeout: 15_000 });
    await quickInput(page).fill(`>${title}`);
    const left = deadline - Date.now();
    try {
      await row.waitFor({ state: 'visible', timeout: Math.max(1_000, Math.min(3_000, left)) });
      break;
    } catch (error) {
      if (Date.now() >= deadline) throw error;
    }
  }
  if (onShown) {
    await onShown();
  }
  await page.keyboard.press('Enter');
}

/** Picks the quick pick row containing `text` (after a command opened one). */
export async function pickItem(page, text) {
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: text }).first();
  await row.waitFor({ state: 'visible', timeout: 15_000 });
  await row.click();
}

export async function openFile(page, name) {
  const tab = page.locator('.tabs-container .tab', { hasText: name }).first();
  if ((await tab.count()) > 0) {
    await tab.click(); // a key press could land in a webview that keeps it
    await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().waitFor({ state: 'visible', timeout: 15_000 });
    return;
  }
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+P');
  await quickInput(page).waitFor({ state: 'visible', timeout: 15_000 });
  await quickInput(page).fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ state: 'visible', timeout: 15_000 });
  await page.keyboard.press('Enter');
  await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ state: 'visible', timeout: 15_000 });
  await page.locator('.monaco-editor .view-lines').first().waitFor({ state: 'visible', timeout: 15_000 });
}

/** The text of the active editor's visible lines, in order (the test's files are short). */
export async function editorText(page) {
  return page.evaluate(() => {
    const editor = document.querySelector('.editor-group-container.active .monaco-editor:not(.monaco-diff-editor .monaco-editor)') || document.querySelector('.monaco-editor');
    const lines = Array.from(editor.querySelectorAll('.view-lines .view-line'));
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    // inlay hints are injected text in the line's DOM: left out, they are not the file's text
    return lines
      .map((line) => {
        const copy = line.cloneNode(true);
        copy.querySelectorAll('[class*="dyn-rule"], [class*="ced-"]').forEach((el) => el.remove());
        return copy.textContent.replace(/\u00a0/g, ' ');
      })
      .join('\n');
  });
}

/** Inlay hints of the active editor (the server's ghost text and history). */
export async function inlayHints(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('.monaco-editor .view-lines [class*="dyn-rule"], .monaco-editor .view-lines .inlay-hint, .monaco-editor [class*="inlayHint"]')).map((el) => el.textContent.trim()).filter(Boolean));
}

export async function toast(page, text, timeoutMs = 30_000) {
  const item = page.locator('.notifications-toasts .notification-toast', { hasText: text }).first();
  await item.waitFor({ state: 'visible', timeout: timeoutMs });
  return (await item.innerText()).replace(/\s+/g, ' ');
}

export async function clearToasts(page) {
  await page.keyboard.press('Escape');
  const close = page.locator('.notifications-toasts .codicon-notifications-clear, .notifications-toasts .codicon-close');
  for (let i = (await close.count()) - 1; i >= 0; i--) {
    await close.nth(i).click({ timeout: 2_000 }).catch(() => undefined);
  }
}

/** The experiments view's document (a webview inside two iframes). */
export const experimentsView = (page) => page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');

export function assert(condition, message) {
  if (!condition) {
    fail(message);
  }
}
