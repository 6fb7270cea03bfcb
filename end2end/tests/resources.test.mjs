// The live resource tree, against an emulated cluster (the kube-emulator
// binary, the only stand-in: no real API server installs here): two apps
// deploy to it; an admin opens shop's staging tree, expands its Deployment
// to its ReplicaSet and Pods; a developer of shop reads a pod's log and is
// refused billing's. A third app, catalog, rolls out ring by ring over two
// registrations of the cluster; its run page shows each ring.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { artifacts, launchBrowser, pastTheEdge, seriousViolations, signIn, startGantry, watchProblems } from './support.mjs';

// The real kubectl `./x` installs (DESIGN.md §6).
const kubectl = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '.tools', 'bin', 'kubectl');

let emulator;
let gantry;
let browser;
let workdir;

const git = (cwd, ...args) => execFileSync('git', args, {
  cwd,
  env: { ...process.env, GIT_AUTHOR_NAME: 'e2e', GIT_AUTHOR_EMAIL: 'e2e@example.com', GIT_COMMITTER_NAME: 'e2e', GIT_COMMITTER_EMAIL: 'e2e@example.com' },
  stdio: ['ignore', 'pipe', 'pipe'],
}).toString();

function repo(name, files) {
  const dir = join(workdir, name);
  mkdirSync(dir, { recursive: true });
  git(dir, 'init', '-q', '-b', 'master');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'first');
  return dir;
}

const manifests = (app) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: ${app} } }
  template:
    metadata: { labels: { app: ${app} } }
    spec:
      containers:
        - name: web
          image: "registry.example.com/${app}:{{ short_sha }}"
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: ${app} }
  ports: [{ port: 80 }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings }
