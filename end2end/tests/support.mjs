// Shared by the browser tests: start the real `gantry` binary on a free port
// with a fresh data directory, and launch Debian's Chromium (playwright-core
// cannot download its own browser here; DESIGN.md §6).
import { spawn, execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const artifacts = join(here, '..', 'artifacts');

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Starts `gantry serve` (with the dev login unless `devLogin: false`, and
// any extra environment); resolves once /healthz answers.
export async function startGantry({ port: wanted, env: extra = {}, devLogin = true } = {}) {
  const bin = process.env.E2E_GANTRY_BIN;
  if (!bin) throw new Error('E2E_GANTRY_BIN must point at the gantry binary (./x test sets it)');
  const dataDir = mkdtempSync(join(tmpdir(), 'gantry-e2e-'));
  const port = wanted ?? (await freePort());
  const env = { PATH: process.env.PATH, GANTRY_LOG: 'warn', ...extra };
  const args = ['serve', '--bind', `127.0.0.1:${port}`, '--public-url', `http://127.0.0.1:${port}`];
  if (devLogin) args.push('--dev-login');
  const child = spawn(bin, [...args, '--data-dir', join(dataDir, 'data')], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gantry exited with ${child.exitCode}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('gantry did not answer /healthz within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// A network link to Gantry on `port` that a test can cut: a TCP forwarder
// on a port of its own. `cut()` drops every open connection and refuses new
// ones, as a lost network does; `restore()` listens on the same port again;
// `close()` ends it for good.
export async function cuttableLink(port) {
  const open = new Set();
  const server = createServer((browserSide) => {
    const gantrySide = connect(port, '127.0.0.1');
    for (const socket of [browserSide, gantrySide]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      // The other side went away; its close cleans up.
      socket.on('error', () => socket.destroy());
    }
    browserSide.on('close', () => gantrySide.destroy());
    gantrySide.on('close', () => browserSide.destroy());
    browserSide.pipe(gantrySide).pipe(browserSide);
  });
  const listen = (wanted) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(wanted, '127.0.0.1', () => resolve(server.address().port));
  });
  const own = await listen(0);
  // Never what keeps the test process alive.
  server.unref();
  const cut = () => new Promise((resolve) => {
    server.close(() => resolve());
    for (const socket of open) socket.destroy();
  });
  const close = () => (server.listening ? cut() : Promise.resolve());
  return { port: own, cut, close, restore: () => listen(own) };
}

export function chromiumPath() {
  return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
}

export async function launchBrowser() {
  mkdirSync(artifacts, { recursive: true });
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

// Records console errors, page errors and failed requests of a page.
export function watchProblems(page) {
  const problems = [];
  page.on('console', (message) => {
    // A failed load's message names its address only as its location.
    if (message.type() === 'error') problems.push(`console: ${message.text()} (${message.location().url})`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    // A page that navigates away drops what it still has in flight: its
    // open event stream (the live change feed) and a live refresh's fetch of
    // the page. The browser aborted those; the server did not fail them (a
    // server-side failure shows as a refused, reset or empty response, or an
    // HTTP error below).
    const dropped = ['eventsource', 'fetch'].includes(request.resourceType());
    if (dropped && request.failure()?.errorText === 'net::ERR_ABORTED') return;
    problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
  });
  return problems;
}

// Signs in through the dev login (the demo's password-less sign-in).
export async function signIn(page, base, { name = 'ada', role = 'admin', returnTo = '/' } = {}) {
  await page.goto(`${base}/auth/dev?return_to=${encodeURIComponent(returnTo)}`);
  await page.locator('input[name="name"]').fill(name);
  await page.locator('select[name="role"]').selectOption(role);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('account').waitFor({ timeout: 30_000 });
  // Let the page finish loading (and hydrating) before the test moves on.
  await page.locator('.frame[data-hydrated="true"]').waitFor({ timeout: 30_000 });
}

// Starts the test identity provider (end2end/oidc/provider.mjs) for a
// Gantry on `gantryPort`; resolves with its issuer once it listens.
export async function startProvider(gantryPort) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(here, '..', 'oidc', 'provider.mjs'), String(port), `http://127.0.0.1:${gantryPort}/auth/callback`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const issuer = await new Promise((resolve, reject) => {
    let seen = '';
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      const ready = seen.match(/ready (\S+)/);
      if (ready) resolve(ready[1]);
    });
    child.once('exit', (code) => reject(new Error(`the identity provider exited with ${code}`)));
  });
  return {
    issuer,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    },
  };
}

// The elements of `main` whose box reaches past the window's right edge.
export async function pastTheEdge(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll('main *')]
      .filter((el) => {
        const box = el.getBoundingClientRect();
        return box.width > 0 && box.right > width + 1;
      })
      .slice(0, 5)
      .map((el) => `<${el.tagName.toLowerCase()} class="${el.className}"> right=${Math.round(el.getBoundingClientRect().right)} > ${width}`);
  });
}

const axeSource = join(here, '..', 'node_modules', 'axe-core', 'axe.min.js');

// axe-core's serious and critical violations on the page, one line each.
export async function seriousViolations(page) {
  // Through DevTools, not a <script> tag: the page's Content-Security-Policy
  // (rightly) refuses inline scripts without its nonce.
  await page.evaluate(`(() => { ${readFileSync(axeSource, 'utf8')}\n})()`);
  const { passed, violations } = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return {
      passed: result.passes.length,
      violations: result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`),
    };
  });
  // A check that ran no rule would pass anything.
  assert.ok(passed >= 10, `axe ran only ${passed} passing rules on ${page.url()}`);
  return violations;
}
