// The dashboard served by the real binary hydrates: the theme switch and
// client-side navigation only work once the WASM runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, cuttableLink, launchBrowser, signIn, startGantry, watchProblems } from './support.mjs';

let gantry;
let browser;

before(async () => {
  gantry = await startGantry();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gantry?.stop();
});

test('the dashboard hydrates, switches theme and navigates without reloading', async () => {
  const context = await browser.newContext({ colorScheme: 'light' });
  const page = await context.newPage();
  const problems = watchProblems(page);

  await signIn(page, gantry.url);
  assert.equal(await page.locator('h1').textContent(), 'Environments');
  await page.locator('.frame[data-hydrated="true"]').waitFor({ timeout: 30_000 });
  await page.screenshot({ path: join(artifacts, 'dashboard-environments-light.png'), fullPage: true });

  const toggle = page.getByTestId('theme-toggle');
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme ?? null), null);
  await toggle.click();
  await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
  assert.equal(await toggle.textContent(), '☀ Light');
  assert.equal(await page.evaluate(() => localStorage.getItem('gantry-theme')), 'dark');
  await page.screenshot({ path: join(artifacts, 'dashboard-environments-dark.png'), fullPage: true });

  // Client-side navigation: the document is not reloaded, so a marker set on
  // window survives.
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.getByRole('link', { name: 'Runs', exact: true }).click();
  await page.waitForURL(`${gantry.url}/runs`);
  await page.locator('h1', { hasText: 'Runs' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'navigated without a reload');
  assert.equal(await page.getByRole('link', { name: 'Runs', exact: true }).getAttribute('aria-current'), 'page');
  assert.match(await page.locator('main').textContent(), /No runs yet/);
  // The theme switch (an island in the layout) was kept, not re-rendered.
  assert.equal(await toggle.textContent(), '☀ Light');
  // Back and forward move between the fetched pages, still in one document.
  await page.goBack();
  await page.waitForURL(`${gantry.url}/`);
  await page.locator('h1', { hasText: 'Environments' }).waitFor();
  assert.equal(await page.title(), 'Environments · Gantry');
  await page.goForward();
  await page.locator('h1', { hasText: 'Runs' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'back and forward without a reload');

  // The choice survives a reload, applied before the WASM loads.
  await page.reload();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  await page.locator('.frame[data-hydrated="true"]').waitFor();
  assert.equal(await toggle.textContent(), '☀ Light');

  assert.deepEqual(problems, []);
  await context.close();
});

// The live pages catch up with what happened while their connection was
// down. This Gantry is quiet (no apps), so the only change is the one the
// test makes — a sign-in, which the audit log records — and a page can only
// catch up through the way back it is testing, not through a later change.

// The newest version of the change feed the page has heard of.
const liveVersion = (page) => page.evaluate(() => document.documentElement.dataset.liveVersion);

// Someone else signs in, in a browser context of their own.
async function signInElsewhere(name) {
  const context = await browser.newContext();
  await signIn(await context.newPage(), gantry.url, { name, role: 'viewer' });
  await context.close();
}

// An admin with the audit log open, listening to the change feed, at `base`.
async function auditLogOpen(context, base) {
  const page = await context.newPage();
  const problems = watchProblems(page);
  await signIn(page, base, { name: 'ada', role: 'admin', returnTo: '/audit' });
  await page.waitForFunction(() => document.documentElement.dataset.liveVersion);
  await page.evaluate(() => { window.__sameDocument = true; });
  return { page, problems };
}

// The connection is cut (open ones dropped, new ones refused) while a
// change happens; once the network is back the page reconnects by itself,
// sees the version moved and refetches — without reloading.
test('a page whose live connection drops catches up when it comes back', async (t) => {
  const link = await cuttableLink(Number(new URL(gantry.url).port));
  t.after(() => link.close());
  const context = await browser.newContext();
  const { page, problems } = await auditLogOpen(context, `http://127.0.0.1:${link.port}`);
  const before = await liveVersion(page);

  await link.cut();
  await signInElsewhere('grace');
  // Nothing reached the page while the link was down.
  assert.equal(await liveVersion(page), before);
  assert.equal(await page.locator('main').getByText('grace').count(), 0);

  await link.restore();
  await page.locator('main').getByText('grace').first().waitFor({ timeout: 30_000 });
  assert.notEqual(await liveVersion(page), before, 'the reconnected feed brought the new version');
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'caught up without a reload');
  // What failed while the link was cut is the feed's connection, nothing else.
  assert.deepEqual(problems.filter((p) => !p.includes('/api/v1/changes')), []);
  await context.close();
});

// A connection can outlive the network (the browser offline, the stream
// still open): the new version arrives, but the refetch fails. The page
// catches up once the network is back, not at some later change.
test('a page that hears of a change while offline catches up when the network is back', async () => {
  const context = await browser.newContext();
  const { page } = await auditLogOpen(context, gantry.url);
  const before = await liveVersion(page);

  await context.setOffline(true);
  await signInElsewhere('hopper');
  await page.waitForFunction((old) => document.documentElement.dataset.liveVersion !== old, before);
  // The refetch that version asked for failed: the page is behind.
  assert.equal(await page.locator('main').getByText('hopper').count(), 0);

  await context.setOffline(false);
  await page.locator('main').getByText('hopper').first().waitFor({ timeout: 30_000 });
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'caught up without a reload');
  await context.close();
});

// A page starts from the version it was rendered at, not from the first one
// its feed brings: a change made between the two is shown at once, not at
// the next change. The feed's connection is held back while the change is
// made.
test('a change made while a page was on its way is shown', async () => {
  const context = await browser.newContext();
  let asked;
  const feedAsked = new Promise((resolve) => { asked = resolve; });
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  await context.route('**/api/v1/changes', async (route) => {
    asked();
    await gate;
    await route.continue();
  });
  const page = await context.newPage();
  const problems = watchProblems(page);
  await signIn(page, gantry.url, { name: 'ada', role: 'admin', returnTo: '/audit' });
  await feedAsked;
  await page.evaluate(() => { window.__sameDocument = true; });
  const rendered = await page.getByTestId('account').getAttribute('data-page-version');
  assert.ok(rendered, 'the page says which version it was rendered at');

  await signInElsewhere('lovelace');
  assert.equal(await page.locator('main').getByText('lovelace').count(), 0);
  release();
  await page.locator('main').getByText('lovelace').first().waitFor({ timeout: 30_000 });
  assert.notEqual(await liveVersion(page), rendered);
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'caught up without a reload');
  assert.deepEqual(problems, []);
  await context.close();
});
