// Helpers shared by the browser tests: where the stack is, the operator API, and a
// headless Debian Chromium driven by playwright-core (no browser download).

import { readFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BASE_URL = (process.env.FLOODGATE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
/** The payment sandbox's hosted payment pages (where the buyer is sent to pay). */
export const SANDBOX_URL = (process.env.FLOODGATE_SANDBOX_URL || 'http://127.0.0.1:8085').replace(/\/+$/, '');
/** The SMTP sink's HTTP side (the mail the stack sent). */
export const SMTP_SINK = `http://${process.env.SMTP_SINK_HTTP || '127.0.0.1:2580'}`;
export const SCREENSHOT_DIR = path.join(REPO_ROOT, 'docs', 'screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
export const DESKTOP = { viewport: { width: 1280, height: 800 } };

let cachedToken;
export function operatorToken() {
  if (cachedToken) return cachedToken;
  const fromEnv = process.env.FLOODGATE_OPERATOR_TOKEN;
  if (fromEnv && fromEnv.trim()) return (cachedToken = fromEnv.trim());
  const file = path.join(REPO_ROOT, 'target', 'stack', 'operator-token');
  try {
    return (cachedToken = readFileSync(file, 'utf8').trim());
  } catch (e) {
    throw new Error(`no operator token: set FLOODGATE_OPERATOR_TOKEN or run infra/stack up (${file}: ${e.code})`);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` until it returns without throwing, or rethrows its last error at the deadline. */
export async function eventually(fn, { timeout = 5_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      await sleep(interval);
    }
  }
}

async function call(method, urlPath, { body, auth = false, expect = [200] } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (auth) headers.Authorization = `Bearer ${operatorToken()}`;
  const res = await fetch(BASE_URL + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!expect.includes(res.status)) {
    const err = new Error(`${method} ${urlPath} -> ${res.status}: ${text.slice(0, 500)}`);
    err.status = res.status;
    throw err;
  }
  return text ? JSON.parse(text) : null;
}

export function uniqueSlug(prefix = 'bt') {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export const DEFAULT_TIERS = [{ code: 'ga', name: 'General', price_cents: 1000, currency: 'EUR', capacity: 50 }];

/**
 * Creates an event with the given tiers (one by default) and queue settings; returns its
 * slug. `details` are more fields of the request (description, organiser,
 * organiser_email, sales_open_at, sales_close_at, refund_policy, ...); `startsAt` and
 * `endsAt` default to a week from now and two hours later.
 */
export async function createEvent({ title = 'Browser test gig', queue = {}, tiers = DEFAULT_TIERS, details = {}, startsAt, endsAt } = {}) {
  const slug = uniqueSlug();
  const starts = startsAt ?? new Date(Date.now() + 7 * 24 * 3600 * 1000);
  if (!startsAt) starts.setUTCSeconds(0, 0);
  const ends = endsAt ?? new Date(starts.getTime() + 2 * 3600 * 1000);
  await call('POST', '/console/api/events', {
    auth: true,
    expect: [201],
    body: {
      slug,
      title,
      starts_at: starts.toISOString(),
      ends_at: ends.toISOString(),
      timezone: 'Europe/Amsterdam',
      meeting: { provider: 'jitsi' },
      tiers,
      queue: { mode: 'on', rate_per_minute: 0, max_active: 100, ...queue },
      ...details,
    },
  });
  return slug;
}

/** `GET /console/api/events/{slug}` with the operator token. */
export function getEventAsOperator(slug) {
  return call('GET', `/console/api/events/${slug}`, { auth: true });
}

/** The HTTP status of `GET /console/api/events/{slug}` (404: no such event). */
export async function operatorEventStatus(slug) {
  try {
    await call('GET', `/console/api/events/${slug}`, { auth: true });
    return 200;
  } catch (e) {
    if (e.status) return e.status;
    throw e;
  }
}

const parts = (d, timeZone, options) =>
  Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', { timeZone, hourCycle: 'h23', ...options }).formatToParts(d).map((p) => [p.type, p.value]),
  );

/** A moment as the buyer's pages write it in `timeZone`: "Friday 4 January 2030, 19:30". */
export function longMoment(d, timeZone) {
  const p = parts(d, timeZone, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit' });
  return `${p.weekday} ${p.day} ${p.month} ${p.year}, ${p.hour}:${p.minute}`;
}

/** The event page's span: "Friday 4 January 2030, 19:30–22:00 (Europe/Amsterdam)" (same day). */
export function eventSpan(starts, ends, timeZone) {
  const end = longMoment(ends, timeZone);
  const sameDay = end.split(',')[0] === longMoment(starts, timeZone).split(',')[0];
  return `${longMoment(starts, timeZone)}–${sameDay ? end.split(', ')[1] : end} (${timeZone})`;
}

/** The console's time fields: "YYYY-MM-DD HH:MM", wall-clock time in `timeZone`. */
export function wallClock(d, timeZone) {
  return new Intl.DateTimeFormat('sv-SE', { timeZone, dateStyle: 'short', timeStyle: 'short' }).format(d);
}

/** The moment `days` from now at wall-clock `hm` ("19:30") in `timeZone`. */
export function daysFromNowAt(days, hm, timeZone) {
  const day = wallClock(new Date(Date.now() + days * 24 * 3600 * 1000), timeZone).slice(0, 10);
  // The zone's offset that day is within ±14 h of UTC: try each quarter hour.
  for (let q = -14 * 4; q <= 14 * 4; q++) {
    const d = new Date(Date.parse(`${day}T${hm}:00Z`) - q * 15 * 60 * 1000);
    if (wallClock(d, timeZone) === `${day} ${hm}`) return d;
  }
  throw new Error(`${day} ${hm} does not exist in ${timeZone}`);
}

export function setAdmission(slug, settings) {
  return call('PUT', `/console/api/events/${slug}/admission`, { auth: true, body: settings });
}

export function getAdmission(slug) {
  return call('GET', `/console/api/events/${slug}/admission`, { auth: true });
}

/** Joins the queue from outside the browser (a fresh visitor each call). */
export function join(slug) {
  // A just-created event may take a moment to reach the gateway: retry a 404 briefly.
  return eventually(() => call('POST', `/queue/${slug}/join`), { timeout: 3_000, interval: 150 });
}

/** Waits until the admitter has admitted at least `n` visitors of the event. */
export function waitAdmitted(slug, n, timeout = 10_000) {
  return eventually(
    async () => {
      const a = await getAdmission(slug);
      if (!(a.admitted_total >= n)) throw new Error(`admitted_total ${a.admitted_total} < ${n} after ${timeout} ms`);
      return a;
    },
    { timeout, interval: 200 },
  );
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new browser context with the base URL set; collects uncaught page errors in `errors`. */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ baseURL: BASE_URL, locale: 'en-GB', ...options });
  context.setDefaultTimeout(10_000);
  const errors = [];
  context.on('weberror', (e) => errors.push(String(e.error())));
  return { context, errors };
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
  return file;
}

/** `/e/{slug}` exactly, ignoring the origin and any query. */
export function eventPageUrl(slug) {
  return (url) => new URL(url).pathname === `/e/${slug}`;
}

/** Public order API (no admission needed, the order token is the key). */
export function getOrder(orderId, orderToken) {
  return call('GET', `/api/orders/${orderId}?order_token=${encodeURIComponent(orderToken)}`);
}

/**
 * `GET /api/events/{slug}` as the buyer in `context` (its admission cookie goes along:
 * the gateway refuses the event API without one while the queue is on).
 */
export async function getEventAs(context, slug) {
  const res = await context.request.get(`${BASE_URL}/api/events/${slug}`, {
    headers: { Accept: 'application/json' },
    timeout: 10_000,
  });
  if (res.status() !== 200) throw new Error(`GET /api/events/${slug} -> ${res.status()}: ${(await res.text()).slice(0, 500)}`);
  return res.json();
}

/** Tier `code` -> available seats, as the buyer in `context` sees them. */
export async function availableAs(context, slug) {
  const ev = await getEventAs(context, slug);
  return Object.fromEntries(ev.tiers.map((t) => [t.code, t.available]));
}

/** `/orders/{id}?order_token=...` on the gateway: the order id and its token, or null. */
export function parseOrderUrl(url) {
  const u = new URL(url);
  const m = u.pathname.match(/^\/orders\/([0-9a-f-]{36})$/);
  const token = u.searchParams.get('order_token');
  return m && token && u.origin === new URL(BASE_URL).origin ? { orderId: m[1], orderToken: token } : null;
}

/** The payment sandbox's fault knobs (`GET`/`PUT /admin/faults`; a PUT takes any subset). */
export async function sandboxFaults(patch) {
  const res = await fetch(`${SANDBOX_URL}/admin/faults`, {
    method: patch ? 'PUT' : 'GET',
    headers: patch ? { 'Content-Type': 'application/json' } : {},
    body: patch ? JSON.stringify(patch) : undefined,
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${patch ? 'PUT' : 'GET'} /admin/faults -> ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/** Text content with white space collapsed. */
export const text = async (locator) => (await locator.textContent())?.replace(/\s+/g, ' ').trim();

/** No horizontal scrolling (on a phone: nothing wider than the screen). */
export async function fitsTheScreen(page, what) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) {
    // Name the culprits: the elements whose right edge is past the screen's.
    const wide = await page.evaluate((w) =>
      [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > w + 0.5)
        .slice(0, 5)
        .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className ? '.' + String(el.className).split(' ').join('.') : ''}`),
    innerWidth);
    throw new Error(`${what}: horizontal scroll (${scrollWidth} > ${innerWidth}); too wide: ${wide.join(', ')}`);
  }
}

// ------------------------------------------------------------------ mail (the SMTP sink)

/** The SMTP sink's messages (newest last). */
export async function mails() {
  const res = await fetch(`${SMTP_SINK}/messages`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`SMTP sink at ${SMTP_SINK}: HTTP ${res.status}`);
  return res.json();
}

/** The highest message id so far (-1 when none): pass it as `after` to see only newer mail. */
export async function lastMailId() {
  return (await mails()).reduce((n, m) => Math.max(n, m.id), -1);
}

const addressedTo = (m, addr) => (Array.isArray(m.to) ? m.to : [m.to]).some((t) => String(t).toLowerCase().includes(addr.toLowerCase()));

/** Waits for a message to `addr` whose id is above `after`; returns it with its raw text. */
export function mailTo(addr, { after = -1, timeout = 30_000 } = {}) {
  return eventually(
    async () => {
      const m = (await mails()).filter((x) => x.id > after && addressedTo(x, addr)).at(-1);
      if (!m) throw new Error(`no mail to ${addr} after #${after} within ${timeout} ms`);
      const raw = await (await fetch(`${SMTP_SINK}/messages/${m.id}`, { signal: AbortSignal.timeout(10_000) })).text();
      return { ...m, raw };
    },
    { timeout, interval: 300 },
  );
}

/** Every access link in a raw (possibly quoted-printable) message. */
export function joinLinks(raw) {
  const body = raw.replace(/=\r?\n/g, '').replace(/=3D/gi, '=');
  const all = [...new Set(body.match(/https?:\/\/[^\s"'<>]+\/join\/[A-Za-z0-9_-]+/g) ?? [])];
  // A plain-text part may wrap a long link; keep only the whole ones.
  return all.filter((l) => !all.some((o) => o !== l && o.startsWith(l)));
}

// ------------------------------------------------------------------ the console

/**
 * The console's command line, as the stack runs it: `$CARGO_TARGET_DIR` (or the repo's
 * target/) and `$FLOODGATE_PROFILE` (debug by default), as infra/stack picks them.
 */
export function consoleBin() {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
  return path.join(target, process.env.FLOODGATE_PROFILE || 'debug', 'console');
}

/** A console sign-in made with the command line (needs the stack's DATABASE_URL). */
export function createConsoleAccount(email, role, password) {
  if (!process.env.DATABASE_URL) throw new Error('DATABASE_URL of the stack is needed to create console accounts with its command line');
  execFileSync(consoleBin(), ['operator', 'create', '--email', email, '--name', `${role} ${email.split('@')[0]}`, '--role', role], {
    env: { ...process.env, CONSOLE_PASSWORD: password },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

/** Signs in to the console in a new context; returns { context, page, errors }. */
export async function signInConsole(browser, email, password, device = DESKTOP) {
  const { context, errors } = await newContext(browser, device);
  const page = await context.newPage();
  await page.goto('/console/');
  if (!new URL(page.url()).pathname.startsWith('/console/login')) throw new Error(`signed out, yet not on the sign-in page: ${page.url()}`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await Promise.all([
    page.waitForURL((u) => !new URL(u).pathname.startsWith('/console/login')),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  return { context, page, errors };
}
