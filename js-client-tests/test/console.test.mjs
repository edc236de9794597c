// The web console in a real browser (Debian's chromium, driven by playwright-core): sign in,
// watch a pusher-js client's life in the event table, see channels with their counts and a
// presence member with its user_info, trigger an event from the form that a pusher-js client
// receives, filter and pause, and a wrong secret's clear error. Assertions are on the DOM.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { launchChromium } from '../lib/browser.mjs';
import { APP, HOST, eventually, uid, useServer, waitEvent } from '../lib/helpers.mjs';

const TIMEOUT = 15000;

describe('web console', () => {
  const env = useServer({ own: {} });
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    browser = await launchChromium();
    page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`http://${HOST}:${env.port}/`);
  });

  after(async () => {
    await browser?.close();
  });

  /** The table's rows as {type, socket, details}, newest first. */
  const rows = () => page.$$eval('#events tbody tr', (trs) => trs.map((tr) => ({
    type: tr.dataset.type,
    socket: tr.children[2].textContent,
    details: tr.children[3].firstChild.textContent,
  })));

  async function waitRow(pred, what) {
    const list = await eventually(rows, (l) => l.some(pred), { timeout: TIMEOUT, what });
    return list.find(pred);
  }

  it('a wrong secret is a clear error, and nothing is streamed', async () => {
    await page.fill('#key', APP.key);
    await page.fill('#secret', 'not-the-secret');
    await page.click('#connect');
    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.textContent(), /^Could not sign in: 401: Invalid signature: you should have sent HmacSHA256Hex\("GET\\n\/console\/app\\nauth_key=app_key&auth_timestamp=/);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'error');
    assert.equal(await page.isVisible('#panels'), false);
    assert.equal(await page.$$eval('#events tbody tr', (trs) => trs.length), 0);
  });

  it('signs in by picking the local app, and shows a client connecting and subscribing', async (t) => {
    // Opened from loopback: the page offers the server's apps, with the public default's secret.
    await page.locator('#apps-field').waitFor({ state: 'visible' });
    await page.selectOption('#apps', APP.key);
    assert.equal(await page.inputValue('#key'), APP.key);
    assert.equal(await page.inputValue('#secret'), APP.secret);
    await page.click('#connect');
    await page.locator('#status[data-state="live"]').waitFor();
    assert.equal(await page.textContent('#status'), `Watching app ${APP.id} (key ${APP.key})`);
    assert.equal(await page.isVisible('#login-error'), false);

    const k = env.kit(t);
    const news = uid('news-');
    const { p } = await k.subscriber(news);
    const socketId = p.connection.socket_id;
    await waitRow((r) => r.type === 'Connection' && r.socket === socketId, 'the Connection row');
    await waitRow((r) => r.type === 'Subscribed' && r.socket === socketId && r.details === `Channel: ${news}`, 'the Subscribed row');
    await waitRow((r) => r.type === 'Channel occupied' && r.details === `Channel: "${news}"`, 'the occupied row');
    assert.ok(Number(await page.textContent('#event-count')) >= 3);
    assert.equal(await page.getAttribute('#events tbody tr[data-type="Connection"]', 'class'), 'connection');

    // An API message and a client event.
    await env.sdk.trigger([news], 'greet', { hello: 'world' });
    const api = await waitRow((r) => r.type === 'API Message', 'the API Message row');
    assert.equal(api.details, `Channels: ["${news}"], Event: greet`);
    assert.equal(await page.textContent('#events tbody tr[data-type="API Message"] td .data'), '{"hello":"world"}');

    const room = uid('presence-room-');
    const { ch } = await k.subscriber(room, { user: { id: 'ada', info: { name: 'Ada Lovelace' } } });
    ch.trigger('client-typing', { on: true });
    const clientEvent = await waitRow((r) => r.type === 'Client Event Message', 'the client event row');
    assert.equal(clientEvent.details, `Channels: ["${room}"], Event: client-typing`);
    await waitRow((r) => r.type === 'Member added' && r.details === `Channel: "${room}", UserId: "ada"`, 'the member row');

    // The channels panel: counts, then the presence channel's members with their user_info.
    const counts = (name) => page.$$eval(`#channels tbody tr[data-channel="${name}"] td`, (tds) => tds.map((td) => td.textContent));
    await eventually(() => counts(news), (c) => c.length === 3 && c[1] === '1', { timeout: TIMEOUT, what: 'the news channel' });
    await eventually(() => counts(room), (c) => c[1] === '1' && c[2] === '1', { timeout: TIMEOUT, what: 'the presence channel' });
    await page.click(`#channels tbody tr[data-channel="${room}"]`);
    const member = page.locator('#member-list li[data-user-id="ada"]');
    await member.waitFor();
    assert.equal(await member.textContent(), 'ada {"name":"Ada Lovelace"}');
    assert.equal(await page.textContent('#members-channel'), room);
  });

  it('triggers an event from the form that a pusher-js client receives', async (t) => {
    const name = uid('poke-');
    const { ch } = await env.kit(t).subscriber(name);
    const got = waitEvent(ch, 'poked', { timeout: TIMEOUT });
    await page.fill('#trigger-channels', name);
    await page.fill('#trigger-event', 'poked');
    await page.fill('#trigger-data', '{"from": "the console", "n": 3}');
    await page.click('#trigger-send');
    assert.deepEqual(await got, { from: 'the console', n: 3 });
    await eventually(() => page.textContent('#trigger-result'), (s) => s === `Sent to ${name}`, { timeout: TIMEOUT, what: 'the result' });

    // A refusal is shown with the server's reason.
    await page.fill('#trigger-channels', '#reserved');
    await page.click('#trigger-send');
    await eventually(() => page.textContent('#trigger-result'), (s) => s.startsWith('Refused (400): '), { timeout: TIMEOUT, what: 'the refusal' });
    assert.equal(await page.getAttribute('#trigger-result', 'data-ok'), 'false');
  });

  it('filters by type, channel and text, pauses and resumes, and keeps a capped number of rows', async (t) => {
    const name = uid('filtered-');
    await env.kit(t).subscriber(name);
    await waitRow((r) => r.type === 'Subscribed' && r.details === `Channel: ${name}`, 'the subscription');

    await page.selectOption('#filter-type', 'Subscribed');
    let shown = await rows();
    assert.ok(shown.length > 0 && shown.every((r) => r.type === 'Subscribed'), JSON.stringify(shown));
    await page.selectOption('#filter-type', '');
    await page.fill('#filter-channel', name);
    shown = await rows();
    assert.deepEqual(shown.map((r) => r.type).sort(), ['Channel occupied', 'Subscribed']);
    await page.fill('#filter-channel', '');
    await page.fill('#filter-text', 'client-typing');
    shown = await rows();
    assert.deepEqual(shown.map((r) => r.type), ['Client Event Message']);
    await page.fill('#filter-text', '');

    await page.click('#pause');
    assert.equal(await page.getAttribute('#pause', 'aria-pressed'), 'true');
    const before = (await rows()).length;
    await env.sdk.trigger([name], 'while-paused', {});
    await eventually(() => page.textContent('#pending-count'), (n) => n === '1', { timeout: TIMEOUT, what: 'the pending count' });
    assert.equal((await rows()).length, before);
    await page.click('#pause');
    await waitRow((r) => r.type === 'API Message' && r.details.endsWith('Event: while-paused'), 'the resumed row');

    await page.fill('#max-rows', '10');
    await page.dispatchEvent('#max-rows', 'change');
    assert.equal((await rows()).length, 10);
  });

  it('fits a narrow window and follows the dark colour scheme', async () => {
    if (process.env.CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT.replace('.png', '-wide.png') });
    await page.setViewportSize({ width: 420, height: 900 });
    const columns = await page.$eval('#panels', (el) => getComputedStyle(el).gridTemplateColumns.split(' ').length);
    assert.equal(columns, 1);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 420, `the page is ${width} px wide in a 420 px window`);
    await page.emulateMedia({ colorScheme: 'dark' });
    assert.equal(await page.$eval('body', (el) => getComputedStyle(el).backgroundColor), 'rgb(22, 22, 26)');
    await page.emulateMedia({ colorScheme: 'light' });
    assert.equal(await page.$eval('body', (el) => getComputedStyle(el).backgroundColor), 'rgb(250, 250, 250)');
    if (process.env.CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.CONSOLE_SCREENSHOT, fullPage: true });
    assert.deepEqual(pageErrors, []);
  });
});
