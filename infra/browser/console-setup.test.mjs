// Setting up an event in the console, as an operator does, and what buyers then see:
// the set-up form's details (description, organiser and their address, the sale window,
// how long seats are held, whether hosts see buyers' addresses, tickets per order);
// "Add a tier row" draws one more row and creates nothing; a sale that closes before it
// opens is refused in a sentence with everything typed kept; the event is created with
// its second tier in the added row; the edit page shows the same details and a row for a
// new tier; the buyer's event page (the queue is off) shows the organiser, the
// description and the refund policy. Screenshot: docs/screenshots/console-event-new.png.
//
// The console account is made with the console's command line, so the test needs the
// stack's DATABASE_URL (infra/test exports it) and its binaries (see consoleBin).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  BASE_URL,
  PHONE,
  createConsoleAccount,
  daysFromNowAt,
  eventSpan,
  eventually,
  fitsTheScreen,
  getEventAsOperator,
  launchBrowser,
  longMoment,
  newContext,
  operatorEventStatus,
  screenshot,
  signInConsole,
  text,
  uniqueSlug,
  wallClock,
} from './floodgate.mjs';

const RUN = randomBytes(3).toString('hex');
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const OPERATOR = `setup-${RUN}@example.org`;
const ZONE = 'Europe/Amsterdam';
const TITLE = 'Set-up test: an evening of jazz';
const DESCRIPTION = 'Two sets, one interval.\nThe stream opens half an hour early for a sound check.';
const ORGANISER = 'Blue Note Collective';
const ORGANISER_EMAIL = 'hello@bluenote.example';

let browser;

