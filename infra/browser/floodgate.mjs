// Helpers shared by the browser tests: where the stack is, the operator API, and a
// headless Debian Chromium driven by playwright-core (no browser download).

import { readFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BASE_URL = (process.env.FLOODGATE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
/** The payment sandbox's hosted payment pages (where the buyer is sent to pay). */
export const SANDBOX_URL = (process.env.FLOODGATE_SANDBOX_URL || 'http://127.0.0.1:8085').replace(/\/+$/, '');
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

/** Creates an event with the given tiers (one by default) and queue settings; returns its slug. */
export async function createEvent({ title = 'Browser test gig', queue = {}, tiers = DEFAULT_TIERS } = {}) {
  const slug = uniqueSlug();
  const starts = new Date(Date.now() + 7 * 24 * 3600 * 1000);
  starts.setUTCSeconds(0, 0);
  const ends = new Date(starts.getTime() + 2 * 3600 * 1000);
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
    },
  });
  return slug;
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
