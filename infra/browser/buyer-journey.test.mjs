// The whole buyer journey in a real browser, on a phone: waiting room -> event page
// (when, who organises it, what it is, the refund policy, when sales close) -> hold ->
// the sandbox's hosted payment page (a decline, then a good card) -> back to the order
// page, which refreshes itself until the payment is confirmed, names the address the
// links went to, links a printable receipt and takes a name per ticket -> the access
// link from the confirmation mail, opened before the doors (with and without
// JavaScript). A sale not open yet (or closed) offers no form. Screenshots of each step
// go to docs/screenshots/buyer-*.png and join-too-early.png. Each test makes its own
// event.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  BASE_URL,
  PHONE,
  SANDBOX_URL,
  SMTP_SINK,
  availableAs,
  createEvent,
  daysFromNowAt,
  eventPageUrl,
  eventSpan,
  eventually,
  fitsTheScreen,
  getOrder,
  joinLinks,
  launchBrowser,
  longMoment,
  mailTo,
  newContext,
  parseOrderUrl,
  sandboxFaults,
  screenshot,
  setAdmission,
  sleep,
  text,
} from './floodgate.mjs';

const TITLE = 'Browser journey gig';
const TIERS = [
  { code: 'ga', name: 'General', price_cents: 2500, currency: 'EUR', capacity: 20 },
  { code: 'vip', name: 'Front row', price_cents: 9900, currency: 'EUR', capacity: 2, max_per_order: 2 },
];
const OPEN = { mode: 'on', rate_per_minute: 6000, max_active: 100 };
const TICKET_CODE = /^FG-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{2}$/;
const DECLINE_CARD = '4000 0000 0000 0002';
const GOOD_CARD = '4242 4242 4242 4242';
const WEBHOOK_DELAY_MS = 4_000;
const ZONE = 'Europe/Amsterdam';
// This run's buyer: the confirmation mail is found by its address.
const EMAIL = `ada-${randomBytes(3).toString('hex')}@example.org`;
// Every event of this file starts a week from now at 19:30 in its zone, for two and a half hours.
const STARTS = daysFromNowAt(7, '19:30', ZONE);
const ENDS = new Date(STARTS.getTime() + 150 * 60 * 1000);
const SALES_CLOSE = new Date(STARTS.getTime() - 24 * 3600 * 1000);
const DETAILS = {
  description: 'Three bands, one stream.\nBring headphones: the sound is the point.',
  organiser: 'Northwind Events',
  organiser_email: 'tickets@northwind.example',
  refund_policy: { refundable_until_hours_before: 48 },
  sales_close_at: SALES_CLOSE.toISOString(),
};

let browser;

