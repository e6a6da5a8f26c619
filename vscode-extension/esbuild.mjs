// Bundles the extension (Node, CommonJS), the experiments view's script (browser, with uPlot
// and its CSS) and, with --tests, the unit tests. `node esbuild.mjs [--watch] [--tests]`.
import * as esbuild from 'esbuild';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';

/** Ratchet's Python package, bundled so the extension needs only its dependencies installed
 * in the interpreter (an installed Ratchet, if any, wins: see src/logic/interpreter.ts). */
function bundlePythonPackage() {
  rmSync('bundled', { recursive: true, force: true });
  mkdirSync('bundled', { recursive: true });
  cpSync('../server/ratchet', 'bundled/ratchet', {
    recursive: true,
    filter: (source) => !source.includes('__pycache__'),
  });
  const pyproject = readFileSync('../pyproject.toml', 'utf8');
  const list = pyproject.match(/^dependencies = \[([\s\S]*?)\]/m);
  if (!list) {
    throw new Error('no `dependencies = [...]` in ../pyproject.toml');
  }
  const requirements = [...list[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  writeFileSync('bundled/requirements.txt', requirements.join('\n') + '\n');
}

const watch = process.argv.includes('--watch');
const tests = process.argv.includes('--tests');
const production = !watch;

const builds = [
  {
    entryPoints: ['src/extension.ts'],
    outfile: 'out/extension.js',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode'],
    sourcemap: !production,
    minify: production,
    logLevel: 'warning',
  },
  {
    entryPoints: ['src/webview/main.ts'],
    outfile: 'out/webview.js',
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    sourcemap: !production,
    minify: production,
    logLevel: 'warning',
  },
];

if (tests) {
  rmSync('out/test', { recursive: true, force: true });
  builds.length = 0;
  builds.push({
    entryPoints: readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`),
    outdir: 'out/test',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode'],
    logLevel: 'warning',
  });
}

if (watch) {
  for (const options of builds) {
    const context = await esbuild.context(options);
    await context.watch();
  }
  console.log('watching…');
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
  if (!tests) {
    bundlePythonPackage();
  }
}
