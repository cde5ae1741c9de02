// fleet-test.mjs: drives wapper-cloud's fleet console in a headless
// chromium (Debian's, through playwright-core) and prints what it saw as
// one JSON object on stdout; e2e/fleet_console_test.go judges it. It checks
// nothing itself, so that the Go test reports every difference at once.
//
//   NODE_PATH=$(hack/console/ensure-playwright.sh)/node_modules \
//     node hack/console/fleet-test.mjs --url https://127.0.0.1:8443/ --token T --out DIR
//
// Options:
//   --url URL           the console (wapper-cloud's --listen address; its certificate is not checked)
//   --out DIR           where the screenshots go (nodes.png, node.png, devices.png, plugins.png)
//   --token TOKEN       a Kubernetes token allowed to read the fleet
//   --weak TOKEN        a token of a user who may not, tried first
//   --node NAME         a node with a host connected (node-a)
//   --device NS/NAME    a device of that node with a numeric, changing reading (e2e/a1)
//   --chromium PATH     /usr/bin/chromium (or $CHROMIUM)
//
// Exit status and JSON output: see harness.mjs.
import { run, sleep } from './harness.mjs';

const text = (s) => s.replace(/\s+/g, ' ').trim();

const options = {
  defaults: { url: '', token: '', weak: '', node: 'node-a', device: 'e2e/a1' },
  required: ['url', 'token'],
  contextOptions: { ignoreHTTPSErrors: true }, // wapper-cloud's certificate is its own
  timeout: 30000,
};

run(options, async (page, o, shot, result) => {
  const useToken = async (tok) => {
    await page.fill('#token-form [name=token]', tok);
    await page.click('#token-form [type=submit]');
  };

  // Without a token the fleet is refused and the page asks for one;
  // a user who may not list MapperPlugins is refused with the reason.
  await page.goto(o.url);
  await page.waitForSelector('#token-form:not([hidden])');
  result.askedToken = true;
  result.tokenWhy = await page.textContent('#token-why');
  if (o.weak) {
    await useToken(o.weak);
    await page.waitForFunction((old) => {
      const why = document.querySelector('#token-why').textContent;
      return !document.querySelector('#token-form').hidden && why !== old && why !== '';
    }, result.tokenWhy);
    result.weakWhy = await page.textContent('#token-why');
  }
  await useToken(o.token);

  // Nodes: the connected one, in sync once it has acknowledged its set.
  const row = `#nodes tr[data-node="${o.node}"]`;
  await page.waitForSelector(`${row} td.link .badge.connected`);
  try {
    await page.waitForSelector(`${row} td.sync .badge.in-sync`, { timeout: 60000 });
  } catch { /* reported below as it is */ }
  result.nodes = await page.$$eval('#nodes tr[data-node]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.node, tr.innerText.replace(/\s+/g, ' ').trim()])));
  const visible = async () => page.$$eval('#nodes tr[data-node]', (trs) => trs.filter((tr) => !tr.hidden).map((tr) => tr.dataset.node));
  await page.fill('#filter', o.node.toUpperCase());
  result.filterMatch = await visible();
  await page.fill('#filter', '');
  await shot('nodes');

  // A node's page: its facts, plugins and devices, with readings that
  // change as the page refreshes.
  await page.click(`${row} a`);
  const dev = `#devices tr[data-device="${o.device}"]`;
  await page.waitForFunction((sel) => /\d/.test(document.querySelector(sel + ' td.readings')?.textContent || ''), dev);
  result.nodeFacts = text(await page.innerText('#node-facts'));
  result.nodePlugins = text(await page.innerText('#node-plugins tbody'));
  result.deviceRow = text(await page.innerText(dev));
  result.readings = [text(await page.textContent(`${dev} td.readings`))];
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    await sleep(1000);
    const r = text(await page.textContent(`${dev} td.readings`));
    if (r !== result.readings[0]) { result.readings.push(r); break; }
  }
  await shot('node');

  // Every device, and the plugins with their rollouts.
  await page.click('nav a[data-nav=devices]');
  await page.waitForSelector(dev);
  result.devices = await page.$$eval('#devices tr[data-device]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.device, tr.innerText.replace(/\s+/g, ' ').trim()])));
  await shot('devices');
  await page.click('nav a[data-nav=plugins]');
  await page.waitForSelector('#plugins tr[data-plugin]');
  result.plugins = await page.$$eval('#plugins tr[data-plugin]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.plugin, tr.innerText.replace(/\s+/g, ' ').trim()])));
  await shot('plugins');
});
