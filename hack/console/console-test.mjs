// console-test.mjs: drives wapper-host's device console in a headless
// chromium (Debian's, through playwright-core) and prints what it saw as
// one JSON object on stdout; e2e/console_test.go judges it. It checks
// nothing itself, so that the Go test reports every difference at once.
//
//   NODE_PATH=$(hack/console/ensure-playwright.sh)/node_modules \
//     node hack/console/console-test.mjs --url http://127.0.0.1:7777/ --out DIR
//
// Options (defaults fit examples/standalone):
//   --url URL           the console (wapper-host's REST address)
//   --out DIR           where the screenshots go (list.png, device.png, plugins.png)
//   --device NS/NAME    default/thermostat
//   --plot PROP         a numeric property whose plot must grow (temperature)
//   --write PROP=VALUE  a desired value to write through the page (setpoint=23.5)
//   --bad VALUE         a value the write must refuse first (warm)
//   --token TOKEN       typed into the token form when the page shows it
//   --chromium PATH     /usr/bin/chromium (or $CHROMIUM)
//
// Exit status and JSON output: see harness.mjs.
import { run, sleep } from './harness.mjs';

const options = {
  defaults: { url: '', device: 'default/thermostat', plot: 'temperature', write: 'setpoint=23.5', bad: 'warm', token: '' },
  required: ['url'],
};

run(options, async (page, o, shot, result) => {
  const [wprop, wvalue] = o.write.split('=');
  // The device list, and its filter box. A host that wants the token
  // for reads refuses the list: the page shows its token form then.
  await page.goto(o.url);
  await page.waitForSelector('#devices tbody tr, #token-form:not([hidden])', { state: 'attached' });
  result.askedToken = await page.locator('#token-form').isVisible();
  if (result.askedToken && o.token) {
    result.tokenWhy = await page.textContent('#token-why');
    await page.fill('#token-form [name=token]', o.token);
    await page.click('#token-form [type=submit]');
  }
  const row = `#devices tr[data-device="${o.device}"]`;
  await page.waitForSelector(row);
  result.devices = await page.$$eval('#devices tr[data-device]', (trs) => trs.map((tr) => tr.dataset.device));
  // The last readings fill in once the device has been read.
  await page.waitForFunction((sel) => /\d/.test(document.querySelector(sel + ' td.readings')?.textContent || ''), row);
  result.listRow = (await page.innerText(row)).replace(/\s+/g, ' ').trim();
  const visible = async () => page.$$eval('#devices tr[data-device]', (trs) => trs.filter((tr) => !tr.hidden).map((tr) => tr.dataset.device));
  await page.fill('#filter', o.device.split('/')[1].slice(0, 5).toUpperCase());
  result.filterMatch = await visible();
  await page.fill('#filter', 'no-such-device-anywhere');
  result.filterNone = await visible();
  await page.fill('#filter', '');
  await shot('list');

  // The device page: its live plot grows over about 3 s.
  await page.click(`${row} a`);
  const plot = `svg[data-prop="${o.plot}"]`;
  await page.waitForSelector(plot);
  await page.waitForFunction((sel) => Number(document.querySelector(sel).dataset.points) > 0, plot);
  const points = async () => Number(await page.getAttribute(plot, 'data-points'));
  result.plotPoints = [await points()];
  await sleep(3000);
  result.plotPoints.push(await points());
  result.live = await page.textContent('#live');

  // A desired value the device refuses, then one it takes.
  const prow = `#properties tr[data-prop="${wprop}"]`;
  const write = async (value) => {
    await page.fill(`${prow} [name=desired]`, value);
    await page.click(`${prow} button[type=submit]`);
    await page.waitForFunction((sel) => /\b(applied|failed)\b/.test(document.querySelector(sel).className), `${prow} .outcome`);
    return (await page.textContent(`${prow} .outcome`)).trim();
  };
  if (o.bad) result.badWrite = await write(o.bad);
  result.write = await write(wvalue);
  // The reported value follows once the device has been read back.
  try {
    await page.waitForFunction(([sel, v]) => document.querySelector(sel)?.textContent.trim() === v, [`${prow} td.value`, wvalue], { timeout: 10000 });
  } catch { /* reported below as it is */ }
  result.reported = (await page.textContent(`${prow} td.value`)).trim();
  await shot('device');

  // The plugins page.
  await page.click('nav a[data-nav=plugins]');
  await page.waitForSelector('#plugins tr[data-plugin]');
  result.plugins = await page.$$eval('#plugins tr[data-plugin]', (trs) => trs.map((tr) => tr.innerText.replace(/\s+/g, ' ').trim()));
  await shot('plugins');
});
