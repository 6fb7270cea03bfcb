// The dashboard served by the real binary hydrates: the theme switch and
// client-side navigation only work once the WASM runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, launchBrowser, signIn, startGantry, watchProblems } from './support.mjs';

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
  await page.getByRole('link', { name: 'Runs' }).click();
  await page.waitForURL(`${gantry.url}/runs`);
  await page.locator('h1', { hasText: 'Runs' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'navigated without a reload');
  assert.equal(await page.getByRole('link', { name: 'Runs' }).getAttribute('aria-current'), 'page');
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