data: { env: "{{ env }}" }
`;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), 'gantry-tree-'));
  const bin = process.env.E2E_KUBE_EMULATOR_BIN;
  if (!bin) throw new Error('E2E_KUBE_EMULATOR_BIN must point at the kube-emulator binary (./x test sets it)');
  emulator = spawn(bin, [], { stdio: ['ignore', 'pipe', 'inherit'] });
  const said = await new Promise((resolve, reject) => {
    let seen = '';
    emulator.stdout.on('data', (chunk) => {
      seen += chunk;
      const line = seen.split('\n')[0];
      if (seen.includes('\n')) resolve(JSON.parse(line));
    });
    emulator.once('exit', (code) => reject(new Error(`the emulator exited with ${code}`)));
  });
  const sources = {};
  for (const app of ['shop', 'billing', 'catalog']) {
    sources[app] = repo(app, { 'README.md': `${app}\n` });
  }
  const files = {};
  for (const app of ['shop', 'billing']) {
    files[`apps/${app}/app.yaml`] = `apiVersion: gantry.dev/v1\nsource: ${sources[app]}\nstack:\n  - env: staging\n    branch: master\n    target: dev\n`;
    files[`apps/${app}/pipeline.yaml`] = 'apiVersion: gantry.dev/v1\nsteps:\n  - { name: build, run: "true" }\n  - deploy\n';
    files[`apps/${app}/deploy/app.yaml`] = manifests(app);
  }
  // Two rings: dev, then dev-b (the same cluster registered twice, as no
  // second one can run here), each analysed by nothing but its rollout.
  files['apps/catalog/app.yaml'] = `apiVersion: gantry.dev/v1\nsource: ${sources.catalog}\nstack:\n  - env: staging\n    branch: master\n    targets: [dev, dev-b]\n    rollout: { rings: [[dev], [dev-b]] }\n`;
  files['apps/catalog/pipeline.yaml'] = files['apps/shop/pipeline.yaml'];
  files['apps/catalog/deploy/app.yaml'] = manifests('catalog');
  const pipeline = repo('pipeline', files);
  gantry = await startGantry({ env: { GANTRY_PIPELINE_REPO: pipeline, GANTRY_POLL_INTERVAL: '1s' } });
  gantry.kubeconfig = said.kubeconfig;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gantry?.stop();
  emulator?.kill('SIGTERM');
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

// Waits until both apps' staging serves on the cluster.
async function bothLive(page) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const response = await page.request.get(`${gantry.url}/api/v1/environments`);
    if (response.ok()) {
      const live = (await response.json()).filter((e) => e.state === 'live').map((e) => e.app).sort();
      if (live.join() === 'billing,shop') return;
    }
    if (Date.now() > deadline) throw new Error('shop and billing did not go live on the cluster within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

test('an environment\'s resource tree: a Deployment\'s ReplicaSet and Pods, a pod\'s log for its developers only', async () => {
  const context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const problems = watchProblems(page);
  await signIn(page, gantry.url);

  // The cluster, registered as an admin does.
  await page.goto(`${gantry.url}/clusters`);
  await page.locator('.frame[data-hydrated="true"]').waitFor({ timeout: 30_000 });
  await page.locator('input[name="name"]').fill('dev');
  await page.locator('textarea[name="kubeconfig"]').fill(gantry.kubeconfig);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('[data-testid="cluster-outcome"], [data-testid="cluster-error"]').first().waitFor({ timeout: 30_000 });
  await bothLive(page);

  // From the app's page to its staging tree.
  await page.goto(`${gantry.url}/apps/shop`);
  await page.getByTestId('resource-links').getByRole('link', { name: 'staging' }).click();
  await page.waitForURL(`${gantry.url}/apps/shop/environments/staging/resources`);
  const tree = page.getByTestId('resource-tree');
  await tree.waitFor({ timeout: 30_000 });
  const deployment = tree.locator('li.resource[data-object="Deployment/web"]');
  assert.equal(await deployment.getAttribute('data-health'), 'healthy');
  assert.match(await page.getByTestId('tree-counts').textContent(), /3\s*healthy/);

  // Expanded: its ReplicaSet, and under it two healthy Pods (the page
  // refreshes itself and keeps it open).
  await deployment.locator('summary').click();
  const replicaSet = deployment.locator('li.child[data-object^="ReplicaSet/web-"]');
  await replicaSet.waitFor();
  const pods = replicaSet.locator('li.child[data-object^="Pod/web-"]');
  await page.waitForFunction(() => document.querySelectorAll('li.child[data-object^="Pod/web-"][data-health="healthy"]').length === 2, null, { timeout: 30_000 });
  assert.equal(await pods.count(), 2);
  assert.equal(await deployment.locator('details').getAttribute('open'), '');
  for (const scheme of ['light', 'dark']) {
    for (const [width, height] of [[1440, 900], [390, 844]]) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.setViewportSize({ width, height });
      assert.deepEqual(await seriousViolations(page), [], `${scheme} ${width}px`);
      assert.deepEqual(await pastTheEdge(page), [], `${scheme} ${width}px`);
      await page.screenshot({ path: join(artifacts, `resource-tree-${width}-${scheme}.png`), fullPage: true });
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1440, height: 900 });
  const logHref = await pods.first().getByRole('link', { name: 'Log' }).getAttribute('href');

  // The live object and its difference from what was applied (admins):
  // scaled by hand with the real kubectl, the Deployment reads drifted and
  // the diff says how.
  const kubeconfig = join(workdir, 'kubeconfig');
  writeFileSync(kubeconfig, gantry.kubeconfig);
  execFileSync(kubectl, ['--kubeconfig', kubeconfig, '-n', 'shop-staging', 'scale', 'deployment/web', '--replicas=3']);
  await page.waitForFunction(() => document.querySelector('li.resource[data-object="Deployment/web"] .sync-drifted') !== null, null, { timeout: 30_000 });
  await deployment.getByRole('link', { name: 'Live object and diff' }).click();
  await page.getByTestId('object-live').waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId('object-heading').textContent(), /Deployment\/web/);
  const diff = await page.getByTestId('object-diff').textContent();
  assert.match(diff, /-\s+replicas: 2/);
  assert.match(diff, /\+\s+replicas: 3/);
  assert.match(await page.getByTestId('object-live').textContent(), /replicas: 3/);
  for (const [scheme, width, height] of [['light', 1440, 900], ['dark', 390, 844]]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.setViewportSize({ width, height });
    assert.deepEqual(await seriousViolations(page), [], `${scheme} ${width}px`);
    assert.deepEqual(await pastTheEdge(page), [], `${scheme} ${width}px`);
    await page.screenshot({ path: join(artifacts, `live-object-${width}-${scheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1440, height: 900 });
  assert.match(logHref, /^\/apps\/shop\/environments\/staging\/pods\/web-[a-z0-9-]+\?cluster=dev&container=web$/);

  // A token for a developer of shop, as its owner would make it.
  await page.goto(`${gantry.url}/tokens`);
  await page.locator('.frame[data-hydrated="true"]').waitFor({ timeout: 30_000 });
  await page.locator('input[name="name"]').fill('shop-dev');
  await page.locator('select[name="role"]').selectOption('developer');
  await page.locator('input[name="app"]').fill('shop');
  await page.locator('input[name="expires"]').fill('1d');
  await page.getByRole('button', { name: 'Make token' }).click();
  const shown = await page.getByTestId('token-secret').textContent({ timeout: 30_000 });
  const token = shown.trim().split(' ').pop();

  // billing's pods, as the admin sees them.
  const billing = await (await page.request.get(`${gantry.url}/api/v1/apps/billing/environments/staging/resources?kind=Deployment`)).json();
  const billingPod = billing.objects[0].children[0].children[0].name;

  const developer = await browser.newContext({ extraHTTPHeaders: { Authorization: `Bearer ${token}` } });
  const dev = await developer.newPage();
  await dev.goto(`${gantry.url}${logHref}`);
  const log = dev.getByTestId('pod-log');
  await log.waitFor({ timeout: 30_000 });
  assert.match(await log.textContent(), /web started from registry\.example\.com\/shop:/);
  await dev.screenshot({ path: join(artifacts, 'pod-log-1440-light.png'), fullPage: true });
  // Not billing's: refused, and nothing of its log shown.
  await dev.goto(`${gantry.url}/apps/billing/environments/staging/pods/${billingPod}?cluster=dev&container=web`);
  const refusal = dev.getByRole('alert');
  await refusal.waitFor({ timeout: 30_000 });
  assert.match(await refusal.textContent(), /developer|does not have it/);
  assert.equal(await dev.getByTestId('pod-log').count(), 0);
  const api = await dev.request.get(`${gantry.url}/api/v1/apps/billing/environments/staging/pods/${billingPod}/log`);
  assert.equal(api.status(), 403);
  await developer.close();

  assert.deepEqual(problems, []);
  await context.close();
});