before(async () => {
  for (const [what, url] of [['gateway', `${BASE_URL}/healthz`], ['payment sandbox', `${SANDBOX_URL}/healthz`]]) {
    const health = await fetch(url, { signal: AbortSignal.timeout(5_000) }).catch((e) => e);
    assert.ok(health.ok, `${what} not reachable at ${url} (run infra/stack up): ${health.message ?? health.status}`);
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** A fresh event whose queue is closed (rate 0) so the buyer has to wait; returns its slug. */
async function closedEvent() {
  const slug = await createEvent({ title: TITLE, tiers: TIERS, queue: OPEN, details: DETAILS, startsAt: STARTS, endsAt: ENDS });
  // Created open, as an on-sale would be; closed at once so the waiting room is seen
  // every time (at 6000/min a lone buyer may be admitted before the first page loads).
  await setAdmission(slug, { rate_per_minute: 0 });
  return slug;
}

/** Goes to the event page without an admission, lands in the waiting room, waits there until admitted. */
async function admitThroughWaitingRoom(page, slug, shot) {
  // A just-created event may take a moment to reach the gateway: retry a 404 briefly.
  await eventually(
    async () => {
      const res = await page.goto(`/e/${slug}`);
      assert.equal(res.status(), 200, `GET /e/${slug} -> ${res.status()}`);
    },
    { timeout: 5_000, interval: 250 },
  );
  assert.equal(new URL(page.url()).pathname, `/queue/${slug}`, 'no admission: sent to the waiting room');
  assert.equal(await text(page.locator('h1')), TITLE);
  assert.equal(await text(page.locator('#headline')), "You're in line.");
  assert.equal(await text(page.locator('#position')), '1');
  if (shot) {
    await fitsTheScreen(page, 'waiting page');
    await screenshot(page, shot);
  }

  await setAdmission(slug, { rate_per_minute: OPEN.rate_per_minute });
  await page.waitForURL(eventPageUrl(slug), { timeout: 15_000 });
  assert.equal(await text(page.locator('h1')), TITLE, 'moved on to the event page by itself');
}

/** The tiers table: tier name -> its availability cell. */
async function availabilityCells(page) {
  const rows = await page.locator('table tbody tr').all();
  const out = {};
  for (const row of rows) {
    const cells = row.locator('td');
    out[await text(cells.nth(0))] = await text(cells.nth(2));
  }
  return out;
}

test('buyer journey on a phone: wait, hold, a declined card, pay, tickets', { timeout: 120_000 }, async (t) => {
  const slug = await closedEvent();
  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();

  // 1-2. Waiting room, then the event page once admitted.
  await admitThroughWaitingRoom(page, slug, 'buyer-1-waiting.png');
  assert.ok(
    (await context.cookies(BASE_URL)).some((c) => c.name === `fg_a_${slug}`),
    'admission cookie set',
  );
  assert.deepEqual(await availabilityCells(page), { General: '20 left', 'Front row': '2 left' });
  const before = await availableAs(context, slug);
  assert.deepEqual(before, { ga: 20, vip: 2 });
  // What the event is: when (a span, in its zone), who organises it and how to ask
  // them, what it is (line breaks kept), until when a refund can be asked for.
  assert.equal(await text(page.locator('#when')), eventSpan(STARTS, ENDS, ZONE));
  assert.equal(
    await text(page.locator('#organiser')),
    `Organised by ${DETAILS.organiser} · Questions: ${DETAILS.organiser_email}`,
  );
  assert.equal(await page.locator('#organiser a').getAttribute('href'), `mailto:${DETAILS.organiser_email}`);
  assert.equal((await page.locator('#description').innerText()).trim(), DETAILS.description, 'the description, its line break kept');
  assert.equal(
    await text(page.locator('#refund-policy')),
    `You can ask for a refund until 48 hours before the start (${longMoment(new Date(STARTS.getTime() - 48 * 3600 * 1000), ZONE)}); after that, only the organiser can make an exception.`,
  );
  assert.equal(await text(page.locator('#sales-close')), `Sales close ${longMoment(SALES_CLOSE, ZONE)}.`);
  assert.equal(await page.locator('#sale').count(), 0, 'the sale is open: no notice instead of the form');

  // 3. Fill in the form and hold.
  const form = page.locator('form.buy');
  await form.locator('select[name="tier"]').selectOption('ga');
  await form.locator('input[name="quantity"]').fill('2');
  await form.locator('input[name="name"]').fill('Ada Lovelace');
  await form.locator('input[name="email"]').fill(EMAIL);
  await fitsTheScreen(page, 'event page');
  await screenshot(page, 'buyer-2-event.png');
  await Promise.all([
    page.waitForURL((u) => new RegExp(`^/e/${slug}/holds/[0-9a-f-]{36}$`).test(new URL(u).pathname)),
    form.getByRole('button', { name: 'Hold my tickets' }).click(),
  ]);
  const holdId = new URL(page.url()).pathname.split('/').pop();

  const held = await text(page.locator('table'));
  assert.match(held, /General/, 'hold page names the tier');
  assert.match(held, /EUR 25\.00\s*2\s*EUR 50\.00/, 'hold page shows unit price, quantity and total');
  assert.match(await text(page.locator('main')), /Ada Lovelace/, 'hold page says who the tickets are for');
  assert.match(held, /EUR 50\.00/, 'hold page shows the total');
  // A live countdown of the time left to pay; the end time in the buyer's own zone.
  const left = async () => {
    const [m, sec] = (await text(page.locator('#countdown'))).split(':').map(Number);
    return m * 60 + sec;
  };
  assert.match(await text(page.locator('#held')), /^Your seats are held until [0-9:]+( [AP]M)?\. \d+:\d\d left to pay\.$/);
  const first = await left();
  assert.ok(first > 60, `minutes left to pay: ${first} s`);
  await eventually(async () => assert.ok((await left()) < first, 'the countdown moves'), { timeout: 3_000, interval: 250 });
  const pay = page.getByRole('button', { name: 'Pay EUR 50.00' });
  assert.ok(await pay.isVisible(), 'a "Pay EUR 50.00" button');
  assert.equal(await pay.locator('xpath=ancestor::form').getAttribute('action'), `/e/${slug}/holds/${holdId}/pay`);
  await fitsTheScreen(page, 'hold page');
  await screenshot(page, 'buyer-3-checkout.png');
  // Two seats are held while the buyer pays.
  await eventually(async () => assert.equal((await availableAs(context, slug)).ga, 18), { timeout: 5_000, interval: 250 });

  // 4. Pay: off to the sandbox's hosted payment page.
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${SANDBOX_URL}/pay/`), { timeout: 15_000 }), pay.click()]);
  const intent = new URL(page.url()).pathname.split('/').pop();
  assert.match(intent, /^pi_/, `payment intent id ${intent}`);
  assert.match(await text(page.locator('h1')), /50\.00/, 'the sandbox shows the amount');
  const help = await text(page.locator('.help'));
  assert.ok(help.includes(GOOD_CARD) && help.includes(DECLINE_CARD), `test cards listed: ${help}`);
  const card = page.locator('input[name="card_number"]');

  // A declined card first: the form comes back with the reason, still on the sandbox.
  await card.fill(DECLINE_CARD);
  const [declined] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `/pay/${intent}`),
    page.getByRole('button', { name: 'Pay' }).click(),
  ]);
  assert.ok(declined.status() >= 400, `a decline is not a success (${declined.status()})`);
  await page.waitForLoadState();
  assert.ok(page.url().startsWith(`${SANDBOX_URL}/pay/${intent}`), `still on the payment page: ${page.url()}`);
  assert.match(await text(page.getByRole('alert')), /declined/i, 'the decline is shown');
  assert.equal(parseOrderUrl(page.url()), null, 'not sent back to the shop');

  // The buyer gives up on this card and goes back to the shop: nothing is pending, and
  // the page says so, until when the seats are held, and offers to try again.
  await Promise.all([
    page.waitForURL((u) => parseOrderUrl(u) !== null, { timeout: 15_000 }),
    page.getByRole('link', { name: 'Cancel and return' }).click(),
  ]);
  assert.match(await text(page.getByRole('status')), /^Not paid — your seats are held until \d\d:\d\d/);
  assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, 'no refreshing for a payment nobody made');
  await fitsTheScreen(page, 'not paid');
  await screenshot(page, 'buyer-4a-not-paid.png');
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(`${SANDBOX_URL}/pay/${intent}`), { timeout: 15_000 }),
    page.getByRole('link', { name: 'Try again' }).click(),
  ]);

  // Then the good card. The sandbox holds its webhook back a few seconds (restored
  // afterwards), so the order page is seen pending and has to refresh itself.
  await card.fill(GOOD_CARD);
  await fitsTheScreen(page, 'payment page');
  await screenshot(page, 'buyer-4-pay.png');
  const { webhook_delay_ms: delayWas } = await sandboxFaults();
  t.after(() => sandboxFaults({ webhook_delay_ms: delayWas }));
  await sandboxFaults({ webhook_delay_ms: WEBHOOK_DELAY_MS });
  await Promise.all([
    page.waitForURL((u) => parseOrderUrl(u) !== null, { timeout: 15_000 }),
    page.getByRole('button', { name: 'Pay' }).click(),
  ]);

  // 5. Back on the order page, which refreshes itself until the webhook has landed.
  const { orderId, orderToken } = parseOrderUrl(page.url());
  let orderPageLoads = 1;
  page.on('load', () => orderPageLoads++);
  assert.match(await text(page.getByRole('status')), /payment received, confirming it/i, 'pending at first');
  assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 1, 'a pending order refreshes itself');
  assert.equal(await page.locator('td.ticket').count(), 0, 'no tickets before the payment is confirmed');
  await sandboxFaults({ webhook_delay_ms: delayWas });
  await page.waitForFunction(() => /\bPaid\b/.test(document.querySelector('[role=status]')?.textContent ?? ''), null, {
    timeout: 30_000,
    polling: 250,
  });
  const status = await text(page.getByRole('status'));
  assert.match(status, /^Paid\b/, `order page says Paid: ${status}`);
  const codes = (await page.locator('td.ticket').allTextContents()).map((c) => c.trim());
  assert.equal(codes.length, 2, `two tickets listed: ${codes}`);
  for (const c of codes) assert.match(c, TICKET_CODE);
  assert.notEqual(codes[0], codes[1]);
  const main = await text(page.locator('main'));
  assert.match(main, /General × 2/);
  assert.match(main, /EUR 50\.00/);
  assert.ok(main.includes(orderId), 'order id shown');
  assert.equal(await page.locator('meta[http-equiv="refresh"]').count(), 0, 'a paid order stops refreshing');
  assert.ok(orderPageLoads >= 2, `the page refreshed itself (${orderPageLoads} loads)`);
  t.diagnostic(`order page loaded ${orderPageLoads} time(s) until it said Paid`);
  // Where the links went, and who to ask.
  assert.equal(await text(page.locator('#paid')), `Paid. Your access links are on their way to ${EMAIL}, with a calendar invite.`);
  assert.equal(await text(page.locator('#paid strong')), EMAIL, 'the address stands out');
  assert.match(await text(page.locator('#organiser')), new RegExp(`^Organised by ${DETAILS.organiser}`));
  // Two tickets: a name for each, the buyer's until changed.
  const names = page.locator('form#ticket-names');
  assert.equal(await names.count(), 1, 'a form to name the tickets');
  for (const c of codes) assert.equal(await names.locator(`input[name="name_${c}"]`).inputValue(), 'Ada Lovelace');
  await fitsTheScreen(page, 'order page');
  await screenshot(page, 'buyer-5-order-paid.png');

  // The second ticket is for someone else: saved, and back on the order page.
  await names.locator(`input[name="name_${codes[1]}"]`).fill('Charles Babbage');
  const [saved] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `/orders/${orderId}/names`),
    page.waitForEvent('load'),
    names.getByRole('button', { name: 'Save the names' }).click(),
  ]);
  assert.equal(saved.status(), 303, 'saved, then back to the order page');
  assert.equal(parseOrderUrl(page.url())?.orderId, orderId, `back on the order page: ${page.url()}`);
  assert.equal(await page.locator(`form#ticket-names input[name="name_${codes[1]}"]`).inputValue(), 'Charles Babbage');
  assert.equal(await page.locator(`form#ticket-names input[name="name_${codes[0]}"]`).inputValue(), 'Ada Lovelace');
  assert.match(await text(page.locator('#paid')), /^Paid\./, 'still the paid order');

  // The receipt: printable, the facts, the lines, the total.
  const receiptHref = await page.locator('#receipt-link').getAttribute('href');
  assert.equal(receiptHref, `/orders/${orderId}/receipt?order_token=${orderToken}`);
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === `/orders/${orderId}/receipt`),
    page.locator('#receipt-link').click(),
  ]);
  assert.equal(await text(page.locator('h1')), 'Receipt');
  const facts = (await page.locator('#receipt').innerText()).replace(/\s+/g, ' ');
  for (const want of [orderId, 'Ada Lovelace', EMAIL, DETAILS.organiser, DETAILS.organiser_email, TITLE]) {
    assert.ok(facts.includes(want), `the receipt names ${want}: ${facts}`);
  }
  assert.match(facts, /Paid .*\(Europe\/Amsterdam\)/, 'when it was paid, in the event\'s zone');
  const line = (await page.locator('table#lines tbody tr').first().locator('td').allTextContents()).map((c) => c.trim());
  assert.deepEqual(line, ['General', '2', 'EUR 25.00', 'EUR 50.00']);
  assert.equal(await text(page.locator('#total')), 'EUR 50.00');
  for (const c of codes) assert.ok((await text(page.locator('main'))).includes(c), `the receipt lists ticket ${c}`);
  await fitsTheScreen(page, 'receipt');
  await screenshot(page, 'buyer-7-receipt.png');
  await Promise.all([page.waitForURL((u) => parseOrderUrl(u)?.orderId === orderId), page.getByRole('link', { name: '← Your order' }).click()]);

  // 6. The API agrees.
  await eventually(async () => assert.deepEqual(await availableAs(context, slug), { ga: 18, vip: 2 }), {
    timeout: 5_000,
    interval: 250,
  });
  const order = await getOrder(orderId, orderToken);
  assert.equal(order.status, 'paid');
  assert.equal(order.quantity, 2);
  assert.equal(order.amount_cents, 5000);
  assert.equal(order.currency, 'EUR');
  assert.equal(order.tickets.length, 2);
  assert.deepEqual(order.tickets.map((tk) => tk.code).sort(), [...codes].sort(), 'the same codes as the page');

  // The payment page of a paid intent offers no second charge, only the way back.
  await page.goto(`${SANDBOX_URL}/pay/${intent}`);
  assert.match(await text(page.locator('h1')), /Payment received/);
  assert.equal(await page.locator('input[name="card_number"]').count(), 0, 'no card form once paid');
  const back = await page.getByRole('link', { name: 'Continue' }).getAttribute('href');
  assert.deepEqual(parseOrderUrl(back), { orderId, orderToken }, 'Continue goes back to the order');

  // 7. The confirmation mail: a link per ticket, and a calendar entry. Opened now, a week
  // before the doors, the link says when to come back: in the visitor's own zone with
  // JavaScript, in the event's zone (named) without.
  const mail = await mailTo(EMAIL, { timeout: 60_000 });
  const links = joinLinks(mail.raw);
  assert.equal(links.length, 2, `an access link per ticket in the mail (${SMTP_SINK}): ${links}`);
  assert.match(mail.raw.replace(/=\r?\n/g, ''), /BEGIN:VCALENDAR|text\/calendar/i, 'a calendar invite in the mail');
  const joinPath = new URL(links[0]).pathname;
  const starts = longMoment(STARTS, ZONE);
  for (const js of [true, false]) {
    const early = await newContext(browser, { ...PHONE, javaScriptEnabled: js, timezoneId: 'America/New_York' });
    try {
      const p = await early.context.newPage();
      const res = await p.goto(joinPath);
      assert.equal(res.status(), 200, `${joinPath}: ${res.status()}`);
      assert.match(await text(p.locator('main')), /Your ticket is valid/);
      assert.deepEqual((await p.locator('dl.times dt').allTextContents()).map((x) => x.trim()), ['Doors open', 'Starts']);
      const doorsAt = new Date(await p.locator('#doors').getAttribute('datetime'));
      assert.equal(new Date(await p.locator('#starts').getAttribute('datetime')).getTime(), STARTS.getTime());
      assert.ok(doorsAt < STARTS, `the doors open before the start: ${doorsAt.toISOString()}`);
      if (js) {
        assert.equal(await text(p.locator('#zone')), 'Times in your time zone (America/New_York).');
        // New York's wall-clock time of the start, whatever the browser's date words.
        const hm = new Intl.DateTimeFormat('en-GB', { timeZone: 'America/New_York', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(STARTS);
        assert.ok((await text(p.locator('#starts'))).includes(hm), `the start in New York's time (${hm}): ${await text(p.locator('#starts'))}`);
        await fitsTheScreen(p, 'too early');
        await screenshot(p, 'join-too-early.png');
      } else {
        assert.equal(await text(p.locator('#zone')), "Times in Europe/Amsterdam, the event's time zone.");
        assert.equal(await text(p.locator('#starts')), starts);
        assert.equal(await text(p.locator('#doors')), longMoment(doorsAt, ZONE));
      }
      assert.deepEqual(early.errors, [], 'no uncaught script errors on /join');
    } finally {
      await early.context.close();
    }
  }

  // The turn is spent: holding again says so in plain words and offers to queue again,
  // which takes a new place (the spent one is forgotten).
  await page.goto(`/e/${slug}`);
  const again = page.locator('form.buy');
  await again.locator('select[name="tier"]').selectOption('ga');
  await again.locator('input[name="name"]').fill('Ada Lovelace');
  await again.locator('input[name="email"]').fill(EMAIL);
  await again.getByRole('button', { name: 'Hold my tickets' }).click();
  await page.waitForLoadState();
  assert.equal(await text(page.locator('h1')), 'You have already bought with this turn');
  assert.doesNotMatch(await text(page.locator('main')), /admission|unauthorized/i);
  await screenshot(page, 'buyer-6-spent-turn.png');
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === `/e/${slug}` || new URL(u).pathname === `/queue/${slug}`, { timeout: 15_000 }),
    page.getByRole('link', { name: 'Join the queue again' }).click(),
  ]);
  await page.waitForURL(eventPageUrl(slug), { timeout: 15_000 });
  assert.ok(await page.locator('form.buy').isVisible(), 'a new turn: the form again');

  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('bad input on the event page: 422, the page again with the reason, nothing held', { timeout: 60_000 }, async (t) => {
  const slug = await closedEvent();
  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();
  await admitThroughWaitingRoom(page, slug, null);
  const before = await availableAs(context, slug);
  assert.deepEqual(before, { ga: 20, vip: 2 });

  const cases = [
    // The browser would refuse these itself (type=email, max=): strip the checks so the
    // server's own validation is what answers.
    { field: 'email', value: 'not-an-email', strip: 'type', reason: /email/i },
    { field: 'quantity', value: '99', strip: 'max', reason: /quantity must be between 1 and \d+/i },
  ];
  for (const c of cases) {
    await page.goto(`/e/${slug}`);
    const form = page.locator('form.buy');
    await form.locator('select[name="tier"]').selectOption('ga');
    await form.locator('input[name="quantity"]').fill('2');
    await form.locator('input[name="name"]').fill('Ada Lovelace');
    await form.locator('input[name="email"]').fill('ada@example.org');
    const input = form.locator(`input[name="${c.field}"]`);
    await input.evaluate((el, attr) => el.removeAttribute(attr), c.strip);
    await input.fill(c.value);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `/e/${slug}/hold`),
      form.getByRole('button', { name: 'Hold my tickets' }).click(),
    ]);
    assert.equal(res.status(), 422, `${c.field}=${c.value}: 422`);
    await page.waitForLoadState();
    const alert = page.getByRole('alert');
    assert.match(await text(alert), c.reason, `${c.field}: the reason is shown`);
    assert.equal(await text(page.locator('h1')), TITLE, 'the event page again');
    assert.equal(await page.locator('form.buy').count(), 1, 'with the form to try again');
    assert.deepEqual(await availabilityCells(page), { General: '20 left', 'Front row': '2 left' });
  }
  await fitsTheScreen(page, 'event page with an error');

  // Nothing was held: the same seats are left (past the catalog's 1 s cache too).
  await sleep(1_200);
  assert.deepEqual(await availableAs(context, slug), before, 'nothing held');
  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('change tickets after opening the payment page: the old page takes no card, the new hold pays', { timeout: 90_000 }, async (t) => {
  const slug = await closedEvent();
  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();
  await admitThroughWaitingRoom(page, slug);

  const holdTickets = async (quantity) => {
    const form = page.locator('form.buy');
    await form.locator('select[name="tier"]').selectOption('ga');
    await form.locator('input[name="quantity"]').fill(String(quantity));
    await form.locator('input[name="name"]').fill('Grace Hopper');
    await form.locator('input[name="email"]').fill('grace@example.org');
    await Promise.all([
      page.waitForURL((u) => new RegExp(`^/e/${slug}/holds/[0-9a-f-]{36}$`).test(new URL(u).pathname)),
      form.getByRole('button', { name: 'Hold my tickets' }).click(),
    ]);
    return page.url();
  };

  // Hold two, open the payment page, then come back and change tickets.
  const holdPage = await holdTickets(2);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(`${SANDBOX_URL}/pay/`), { timeout: 15_000 }),
    page.getByRole('button', { name: /^Pay / }).click(),
  ]);
  const oldPayPage = page.url();
  await page.goto(holdPage);
  await Promise.all([
    page.waitForURL(eventPageUrl(slug)),
    page.getByRole('button', { name: 'Change tickets (release these seats)' }).click(),
  ]);
  await eventually(async () => assert.equal((await availableAs(context, slug)).ga, 20), {
    timeout: 5_000,
    interval: 250,
  });

  // The old page, opened again as a buyer with two tabs would: the shop cancelled it.
  await eventually(
    async () => {
      const res = await page.goto(oldPayPage);
      assert.equal(res.status(), 410, `the old payment page is gone (${res.status()})`);
    },
    { timeout: 10_000, interval: 250 },
  );
  assert.equal(await text(page.locator('h1')), 'This payment was cancelled');
  assert.match(await text(page.locator('main')), /Nothing was charged/);
  assert.equal(await page.locator('input[name="card_number"]').count(), 0, 'no card form on a cancelled payment');
  await fitsTheScreen(page, 'cancelled payment page');
  await screenshot(page, 'buyer-payment-cancelled.png');

  // The same admission holds one seat instead and pays for it.
  await page.goto(`/e/${slug}`);
  await holdTickets(1);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(`${SANDBOX_URL}/pay/`), { timeout: 15_000 }),
    page.getByRole('button', { name: /^Pay / }).click(),
  ]);
  assert.notEqual(page.url(), oldPayPage, 'a new payment for the new hold');
  await page.locator('input[name="card_number"]').fill(GOOD_CARD);
  await Promise.all([
    page.waitForURL((u) => parseOrderUrl(u) !== null, { timeout: 15_000 }),
    page.getByRole('button', { name: 'Pay' }).click(),
  ]);
  const { orderId, orderToken } = parseOrderUrl(page.url());
  await eventually(async () => assert.equal((await getOrder(orderId, orderToken)).status, 'paid'), {
    timeout: 30_000,
    interval: 250,
  });
  await eventually(async () => assert.equal((await availableAs(context, slug)).ga, 19), {
    timeout: 5_000,
    interval: 250,
  });
  assert.deepEqual(errors, [], 'no uncaught script errors');
});

