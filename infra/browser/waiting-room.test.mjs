// Real-browser tests of the waiting room (gateway/assets/waiting.html) against a
// running stack. Each test makes its own event, so they can run in parallel and
// be re-run; events are left behind (the API has no delete yet).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_URL,
  DESKTOP,
  PHONE,
  createEvent,
  eventPageUrl,
  eventually,
  join,
  launchBrowser,
  newContext,
  screenshot,
  setAdmission,
  waitAdmitted,
} from './floodgate.mjs';

const TITLE = 'Browser test gig';
let browser;

before(async () => {
  const health = await fetch(`${BASE_URL}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch((e) => e);
  assert.ok(health.ok, `gateway not reachable at ${BASE_URL} (run infra/stack up): ${health.message ?? health.status}`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

const text = async (page, sel) => (await page.locator(sel).textContent())?.trim();

/** Resolves with the next status poll the page makes (and its JSON). */
async function nextPoll(page, slug, timeout = 5_000) {
  const res = await page.waitForResponse((r) => new URL(r.url()).pathname === `/queue/${slug}/status`, { timeout });
  assert.equal(res.status(), 200, 'status poll answered 200');
  return res.json();
}

test('waiting room on a phone: place, people ahead, live headline, then moves on by itself', { timeout: 60_000 }, async (t) => {
  const slug = await createEvent({ title: TITLE, queue: { mode: 'on', rate_per_minute: 0 } });
  for (let i = 1; i <= 3; i++) {
    const j = await join(slug);
    assert.equal(j.position, i, `outside join ${i} got position ${i}`);
  }

  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();

  const res = await page.goto(`/queue/${slug}`);
  assert.equal(res.status(), 200);
  assert.equal(new URL(page.url()).pathname, `/queue/${slug}`);
  assert.match(await page.title(), new RegExp(TITLE));
  assert.equal(await text(page, 'h1'), TITLE);

  // Server-rendered values.
  assert.equal(await text(page, '#position'), '4');
  assert.equal(await text(page, '#ahead'), '3');
  assert.equal(await text(page, '#headline'), "You're in line.");
  assert.equal(await text(page, '#eta'), '—', 'no ETA while nobody is being admitted');

  // Accessibility hooks.
  const live = await page.locator('#headline').getAttribute('aria-live');
  assert.ok(live === 'polite' || live === 'assertive', `aria-live on #headline, got ${live}`);
  const bar = page.locator('#progress');
  assert.equal(await bar.count(), 1, 'progress bar exists');
  assert.equal(await bar.getAttribute('role'), 'progressbar');
  assert.ok(await bar.isVisible(), 'progress bar visible');
  for (const [attr, lo, hi] of [['aria-valuemin', 0, 0], ['aria-valuemax', 100, 100], ['aria-valuenow', 0, 100]]) {
    const v = Number(await bar.getAttribute(attr));
    assert.ok(v >= lo && v <= hi, `${attr}=${v}`);
  }

  // The page polls status by itself; after a poll it still shows the same place.
  const st = await nextPoll(page, slug);
  assert.equal(st.state, 'waiting');
  assert.equal(st.position, 4);
  assert.ok(st.retry_after_ms > 0, 'retry_after_ms is set');
  await eventually(async () => {
    assert.equal(await text(page, '#position'), '4');
    assert.equal(await text(page, '#ahead'), '3');
    assert.equal(await text(page, '#headline'), "You're in line.");
  });

  // Readable on a phone: nothing wider than the screen, the numbers large enough.
  const layout = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    ddFontPx: parseFloat(getComputedStyle(document.getElementById('position')).fontSize),
    headlineFontPx: parseFloat(getComputedStyle(document.getElementById('headline')).fontSize),
  }));
  assert.ok(layout.scrollWidth <= layout.innerWidth, `no horizontal scroll (${layout.scrollWidth} > ${layout.innerWidth})`);
  assert.ok(layout.ddFontPx >= 16 && layout.headlineFontPx >= 16, `font sizes ${JSON.stringify(layout)}`);

  await screenshot(page, 'waiting-room-phone.png');

  // Open the gate: the page must notice and move on to the event page on its own.
  await setAdmission(slug, { rate_per_minute: 6000 });
  await page.waitForURL(eventPageUrl(slug), { timeout: 10_000 });
  assert.equal(await text(page, 'h1'), TITLE, 'event page shows the title');
  await screenshot(page, 'admitted-event-page.png');

  const cookies = await context.cookies(BASE_URL);
  const admission = cookies.find((c) => c.name === `fg_a_${slug}`);
  assert.ok(admission, `cookie fg_a_${slug} set; have ${cookies.map((c) => c.name).join(', ')}`);
  assert.equal(admission.httpOnly, true, 'admission cookie is HttpOnly');
  assert.ok(admission.value.length > 20, 'admission cookie has a token');
  assert.ok(!(await page.evaluate(() => document.cookie)).includes('fg_a_'), 'admission cookie hidden from scripts');

  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('the wait is a range the configured rate can meet, and the bar starts empty for a late joiner', { timeout: 60_000 }, async (t) => {
  // Thirty people go through first, then the line slows to one every 10 s.
  const slug = await createEvent({ title: TITLE, queue: { mode: 'on', rate_per_minute: 6000, max_active: 1000 } });
  for (let i = 0; i < 30; i++) await join(slug);
  await waitAdmitted(slug, 30);
  await setAdmission(slug, { rate_per_minute: 6 });
  for (let i = 0; i < 5; i++) await join(slug);

  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();
  assert.equal((await page.goto(`/queue/${slug}`)).status(), 200);
  const position = Number(await text(page, '#position'));
  assert.ok(position >= 5 && position <= 6, `place ${position}`);
  // Five or six ahead at 6/min: a range of minutes, never sooner than the rate allows.
  const eta = await text(page, '#eta');
  const m = eta.match(/^(\d+)–(\d+) min$/);
  assert.ok(m, `the wait reads as a range: ${eta}`);
  assert.ok(Number(m[1]) * 60 <= position * 10 + 60 && Number(m[2]) * 60 >= position * 10, `${eta} for place ${position}`);
  const st = await nextPoll(page, slug);
  assert.ok(st.eta_min_seconds >= st.position * 10 - 1, `never faster than the rate: ${JSON.stringify(st)}`);
  assert.ok(st.eta_min_seconds <= st.eta_seconds && st.eta_seconds <= st.eta_max_seconds, JSON.stringify(st));
  // The thirty admitted before this visitor joined are not their progress.
  const now = Number(await page.locator('#progress').getAttribute('aria-valuenow'));
  assert.ok(now <= 20, `progress since joining, not since the queue opened: ${now} %`);
  await screenshot(page, 'waiting-room-range.png');

  // The icon every browser asks for.
  const icon = await page.request.get('/favicon.ico');
  assert.equal(icon.status(), 200);
  assert.equal(icon.headers()['content-type'], 'image/x-icon');
  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('paused queue says so, on a desktop screen', { timeout: 60_000 }, async (t) => {
  const slug = await createEvent({ title: TITLE, queue: { mode: 'paused', rate_per_minute: 0 } });

  const { context, errors } = await newContext(browser, DESKTOP);
  t.after(() => context.close());
  const page = await context.newPage();

  const res = await page.goto(`/queue/${slug}`);
  assert.equal(res.status(), 200);
  assert.match(await text(page, '#headline'), /paused/i);
  assert.equal(await text(page, '#position'), '1', 'a visitor arriving while paused still gets a place');
  assert.equal(await text(page, '#eta'), '—');
  assert.equal(await page.locator('main').getAttribute('class'), 'state-paused');

  // After a poll the script keeps saying paused.
  const st = await nextPoll(page, slug);
  assert.equal(st.state, 'paused');
  await eventually(async () => assert.match(await text(page, '#headline'), /paused/i));
  assert.equal(new URL(page.url()).pathname, `/queue/${slug}`, 'stays in the waiting room');

  await screenshot(page, 'waiting-room-paused.png');
  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('works with JavaScript off: server-rendered place, meta refresh, 303 once admitted', { timeout: 60_000 }, async (t) => {
  const slug = await createEvent({ title: TITLE, queue: { mode: 'on', rate_per_minute: 0 } });
  await join(slug);
  await join(slug);

  const { context } = await newContext(browser, { ...DESKTOP, javaScriptEnabled: false });
  t.after(() => context.close());
  const page = await context.newPage();

  const queuePath = `/queue/${slug}`;
  const res = await page.goto(queuePath);
  assert.equal(res.status(), 200);

  // What the server sent, before any refresh: the place is in the HTML itself.
  const html = await res.text();
  assert.match(html, /<dd id="position">3<\/dd>/, 'position rendered server-side');
  assert.match(html, /<dd id="ahead">2<\/dd>/, 'people ahead rendered server-side');
  assert.match(html, /You're in line\./);
  const refresh = html.match(/<noscript>\s*<meta http-equiv="refresh" content="(\d+)"\s*\/?>\s*<\/noscript>/i);
  assert.ok(refresh, 'a <noscript><meta http-equiv=refresh> is present');
  const refreshSeconds = Number(refresh[1]);
  assert.ok(refreshSeconds >= 1 && refreshSeconds <= 60, `refresh interval ${refreshSeconds}s`);

  // With scripting off the browser parses the <noscript> meta and refreshes by itself,
  // keeping the same place (the queue cookie comes back with it).
  const again = await page.waitForResponse((r) => new URL(r.url()).pathname === queuePath && r.request().isNavigationRequest(), {
    timeout: refreshSeconds * 1000 + 5_000,
  });
  assert.equal(again.status(), 200);
  assert.match(await again.text(), /<dd id="position">3<\/dd>/, 'refresh keeps the place');

  // Admit everyone; the next refresh carries the page to the event page.
  const redirects = [];
  context.on('response', (r) => {
    if (new URL(r.url()).pathname === queuePath && r.status() === 303) redirects.push(r.headers().location);
  });
  await setAdmission(slug, { rate_per_minute: 6000 });
  await waitAdmitted(slug, 3);
  await page.waitForURL(eventPageUrl(slug), { timeout: refreshSeconds * 1000 + 5_000 });
  assert.equal(await text(page, 'h1'), TITLE);

  // Reloading the waiting page once admitted answers 303 to the event page.
  const back = await page.goto(queuePath);
  assert.ok(eventPageUrl(slug)(page.url()), `landed on ${page.url()}`);
  assert.equal(back.status(), 200);
  const hop = back.request().redirectedFrom();
  assert.ok(hop, 'the waiting page redirected');
  const hopRes = await hop.response();
  assert.equal(hopRes.status(), 303);
  assert.equal(hopRes.headers().location, `/e/${slug}`);
  assert.ok(redirects.length >= 1 && redirects.every((l) => l === `/e/${slug}`), `303s seen: ${redirects}`);
  assert.equal(await text(page, 'h1'), TITLE);

  const admission = (await context.cookies(BASE_URL)).find((c) => c.name === `fg_a_${slug}`);
  assert.ok(admission?.httpOnly, 'HttpOnly admission cookie set without JavaScript too');
});
