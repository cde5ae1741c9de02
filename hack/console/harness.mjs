// harness.mjs: what console-test.mjs and fleet-test.mjs share. run()
// parses --name value arguments over defaults, opens a page in Debian's
// chromium (headless, through playwright-core), hands it to the script's
// body with a screenshot helper and the result object, and prints the
// result as one JSON object on stdout: the Go tests judge it. The exit
// status is 0 when the JSON was printed (even if it reports problems), 1
// when the browser could not be driven (the JSON then has "error").
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

// playwright-core is a CommonJS package found through NODE_PATH, which
// ES module imports ignore.
const { chromium } = createRequire(path.join(process.cwd(), 'x.js'))('playwright-core');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// args parses --name value pairs; only the names of defaults are taken,
// and those of required must be given.
function args(defaults, required) {
  const o = Object.assign({ out: '.', chromium: process.env.CHROMIUM || '/usr/bin/chromium' }, defaults);
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const k = a[i].replace(/^--/, '');
    if (!(k in o) || i + 1 >= a.length) throw new Error(`bad argument ${a[i]}`);
    o[k] = a[i + 1];
  }
  for (const k of required) if (!o[k]) throw new Error(`--${k} is required`);
  return o;
}

// run drives body(page, o, shot, result) in a fresh browser context
// (contextOptions added to a 1280×900 viewport) and prints result.
export function run({ defaults, required = [], contextOptions = {}, timeout = 20000 }, body) {
  const main = async () => {
    const o = args(defaults, required);
    fs.mkdirSync(o.out, { recursive: true });
    const result = { errors: [], screenshots: {} };
    const browser = await chromium.launch({ executablePath: o.chromium, args: ['--no-sandbox'] });
    try {
      const context = await browser.newContext(Object.assign({ viewport: { width: 1280, height: 900 } }, contextOptions));
      const page = await context.newPage();
      page.setDefaultTimeout(timeout);
      page.on('pageerror', (e) => result.errors.push('page error: ' + e.message));
      page.on('console', (m) => { if (m.type() === 'error') result.errors.push('console: ' + m.text()); });
      const shot = async (name) => {
        const file = path.resolve(o.out, name + '.png');
        await page.screenshot({ path: file, fullPage: true });
        result.screenshots[name] = file;
      };
      await body(page, o, shot, result);
    } catch (e) {
      result.error = String(e && e.stack || e);
    } finally {
      await browser.close();
    }
    process.stdout.write(JSON.stringify(result) + '\n');
    return result.error ? 1 : 0;
  };
  main().then((code) => process.exit(code), (e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
  });
}
