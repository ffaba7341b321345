// The live control room (console/src/control_room.rs, console/assets/control-room.js) in
// a real browser, against a running stack, with a simulated crowd joining the queue
// from this process through the gateway. The operator watches the queue fill, opens the
// gate wider, sees admissions follow, pauses, and finds both changes in the audit log.
// Screenshots go to docs/screenshots/control-room-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  BASE_URL,
  DESKTOP,
  PHONE,
  createEvent,
  eventually,
  launchBrowser,
  newContext,
  operatorToken,
  screenshot,
  sleep,
} from './floodgate.mjs';

let browser;

before(async () => {
  const health = await fetch(`${BASE_URL}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch((e) => e);
  assert.ok(health.ok, `gateway not reachable at ${BASE_URL} (run infra/stack up): ${health.message ?? health.status}`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/**
 * A crowd: `perSecond` fresh visitors join the queue each second (no cookies, so each
 * join is a new place) until stopped. Their queue tokens, in order of arrival, are in
 * `tokens` (for the buyers below). Returns { stop, stats, tokens }.
 */
function crowd(slug, perSecond) {
  let running = true;
  const stats = { joined: 0, failed: 0 };
  const tokens = [];
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      const batch = Array.from({ length: perSecond }, () =>
        fetch(`${BASE_URL}/queue/${slug}/join`, { method: 'POST', signal: AbortSignal.timeout(5_000) })
          .then(async (r) => {
            if (!r.ok) {
              stats.failed++;
              return;
            }
            stats.joined++;
            const j = await r.json();
            if (j.queue_token) tokens.push(j.queue_token);
          })
          .catch(() => stats.failed++),
      );
      await Promise.all(batch);
      await sleep(Math.max(0, 1000 - (Date.now() - started)));
    }
  })();
  return {
    stats,
    tokens,
    async stop() {
      running = false;
      await loop;
    },
  };
}

const SANDBOX_KEY = process.env.FLOODGATE_SANDBOX_KEY || 'sk_test_floodgate';

/**
 * Buyers: `workers` people in the crowd at a time wait for their admission and buy one
 * seat (hold, checkout, pay at the sandbox); one in `buyEvery` of the crowd buys, every
 * fourth buyer's first card is declined. Checkout is slower than a wide-open gate, as
 * in life. Returns { stop, stats }.
 */
function buyers(slug, people, { workers = 3, buyEvery = 3 } = {}) {
  let running = true;
  let next = 0;
  const stats = { paid: 0, declined: 0, failed: 0 };
  const api = async (method, url, token, body) => {
    const res = await fetch(url.startsWith('http') ? url : BASE_URL + url, {
      method,
      headers: {
        Accept: 'application/json',
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body ? { 'Content-Type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  };
  async function buyOne(n, queueToken) {
    let admission;
    while (running && !admission) {
      const st = await api('GET', `/queue/${slug}/status`, queueToken);
      if (st.body.state === 'admitted') admission = st.body.admission_token;
      else await sleep(400);
    }
    if (!admission) return;
    const tier = n % 2 ? 'ga' : 'early';
    const hold = await api('POST', `/api/events/${slug}/holds`, admission, {
      tier,
      quantity: 1,
      email: `buyer${n}@example.test`,
      name: `Buyer ${n}`,
    });
    if (hold.status !== 201) return void stats.failed++;
    const co = await api('POST', `/api/holds/${hold.body.hold_id}/checkout`, admission);
    if (co.status !== 201) return void stats.failed++;
    const confirm = `${new URL(co.body.payment.pay_url).origin}/v1/payment_intents/${co.body.payment.intent_id}/confirm`;
    for (const method of n % 4 === 0 ? ['pm_card_chargeDeclined', 'pm_card_visa'] : ['pm_card_visa']) {
      const res = await fetch(confirm, {
        method: 'POST',
        headers: { Authorization: `Bearer ${SANDBOX_KEY}`, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ payment_method: method }),
        signal: AbortSignal.timeout(10_000),
      });
      await res.arrayBuffer();
      if (res.status === 200) return void stats.paid++;
      stats.declined++;
    }
  }
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const n = next;
      if (n * buyEvery >= people.tokens.length) {
        await sleep(200);
        continue;
      }
      next++;
      await buyOne(n, people.tokens[n * buyEvery]).catch(() => stats.failed++);
    }
  });
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** The number shown in a key-number cell ("1,234" → 1234; "—" → NaN). */
async function shown(page, id) {
  const text = (await page.locator(`#${id}`).textContent())?.trim() ?? '';
  return Number(text.replace(/[^0-9.]/g, '') || NaN);
}

async function operatorContext(options = DESKTOP) {
  return newContext(browser, {
    ...options,
    extraHTTPHeaders: { Authorization: `Bearer ${operatorToken()}` },
    colorScheme: 'light',
  });
}

/** Applies a change through the page: the control, the reason dialog, the result line. */
async function confirmWith(page, reason) {
  const dialog = page.locator('#confirm');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await page.locator('#confirm-what').textContent(), /\S/, 'the dialog says what will change');
  await page.locator('#reason').fill(reason);
  await page.locator('#confirm-ok').click();
  await dialog.waitFor({ state: 'hidden' });
  await eventually(async () => assert.match(await page.locator('#steer-result').textContent(), /^Applied/), { timeout: 5_000 });
}

test('control room: the crowd shows, the rate control steers admissions, pause flattens them, all audited', { timeout: 120_000 }, async (t) => {
  const slug = await createEvent({
    title: 'Control room gig',
    queue: { mode: 'on', rate_per_minute: 60, max_active: 5000 },
    tiers: [
      { code: 'early', name: 'Early bird', price_cents: 1500, currency: 'EUR', capacity: 100 },
      { code: 'ga', name: 'General', price_cents: 2500, currency: 'EUR', capacity: 400 },
    ],
  });
  const people = crowd(slug, 25);
  t.after(() => people.stop());
  const shoppers = buyers(slug, people);
  t.after(() => shoppers.stop());

  const { context, errors } = await operatorContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));

  const res = await page.goto(`/console/events/${slug}/live`);
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /Control room gig/);
  assert.match(res.headers()['content-security-policy'] ?? '', /script-src 'self'/);

  // Accessible structure: named charts, labelled controls, a polite live summary.
  assert.equal(await page.locator('#live-summary').getAttribute('aria-live'), 'polite');
  assert.equal(await page.locator('#conn').getAttribute('role'), 'status');
  for (const id of ['chart-waiting', 'chart-rates', 'chart-active', 'chart-sales', 'chart-failures']) {
    assert.equal(await page.locator(`#${id}`).getAttribute('role'), 'img', `${id} is an image with a name`);
  }
  assert.ok(await page.getByLabel(/Admission rate/).first().isVisible(), 'rate control has a label');
  assert.ok(await page.getByLabel(/Max active/).isVisible(), 'max active has a label');
  // A way back to the event's page; no talk of checkout's pace before anything sold.
  assert.equal(await page.getByRole('link', { name: 'Back to the event' }).getAttribute('href'), `/console/events/${slug}`);

  // The feed is live and the queue depth grows with the crowd.
  await eventually(async () => assert.match(await page.locator('#conn').textContent(), /^Live/), { timeout: 10_000 });
  const early = await eventually(
    async () => {
      const n = await shown(page, 'n-waiting');
      assert.ok(n >= 20, `waiting ${n}`);
      return n;
    },
    { timeout: 15_000, interval: 250 },
  );
  const later = await eventually(
    async () => {
      const n = await shown(page, 'n-waiting');
      assert.ok(n >= early + 40, `waiting ${n} after ${early}`);
      return n;
    },
    { timeout: 15_000, interval: 250 },
  );
  assert.ok(later > early, 'the queue depth grows');
  await eventually(async () => assert.ok((await shown(page, 'n-arrivals')) >= 300, 'arrivals per minute shown'), { timeout: 15_000 });
  await sleep(6_000); // let the charts gather a little history
  await screenshot(page, 'control-room-crowd.png');

  // Admissions run near the configured 60/min.
  const slow = await eventually(
    async () => {
      const n = await shown(page, 'n-admitted');
      assert.ok(n > 0 && n <= 150, `admitted/min ${n} at rate 60`);
      return n;
    },
    { timeout: 15_000, interval: 250 },
  );

  // Move the rate control: admitted/min follows within a few seconds.
  await page.locator('#rate-range').fill('900');
  assert.equal(await page.locator('#rate').inputValue(), '900', 'the slider drives the number');
  await page.locator('#apply').click();
  assert.match(await page.locator('#confirm-what').textContent(), /rate 60 → 900\/min/);
  await confirmWith(page, 'checkout is keeping up');
  const changedAt = Date.now();
  await eventually(
    async () => {
      const n = await shown(page, 'n-admitted');
      assert.ok(n >= 450, `admitted/min ${n} (was ${slow}) after raising the rate to 900`);
    },
    { timeout: 12_000, interval: 250 },
  );
  const followedIn = Date.now() - changedAt;
  t.diagnostic(`admitted/min followed the new rate within ${followedIn} ms`);
  assert.ok(followedIn <= 12_000);
  assert.match(await page.locator('#n-admitted-hint').textContent(), /rate 900/);
  await sleep(4_000);
  await screenshot(page, 'control-room-rate.png');

  // Pause: admissions flatten to zero while the queue keeps growing.
  await page.locator('#pause').click();
  await confirmWith(page, 'payments are failing');
  await eventually(async () => assert.equal((await page.locator('#mode').textContent()).trim(), 'Paused'), { timeout: 3_000 });
  const pausedWaiting = await shown(page, 'n-waiting');
  await eventually(
    async () => {
      const n = await shown(page, 'n-admitted');
      assert.equal(n, 0, `admitted/min ${n} after pausing`);
    },
    { timeout: 15_000, interval: 250 },
  );
  assert.ok((await shown(page, 'n-waiting')) > pausedWaiting, 'the queue keeps growing while paused');
  // The control room says why nobody is let in.
  assert.ok(await page.locator('#blocked').isVisible(), 'a banner says admission is blocked');
  assert.match(await page.locator('#blocked').textContent(), /^Paused: nobody is being admitted/);
  assert.ok(await page.locator('#pause').isDisabled(), 'pause is not offered twice');
  assert.ok(await page.locator('#resume').isEnabled(), 'resume is offered');

  // Both changes are in the audit log, on the page and through the API.
  await eventually(
    async () => {
      const audit = await page.locator('#audit').textContent();
      assert.match(audit, /payments are failing/);
      assert.match(audit, /checkout is keeping up/);
      assert.match(audit, /mode on → paused/);
      assert.match(audit, /rate 60 → 900\/min/);
    },
    { timeout: 5_000 },
  );
  const api = await fetch(`${BASE_URL}/console/api/events/${slug}/audit`, {
    headers: { Authorization: `Bearer ${operatorToken()}`, Accept: 'application/json' },
  }).then((r) => r.json());
  const changes = api.filter((r) => r.action === 'admission.update');
  assert.deepEqual(
    changes.map((r) => [r.summary, r.reason]),
    [
      ['mode on → paused', 'payments are failing'],
      ['rate 60 → 900/min', 'checkout is keeping up'],
    ],
  );
  assert.ok(changes.every((r) => /^admin:/.test(r.actor)), 'who made the change is recorded');
  // Sales and payments show: seats sold, paid orders, the declined cards, the suggestion.
  await eventually(
    async () => {
      assert.ok(Number((await page.locator('#f-paid').textContent()).replace(/[^0-9]/g, '')) > 0, 'paid in the funnel');
      assert.ok(Number((await page.locator('#tiers [data-f="sold"]').first().textContent()).replace(/[^0-9]/g, '')) > 0, 'seats sold');
    },
    { timeout: 15_000 },
  );
  assert.match(await page.locator('#suggest').textContent(), /Checkout keeps up with \d+ orders\/min/);
  await sleep(3_000);
  await screenshot(page, 'control-room-paused.png');

  // What a host sees: the same charts and the funnel, no controls.
  const host = await context.newPage();
  await host.goto(`/console/events/${slug}/live?view=host`);
  assert.equal(await host.locator('#steer').count(), 0, 'no controls in the host view');
  assert.equal(await host.locator('#audit').count(), 0);
  await eventually(
    async () => {
      const arrived = Number((await host.locator('#f-arrived').textContent()).replace(/[^0-9]/g, ''));
      const admitted = Number((await host.locator('#f-admitted').textContent()).replace(/[^0-9]/g, ''));
      assert.ok(arrived > admitted && admitted > 0, `funnel arrived ${arrived} > admitted ${admitted}`);
    },
    { timeout: 10_000 },
  );
  await sleep(1_500);
  await screenshot(host, 'control-room-host.png');

  await shoppers.stop();
  await people.stop();
  t.diagnostic(`the crowd joined ${people.stats.joined} times (${people.stats.failed} failed)`);
  t.diagnostic(`buyers: ${JSON.stringify(shoppers.stats)}`);
  assert.ok(shoppers.stats.paid > 0, 'some buyers paid');
  assert.ok(people.stats.joined > 200, `the crowd joined (${people.stats.joined}, ${people.stats.failed} failed)`);
  assert.deepEqual(errors, [], 'no uncaught page errors');
  assert.deepEqual(consoleErrors, [], 'no console errors');
});

test('control room on a phone: readable, numbers first, controls reachable', { timeout: 60_000 }, async (t) => {
  const slug = await createEvent({ title: 'Phone gig', queue: { mode: 'on', rate_per_minute: 120, max_active: 500 } });
  const people = crowd(slug, 5);
  t.after(() => people.stop());
  const { context, errors } = await operatorContext(PHONE);
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`/console/events/${slug}/live`);
  await eventually(async () => assert.ok((await shown(page, 'n-waiting')) > 0), { timeout: 15_000 });
  // Nobody buys here: checkout's pace is not reported as "0 orders/min".
  assert.match(await page.locator('#suggest').textContent(), /^No sales yet/);
  // Nothing wider than the screen.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `page overflows the phone screen by ${overflow}px`);
  assert.ok(await page.locator('#apply').isVisible());
  await sleep(3_000);
  await screenshot(page, 'control-room-phone.png');
  await people.stop();
  assert.deepEqual(errors, []);
});