test('before the sale opens the event page says when it does and offers no form; after it closes, says so', { timeout: 60_000 }, async (t) => {
  const opens = new Date(Math.ceil((Date.now() + 24 * 3600 * 1000) / 60_000) * 60_000);
  const notYet = await createEvent({
    title: 'Not on sale yet',
    tiers: TIERS,
    queue: { mode: 'off' },
    details: { ...DETAILS, sales_open_at: opens.toISOString() },
    startsAt: STARTS,
    endsAt: ENDS,
  });
  const over = await createEvent({
    title: 'No longer on sale',
    tiers: TIERS,
    queue: { mode: 'off' },
    details: {
      ...DETAILS,
      sales_open_at: new Date(Date.now() - 2 * 24 * 3600 * 1000).toISOString(),
      sales_close_at: new Date(Date.now() - 3600 * 1000).toISOString(),
    },
    startsAt: STARTS,
    endsAt: ENDS,
  });
  const { context, errors } = await newContext(browser, PHONE);
  t.after(() => context.close());
  const page = await context.newPage();
  const open = (slug) =>
    eventually(
      async () => {
        const res = await page.goto(`/e/${slug}`);
        assert.equal(res.status(), 200, `GET /e/${slug} -> ${res.status()}`);
        assert.equal(new URL(page.url()).pathname, `/e/${slug}`, 'the queue is off: straight to the event page');
      },
      { timeout: 5_000, interval: 250 },
    );

  await open(notYet);
  assert.equal(await text(page.locator('#sale')), `Sales open ${longMoment(opens, ZONE)}.`);
  assert.equal(await page.locator('form.buy').count(), 0, 'no form before the sale opens');
  assert.equal(await page.locator('#sales-close').count(), 0, 'no closing time without a form');
  assert.deepEqual(await availabilityCells(page), { General: '20 left', 'Front row': '2 left' }, 'the tiers are shown');
  assert.equal(await text(page.locator('#organiser')), `Organised by ${DETAILS.organiser} · Questions: ${DETAILS.organiser_email}`);
  await fitsTheScreen(page, 'sales not open');
  await screenshot(page, 'buyer-sales-not-open.png');
  // A script that holds anyway is refused in words.
  const res = await context.request.post(`${BASE_URL}/api/events/${notYet}/holds`, {
    data: { tier: 'ga', quantity: 1, email: EMAIL, name: 'Ada Lovelace' },
    headers: { Accept: 'application/json' },
  });
  assert.equal(res.status(), 409);
  assert.equal((await res.json()).error, 'sales_not_open');

  await open(over);
  assert.equal(await text(page.locator('#sale')), 'Sales have closed.');
  assert.equal(await page.locator('form.buy').count(), 0, 'no form after the sale closed');
  assert.deepEqual(errors, [], 'no uncaught script errors');
});
