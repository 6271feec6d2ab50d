/**
 * The operator console (`GET /`) in a real headless Chromium (Debian's
 * /usr/bin/chromium driven by puppeteer-core): it renders the pools, follows
 * a backend that goes down, drains a backend on a click (asking for the
 * token), sets a weight, and shows hostile names as text.
 *
 * Skipped, with the reason, where Chromium is not installed.
 * L4LB_CONSOLE_SCREENSHOT=<file.png> saves a screenshot (docs/console.png).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTaggedServer, connect, readLine, type TestServer } from '../helpers/net';
import { L4lbProcess } from '../helpers/l4lb';
import { listenerToml, poolToml } from '../helpers/toml';
import { adminPortOf, backendOf } from '../helpers/admin';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'console-token';
const HOSTILE = '<img src=x onerror=window.__xss=1>';

type Browser = import('puppeteer-core').Browser;
type Page = import('puppeteer-core').Page;

const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)`;

describe('operator console in headless Chromium', { skip }, () => {
  let a: TestServer;
  let b: TestServer;
  let lb: L4lbProcess;
  let admin: number;
  let browser: Browser;
  let page: Page;
  let profile: string;
  const A = (): string => `127.0.0.1:${a.port}`;
  const B = (): string => `127.0.0.1:${b.port}`;

  before(async () => {
    a = await startTaggedServer('A');
    b = await startTaggedServer('B');
    lb = new L4lbProcess(
      `[admin]\nbind = "127.0.0.1:0"\ntoken = "${TOKEN}"\n` +
        listenerToml('web', 'ab') +
        listenerToml('odd', HOSTILE) +
        poolToml('ab', 'round-robin', [`{ address = "127.0.0.1:${a.port}" }`, `{ address = "127.0.0.1:${b.port}" }`], '', 'interval = "100ms"\ntimeout = "200ms"\nfall = 1\nrise = 1000') +
        `[pools.${JSON.stringify(HOSTILE)}]\nbackends = [{ address = "127.0.0.1:${a.port}" }]\n[pools.${JSON.stringify(HOSTILE)}.health_check]\nenabled = false\n`,
    );
    admin = await adminPortOf(lb);
    const puppeteer = (await import('puppeteer-core')).default;
    profile = mkdtempSync(join(tmpdir(), 'l4lb-chromium-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: profile,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`],
      timeout: 30000,
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 720 });
    // Some traffic, so the counters are not all zero.
    const port = await lb.port('web');
    for (let i = 0; i < 4; i++) {
      const c = await connect(port);
      await readLine(c);
      c.destroy();
    }
  });
  after(async () => {
    await browser?.close();
    await lb?.stop();
    await a?.close();
    await b?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  // Browser-side code is passed as expression strings (this project compiles without the DOM types).
  const stateExpr = (pool: string, address: string): string =>
    `((document.querySelector('tr[data-backend="' + CSS.escape(${JSON.stringify(`${pool}|${address}`)}) + '"] td.state') || {}).textContent || null)`;

  const stateOf = (pool: string, address: string): Promise<string | null> => page.evaluate(stateExpr(pool, address)) as Promise<string | null>;

  const waitState = (pool: string, address: string, state: string): Promise<unknown> =>
    page.waitForFunction(`${stateExpr(pool, address)} === ${JSON.stringify(state)}`, { timeout: 10000, polling: 100 });

  test('renders every listener and pool from the status API, live', async () => {
    await page.goto(`http://127.0.0.1:${admin}/`, { waitUntil: 'load', timeout: 15000 });
    await page.waitForFunction(`(document.getElementById('live').textContent || '').startsWith('live')`, { timeout: 10000 });
    assert.equal(await stateOf('ab', A()), 'up');
    assert.equal(await stateOf('ab', B()), 'up');
    const listeners = await page.$$eval('#listeners tr[data-listener]', (rows) => rows.map((r) => r.getAttribute('data-listener')));
    assert.deepEqual(listeners, ['web', 'odd']);
    const total = await page.$eval('tr[data-listener="web"] td:nth-child(6)', (td) => td.textContent);
    assert.equal(total, '4');
  });

  test('names from the configuration are text, not HTML', async () => {
    const xss = await page.evaluate('window.__xss');
    assert.equal(xss, undefined);
    const headings = await page.$$eval('h2', (hs) => hs.map((h) => h.textContent ?? ''));
    assert.ok(headings.some((h) => h.includes(HOSTILE)), headings.join(' | '));
    assert.equal(await page.$$eval('img', (imgs) => imgs.length), 0);
  });

  test('follows a backend that goes down', async () => {
    await b.close();
    await waitState('ab', B(), 'down');
    const api = await backendOf(admin, 'ab', B());
    assert.equal(api?.state, 'down');
  });

  test('a drain click asks for the token, then drains; a weight can be set', async () => {
    await page.click(`tr[data-backend="${`ab|${A()}`}"] button[data-action="drain"]`);
    await page.waitForSelector('#tokenbox:not([hidden])', { timeout: 10000 });
    await page.type('#token', TOKEN);
    await page.click('#tokenbox button[type="submit"]');
    await waitState('ab', A(), 'draining');
    assert.equal((await backendOf(admin, 'ab', A()))?.state, 'draining');
    if (process.env.L4LB_CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.L4LB_CONSOLE_SCREENSHOT, fullPage: true });

    const input = `tr[data-backend="${`ab|${A()}`}"] input[data-weight]`;
    await page.click(input, { clickCount: 3 });
    await page.type(input, '5');
    await page.click(`tr[data-backend="${`ab|${A()}`}"] button[data-action="weight"]`);
    await page.waitForFunction(`document.querySelector(${JSON.stringify(input)}).closest('tr').querySelector('td:nth-child(5)').textContent === '5'`, { timeout: 10000, polling: 100 });
    assert.equal((await backendOf(admin, 'ab', A()))?.weight, 5);

    await page.click(`tr[data-backend="${`ab|${A()}`}"] button[data-action="enable"]`);
    await waitState('ab', A(), 'up');
  });
});