before(async () => {
  const health = await fetch(`${BASE_URL}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch((e) => e);
  assert.ok(health.ok, `gateway not reachable at ${BASE_URL} (run infra/stack up): ${health.message ?? health.status}`);
  createConsoleAccount(OPERATOR, 'operator', PASSWORD);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Submits the set-up form with `button`; resolves with the HTTP status once the answer has loaded. */
async function submit(page, button) {
  // The answer is a page at the same address: wait for the new document, not the old one.
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/console/events/new'),
    page.waitForEvent('load'),
    button.click(),
  ]);
  return res.status();
}

test('an operator sets up an event with its details and an added tier row; a close before the open is refused in a sentence; buyers see the details', { timeout: 60_000 }, async () => {
  const slug = uniqueSlug('setup');
  const starts = daysFromNowAt(10, '20:00', ZONE);
  const ends = new Date(starts.getTime() + 3 * 3600 * 1000);
  const salesClose = new Date(starts.getTime() - 24 * 3600 * 1000);
  const { context, page, errors } = await signInConsole(browser, OPERATOR, PASSWORD);

  await page.goto('/console/events/new');
  const setup = page.locator('form#event-setup');
  const field = (name) => setup.locator(`[name="${name}"]`);
  assert.equal(await setup.locator('input[name$="_code"]').count(), 3, 'three tier rows at first');
  await setup.getByLabel('Title').fill(TITLE);
  await setup.getByLabel('Slug (in the public URL)').fill(slug);
  await setup.getByLabel('Timezone').selectOption(ZONE);
  await setup.getByLabel('Starts').fill(wallClock(starts, ZONE));
  await setup.getByLabel('Ends').fill(wallClock(ends, ZONE));
  await field('description').fill(DESCRIPTION);
  await field('organiser').fill(ORGANISER);
  await field('organiser_email').fill(ORGANISER_EMAIL);
  await field('hold_minutes').fill('15');
  await field('hosts_see_buyer_emails').check();
  await setup.getByLabel('Tier 1 code').fill('ga');
  await setup.getByLabel('Tier 1 name').fill('Standing');
  await setup.getByLabel('Tier 1 price').fill('22.50');
  await setup.getByLabel('Tier 1 capacity').fill('150');
  await setup.getByLabel('Tier 1 tickets per order').fill('4');
  await setup.getByLabel('Mode').selectOption('off');

  // "Add a tier row": the same form with a fourth row, everything typed kept, nothing created.
  assert.equal(await text(setup.locator('#add-tier')), 'Add a tier row');
  assert.equal(await submit(page, setup.locator('#add-tier')), 200);
  assert.equal(await setup.locator('input[name$="_code"]').count(), 4, 'a fourth tier row');
  assert.equal(await field('tier4_code').count(), 1, 'tier4_code is there');
  assert.equal(await setup.getByLabel('Title').inputValue(), TITLE);
  assert.equal((await field('description').inputValue()).replace(/\r\n/g, '\n'), DESCRIPTION, 'the description, its line break kept');
  assert.equal(await field('organiser_email').inputValue(), ORGANISER_EMAIL);
  assert.equal(await field('hold_minutes').inputValue(), '15');
  assert.ok(await field('hosts_see_buyer_emails').isChecked(), 'the checkbox stays ticked');
  assert.equal(await setup.getByLabel('Tier 1 tickets per order').inputValue(), '4');
  assert.equal(await setup.getByLabel('Mode').inputValue(), 'off');
  assert.equal(await operatorEventStatus(slug), 404, 'adding a row creates nothing');

  // The second tier goes in the added row (rows 2 and 3 stay empty: left out).
  await setup.getByLabel('Tier 4 code').fill('balcony');
  await setup.getByLabel('Tier 4 name').fill('Balcony seat');
  await setup.getByLabel('Tier 4 price').fill('35.00');
  await setup.getByLabel('Tier 4 currency').fill('EUR');
  await setup.getByLabel('Tier 4 capacity').fill('40');
  await setup.getByLabel('Tier 4 tickets per order').fill('2');
  await field('sales_close_at').fill(wallClock(salesClose, ZONE));
  assert.deepEqual(errors, [], 'no script errors');
  await screenshot(page, 'console-event-new.png');

  // Sales that would close before they open: refused in a sentence, everything kept.
  await field('sales_open_at').fill(wallClock(new Date(salesClose.getTime() + 6 * 3600 * 1000), ZONE));
  assert.equal(await submit(page, setup.getByRole('button', { name: 'Create the event' })), 422);
  const refusal = page.locator('p.banner.bad[role="alert"]');
  assert.equal(await text(refusal), 'Sales must close after they open.');
  assert.equal(await setup.getByLabel('Title').inputValue(), TITLE);
  assert.equal((await field('description').inputValue()).replace(/\r\n/g, '\n'), DESCRIPTION);
  assert.equal(await field('organiser').inputValue(), ORGANISER);
  assert.equal(await field('sales_close_at').inputValue(), wallClock(salesClose, ZONE));
  assert.equal(await setup.getByLabel('Tier 4 name').inputValue(), 'Balcony seat');
  assert.ok(await field('hosts_see_buyer_emails').isChecked());
  assert.equal(await operatorEventStatus(slug), 404, 'nothing created');

  // Without an opening (on sale from now), it is created.
  await field('sales_open_at').fill('');
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === `/console/events/${slug}` && new URL(u).searchParams.get('done') === 'created'),
    setup.getByRole('button', { name: 'Create the event' }).click(),
  ]);
  const ev = await getEventAsOperator(slug);
  assert.equal(ev.title, TITLE);
  assert.equal(ev.description, DESCRIPTION);
  assert.equal(ev.organiser, ORGANISER);
  assert.equal(ev.organiser_email, ORGANISER_EMAIL);
  assert.equal(ev.sales_open_at, null);
  assert.equal(new Date(ev.sales_close_at).getTime(), salesClose.getTime());
  assert.equal(new Date(ev.starts_at).getTime(), starts.getTime());
  assert.equal(ev.hold_ttl_seconds, 15 * 60);
  assert.equal(ev.hosts_see_buyer_emails, true);
  assert.equal(ev.queue_mode, 'off');
  assert.deepEqual(
    ev.tiers.map((t) => [t.code, t.name, t.price_cents, t.currency, t.capacity, t.max_per_order]).sort(),
    [
      ['balcony', 'Balcony seat', 3500, 'EUR', 40, 2],
      ['ga', 'Standing', 2250, 'EUR', 150, 4],
    ],
  );

  // The edit page: the same details, and a row to add a tier.
  await page.goto(`/console/events/${slug}/edit`);
  const edit = page.locator('form#event-edit');
  const editField = (name) => edit.locator(`[name="${name}"]`);
  assert.equal((await editField('description').inputValue()).replace(/\r\n/g, '\n'), DESCRIPTION);
  assert.equal(await editField('organiser').inputValue(), ORGANISER);
  assert.equal(await editField('organiser_email').inputValue(), ORGANISER_EMAIL);
  assert.equal(await editField('sales_open_at').inputValue(), '');
  assert.equal(await editField('sales_close_at').inputValue(), wallClock(salesClose, ZONE));
  assert.equal(await editField('hold_minutes').inputValue(), '15');
  assert.ok(await editField('hosts_see_buyer_emails').isChecked());
  assert.equal(await edit.locator('#new-tier input[name="new_code"]').count(), 1, 'a row for a new tier');
  assert.equal(await edit.getByLabel('Balcony seat tickets per order').inputValue(), '2');
  assert.deepEqual(errors, [], 'no script errors');
  await context.close();

  // A buyer (no sign-in, the queue is off) goes straight to the event page.
  const buyer = await newContext(browser, PHONE);
  try {
    const p = await buyer.context.newPage();
    await eventually(
      async () => {
        const res = await p.goto(`/e/${slug}`);
        assert.equal(res.status(), 200, `GET /e/${slug} -> ${res.status()}`);
      },
      { timeout: 5_000, interval: 250 },
    );
    assert.equal(new URL(p.url()).pathname, `/e/${slug}`, 'the queue is off: no waiting room');
    assert.equal(await text(p.locator('h1')), TITLE);
    assert.equal(await text(p.locator('#when')), eventSpan(starts, ends, ZONE));
    assert.equal(await text(p.locator('#organiser')), `Organised by ${ORGANISER} · Questions: ${ORGANISER_EMAIL}`);
    assert.equal(await p.locator('#organiser a').getAttribute('href'), `mailto:${ORGANISER_EMAIL}`);
    assert.equal((await p.locator('#description').innerText()).trim(), DESCRIPTION);
    assert.equal(
      await text(p.locator('#refund-policy')),
      `You can ask for a refund until 48 hours before the start (${longMoment(new Date(starts.getTime() - 48 * 3600 * 1000), ZONE)}); after that, only the organiser can make an exception.`,
    );
    assert.equal(await p.locator('form.buy').count(), 1, 'on sale: the form');
    assert.deepEqual(
      (await p.locator('form.buy select[name="tier"] option').allTextContents()).map((o) => o.trim()).sort(),
      ['Balcony seat — EUR 35.00', 'Standing — EUR 22.50'],
    );
    assert.equal(await text(p.locator('#sales-close')), `Sales close ${longMoment(salesClose, ZONE)}.`);
    await fitsTheScreen(p, 'event page');
    assert.deepEqual(buyer.errors, [], 'no script errors');
  } finally {
    await buyer.context.close();
  }
});

test('the set-up form fits a 390 px phone', { timeout: 30_000 }, async () => {
  const { context, page, errors } = await signInConsole(browser, OPERATOR, PASSWORD, PHONE);
  try {
    await page.goto('/console/events/new');
    await page.locator('form#event-setup textarea[name="description"]').waitFor();
    await fitsTheScreen(page, 'the set-up form');
    assert.deepEqual(errors, [], 'no script errors');
  } finally {
    await context.close();
  }
});