test('a rollout ring by ring shows each ring on its run page', async () => {
  const context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const problems = watchProblems(page);
  await signIn(page, gantry.url);
  await page.goto(`${gantry.url}/clusters`);
  await page.locator('.frame[data-hydrated="true"]').waitFor({ timeout: 30_000 });
  await page.getByRole('textbox', { name: 'Name' }).fill('dev-b');
  await page.locator('textarea[name="kubeconfig"]').fill(gantry.kubeconfig);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('[data-testid="cluster-outcome"], [data-testid="cluster-error"]').first().waitFor({ timeout: 30_000 });

  // catalog's run, once it went through both rings.
  const deadline = Date.now() + 120_000;
  let run;
  for (;;) {
    const runs = await (await page.request.get(`${gantry.url}/api/v1/runs?app=catalog`)).json();
    run = runs.find((r) => r.state === 'succeeded');
    if (run) break;
    const failed = runs.find((r) => r.state === 'failed');
    if (failed) throw new Error(`catalog's run failed: ${JSON.stringify(await (await page.request.get(`${gantry.url}/api/v1/runs/${failed.id}`)).json())}`);
    if (Date.now() > deadline) throw new Error(`catalog did not roll out within 120 s: ${JSON.stringify(runs)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await page.goto(`${gantry.url}/runs/${run.id}`);
  const panel = page.getByTestId('run-rollout');
  await panel.waitFor({ timeout: 30_000 });
  assert.match(await panel.locator('h2').textContent(), /Rollout/);
  const rings = await page.getByTestId('rollout-rings').locator('li').allTextContents();
  assert.deepEqual(rings.map((r) => r.replace(/\s+/g, ' ').trim()), ['dev done', 'dev-b done']);
  for (const scheme of ['light', 'dark']) {
    for (const [width, height] of [[1440, 900], [390, 844]]) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.setViewportSize({ width, height });
      assert.deepEqual(await seriousViolations(page), [], `${scheme} ${width}px`);
      assert.deepEqual(await pastTheEdge(page), [], `${scheme} ${width}px`);
      await page.screenshot({ path: join(artifacts, `run-rings-${width}-${scheme}.png`), fullPage: true });
    }
  }
  // The app's promotion graph says how staging rolls out, ring by ring.
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.goto(`${gantry.url}/apps/catalog`);
  const stage = page.getByTestId('promotion-graph').locator('[data-environment="staging"]');
  assert.match(await stage.getByTestId('stage-strategy').textContent(), /rolls out whole \(rolling\) · rings dev → dev-b/);
  await page.screenshot({ path: join(artifacts, 'app-rings-1440-light.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await context.close();
});
