// Single sign-on in Chromium: Gantry sends the person to the identity
// provider (oidc-provider, with its development login form), and back; the
// provider's `groups` decide what the dashboard offers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, freePort, launchBrowser, startGantry, startProvider, watchProblems } from './support.mjs';

let provider;
let gantry;
let browser;

before(async () => {
  const port = await freePort();
  provider = await startProvider(port);
  gantry = await startGantry({
    port,
    devLogin: false,
    env: {
      GANTRY_OIDC_ISSUER: provider.issuer,
      GANTRY_OIDC_CLIENT_ID: 'gantry',
      GANTRY_OIDC_CLIENT_SECRET: 'gantry-test-secret',
    },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gantry?.stop();
  await provider?.stop();
});

// Through the provider's login and consent pages, back to Gantry.
async function signInWithProvider(page, login, returnTo) {
  await page.goto(`${gantry.url}/auth/login?return_to=${encodeURIComponent(returnTo)}`);
  await page.waitForURL((url) => url.href.startsWith(provider.issuer));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any password');
  await page.screenshot({ path: join(artifacts, 'sso-provider-login.png') });
  await page.locator('button[type="submit"]').click();
  // The consent page, then back to Gantry.
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((url) => url.href.startsWith(gantry.url));
  await page.getByTestId('account').waitFor({ timeout: 30_000 });
}

test('an admin signs in through the identity provider and lands where they were going', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchProblems(page);
  await signInWithProvider(page, 'alice', '/audit');
  assert.equal(new URL(page.url()).pathname, '/audit');
  assert.match(await page.getByTestId('account').textContent(), /alice/);
  // Admin-only areas are offered.
  await page.getByRole('link', { name: 'Settings' }).waitFor();
  await page.getByRole('link', { name: 'Clusters' }).waitFor();
  await page.screenshot({ path: join(artifacts, 'sso-signed-in-admin.png'), fullPage: true });
  // The session cookie is not readable by scripts.
  assert.equal(await page.evaluate(() => document.cookie.includes('gantry')), false);
  // Gantry's pages load cleanly (the provider's pages are not ours to judge).
  const ours = problems.filter((p) => p.includes(gantry.url) && !p.includes(provider.issuer));
  assert.deepEqual(ours, []);
  await context.close();
});

test('a tester is signed in without the admin areas', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signInWithProvider(page, 'tess', '/');
  assert.match(await page.getByTestId('account').textContent(), /tess/);
  assert.equal(await page.getByRole('link', { name: 'Settings' }).count(), 0);
  assert.equal(await page.getByRole('link', { name: 'Clusters' }).count(), 0);
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).json());
  assert.deepEqual(me.grants, [{ role: 'tester', app: null }]);
  await context.close();
});
