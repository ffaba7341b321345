// The control room: live charts and controls for one event's on-sale.
//
// The page is rendered by the console (console/src/control_room.rs); this script
// subscribes to the event's live feed (Server-Sent Events, one snapshot a second),
// draws the last 30 minutes with uPlot, keeps the key numbers current, and — for staff
// — turns the controls into calls to PUT /console/api/events/{event}/admission, each
// with a reason for the audit log. Hosts get the same page without the controls.
(() => {
  'use strict';

  const room = document.getElementById('room');
  if (!room || typeof uPlot === 'undefined') return;

  const slug = room.dataset.event;
  const canSteer = room.dataset.canSteer === 'true';
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || '';
  const $ = (id) => document.getElementById(id);
  const whole = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });
  const fmt = (v) => (v == null || Number.isNaN(v) ? '—' : whole.format(v));
  const pct = (v) => (v == null ? '—' : `${(v * 100).toFixed(v < 0.1 ? 1 : 0)} %`);
  // Every time in the event's own timezone, as the console's pages show them.
  const timeZone = room.dataset.tz || undefined;
  const clock = (d) => d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone });
  const clockZoned = (d) =>
    d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZone, timeZoneName: 'short' });

  // ------------------------------------------------------------------ data
  let windowSeconds = 30 * 60;
  const cols = {
    t: [], waiting: [], arrivals: [], admitted: [], rate: [], converted: [],
    active: [], maxActive: [], failed: [], pending: [], dfailed: [], sold: {},
  };
  let tiers = [];
  let markers = [];
  let latest = null;
  let lastSnapshotAt = 0;
  const charts = {};

  function loadHistory(h) {
    windowSeconds = h.window_seconds || windowSeconds;
    tiers = (h.tiers && h.tiers.length ? h.tiers : (h.latest?.tiers || [])).map((t) => ({ code: t.code, name: t.name }));
    cols.t = h.t.slice();
    cols.waiting = h.waiting.slice();
    cols.arrivals = h.arrivals_per_min.slice();
    cols.admitted = h.admitted_per_min.slice();
    cols.rate = h.rate_per_minute.slice();
    cols.converted = h.holds_converted_per_min.slice();
    cols.active = h.active.slice();
    cols.maxActive = h.max_active.slice();
    cols.failed = h.payments_failed_per_min.slice();
    cols.pending = h.deliveries_pending.slice();
    cols.dfailed = h.deliveries_failed.slice();
    cols.sold = {};
    for (const t of tiers) cols.sold[t.code] = (h.sold?.[t.code] || []).slice();
    markers = (h.markers || []).filter(isSteering);
  }

  /** Admission changes are drawn on the charts; other audit entries only listed. */
  function isSteering(m) {
    return m.action === 'admission.update';
  }

  function append(s) {
    const t = Date.parse(s.at) / 1000;
    const last = cols.t[cols.t.length - 1];
    if (last != null && t <= last) return; // already in the history
    const on = s.settings.mode === 'on';
    cols.t.push(t);
    cols.waiting.push(s.waiting);
    cols.arrivals.push(s.arrivals_per_min);
    cols.admitted.push(s.admitted_per_min);
    cols.rate.push(on ? s.settings.rate_per_minute : 0);
    cols.converted.push(s.holds_converted_per_min);
    cols.active.push(s.active);
    cols.maxActive.push(s.settings.max_active);
    cols.failed.push(s.payments_failed_per_min);
    cols.pending.push(s.deliveries_pending);
    cols.dfailed.push(s.deliveries_failed);
    for (const tier of tiers) {
      const now = s.tiers.find((x) => x.code === tier.code);
      cols.sold[tier.code].push(now ? now.sold : null);
    }
    // Keep the window.
    const cutoff = t - windowSeconds;
    let drop = 0;
    while (drop < cols.t.length && cols.t[drop] < cutoff) drop++;
    if (drop > 0) {
      for (const k of Object.keys(cols)) if (Array.isArray(cols[k])) cols[k].splice(0, drop);
      for (const code of Object.keys(cols.sold)) cols.sold[code].splice(0, drop);
    }
    markers = markers.filter((m) => Date.parse(m.at) / 1000 >= cutoff);
  }

  // ------------------------------------------------------------------ charts
  function palette() {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    return {
      axis: v('--chart-axis'), grid: v('--chart-grid'), marker: v('--chart-marker'),
      blue: v('--c-blue'), orange: v('--c-orange'), green: v('--c-green'), red: v('--c-red'),
      purple: v('--c-purple'), grey: v('--c-grey'), teal: v('--c-teal'), blueFill: v('--c-blue-fill'),
    };
  }

  function markerPlugin(c, labelled) {
    return {
      hooks: {
        draw: [
          (u) => {
            const { ctx } = u;
            const { left, top, width, height } = u.bbox;
            const dpr = window.devicePixelRatio || 1;
            ctx.save();
            ctx.strokeStyle = c.marker;
            ctx.fillStyle = c.marker;
            ctx.lineWidth = 1.5 * dpr;
            ctx.setLineDash([4 * dpr, 3 * dpr]);
            ctx.font = `${11 * dpr}px system-ui, sans-serif`;
            // A label goes on the first line where it overlaps no other label (a label
            // near the right edge is drawn left of its marker, so the order of the
            // markers is not the order of their labels).
            const lines = [];
            for (const m of markers) {
              const x = Math.round(u.valToPos(Date.parse(m.at) / 1000, 'x', true));
              if (x < left || x > left + width) continue;
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
              if (labelled) {
                const text = m.summary.length > 40 ? `${m.summary.slice(0, 39)}…` : m.summary;
                const w = ctx.measureText(text).width;
                const tx = x + 4 * dpr + w > left + width ? x - 4 * dpr - w : x + 4 * dpr;
                const gap = 6 * dpr;
                const free = (taken) => taken.every(([a, b]) => tx + w + gap <= a || tx >= b + gap);
                let line = 0;
                while (lines[line] && !free(lines[line])) line++;
                (lines[line] ||= []).push([tx, tx + w]);
                ctx.fillText(text, tx, top + (12 + 13 * line) * dpr);
              }
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  /** The x range: the last 30 minutes once there is that much, at least 5 minutes before. */
  function xRange() {
    const end = cols.t.length ? cols.t[cols.t.length - 1] : Date.now() / 1000;
    const start = cols.t.length ? cols.t[0] : end;
    return [Math.max(end - windowSeconds, Math.min(start, end - 300)), end];
  }

  function timeTicks(u, splits) {
    const step = splits.length > 1 ? splits[1] - splits[0] : 60;
    const opts = step < 60 ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
    return splits.map((v) => new Date(v * 1000).toLocaleTimeString('en-GB', { ...opts, timeZone }));
  }

  function makeChart(id, series, dataFn, { labelled = false, stepped = [] } = {}) {
    const el = $(id);
    if (!el) return;
    const c = palette();
    const opts = {
      width: Math.max(el.clientWidth, 200),
      height: 190,
      pxAlign: false,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { live: true },
      scales: {
        x: { time: true, range: xRange },
        y: { range: (u, min, max) => [0, Math.max(4, (max || 0) * 1.15)] },
      },
      axes: [
        { stroke: c.axis, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, values: timeTicks, space: 80 },
        { stroke: c.axis, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 }, size: 56, values: (u, vals) => vals.map((v) => whole.format(v)) },
      ],
      series: [
        { value: (u, v) => (v == null ? '—' : clock(new Date(v * 1000))) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: c[s.color] || s.color,
          width: s.width || 2,
          dash: s.dash,
          fill: s.fill ? c[s.fill] : undefined,
          paths: stepped.includes(i) ? uPlot.paths.stepped({ align: 1 }) : undefined,
          points: { show: false },
          value: (u, v) => fmt(v),
        })),
      ],
      plugins: [markerPlugin(c, labelled)],
    };
    const chart = new uPlot(opts, dataFn(), el);
    // Away from the cursor the legend shows the newest values, not dashes.
    const entry = { chart, dataFn, hovering: false };
    chart.over.addEventListener('mouseenter', () => (entry.hovering = true));
    chart.over.addEventListener('mouseleave', () => {
      entry.hovering = false;
      showNewest(entry);
    });
    charts[id] = entry;
    showNewest(entry);
    new ResizeObserver(() => {
      const w = Math.max(el.clientWidth, 200);
      if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height: 190 });
    }).observe(el);
  }

  const tierColors = ['blue', 'green', 'orange', 'purple', 'teal', 'red', 'grey'];

  function buildCharts() {
    for (const { chart } of Object.values(charts)) chart.destroy();
    for (const k of Object.keys(charts)) delete charts[k];
    makeChart('chart-waiting', [{ label: 'Waiting', color: 'blue', fill: 'blueFill' }], () => [cols.t, cols.waiting], { labelled: true });
    makeChart(
      'chart-rates',
      [
        { label: 'Arrivals/min', color: 'orange' },
        { label: 'Admitted/min', color: 'blue', width: 2.5 },
        { label: 'Rate setting', color: 'grey', dash: [6, 4], width: 1.5 },
        { label: 'Paid/min', color: 'green' },
      ],
      () => [cols.t, cols.arrivals, cols.admitted, cols.rate, cols.converted],
      { stepped: [2] },
    );
    makeChart(
      'chart-active',
      [
        { label: 'Active', color: 'blue', fill: 'blueFill' },
        { label: 'Max active', color: 'red', dash: [6, 4], width: 1.5 },
      ],
      () => [cols.t, cols.active, cols.maxActive],
      { stepped: [1] },
    );
    makeChart(
      'chart-sales',
      tiers.map((t, i) => ({ label: t.name, color: tierColors[i % tierColors.length] })),
      () => [cols.t, ...tiers.map((t) => cols.sold[t.code])],
    );
    makeChart(
      'chart-failures',
      [
        { label: 'Payments failed/min', color: 'red' },
        { label: 'Emails pending', color: 'orange' },
        { label: 'Emails failed', color: 'purple' },
      ],
      () => [cols.t, cols.failed, cols.pending, cols.dfailed],
    );
  }

  function showNewest(entry) {
    const n = entry.chart.data[0]?.length || 0;
    if (!entry.hovering && n > 0) entry.chart.setLegend({ idx: n - 1 });
  }

  function redraw() {
    for (const entry of Object.values(charts)) {
      entry.chart.setData(entry.dataFn());
      showNewest(entry);
    }
  }

  // ------------------------------------------------------------------ numbers
  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  const MODE_LABELS = { off: 'Queue off', prequeue: 'Pre-queue', on: 'Admitting', paused: 'Paused', sold_out: 'Sold out', closed: 'Closed' };

  function showNumbers(s) {
    setText('n-waiting', fmt(s.waiting));
    setText('n-arrivals', fmt(s.arrivals_per_min));
    setText('n-admitted', fmt(s.admitted_per_min));
    setText('n-admitted-hint', `per minute · rate ${fmt(s.settings.rate_per_minute)}`);
    setText('n-active', fmt(s.active));
    setText('n-active-hint', `of max ${fmt(s.settings.max_active)}`);
    setText('n-paid', fmt(s.holds_converted_per_min));
    setText('n-noshows', fmt(s.no_shows));
    setText('n-failed', fmt(s.payments_failed_per_min));
    setText('n-failed-hint', s.payment_failure_rate == null ? 'last minute' : `last minute · ${pct(s.payment_failure_rate)}`);
    setText('n-emails', `${fmt(s.deliveries_pending)} · ${fmt(s.deliveries_failed)}`);
    const blocked = $('blocked');
    setText('blocked', s.blocked || '');
    blocked.hidden = !s.blocked;
    $('n-failed')?.classList.toggle('bad', s.payments_failed_per_min > 0);
    $('n-emails')?.classList.toggle('bad', s.deliveries_failed > 0);

    const mode = $('mode');
    if (mode && mode.dataset.mode !== s.settings.mode) {
      mode.dataset.mode = s.settings.mode;
      mode.className = `mode mode-${s.settings.mode}`;
      mode.textContent = MODE_LABELS[s.settings.mode] || s.settings.mode;
    }

    // Funnel: bars relative to arrivals.
    const top = Math.max(1, s.funnel.arrived);
    for (const [step, value] of Object.entries(s.funnel)) {
      setText(`f-${step}`, fmt(value));
      const bar = document.querySelector(`#funnel li[data-step="${step}"] .bar span`);
      if (bar) bar.style.width = `${Math.min(100, (100 * value) / top)}%`;
    }

    // Tiers.
    for (const t of s.tiers) {
      const row = document.querySelector(`#tiers tr[data-tier="${CSS.escape(t.code)}"]`);
      if (!row) continue;
      for (const f of ['sold', 'held', 'capacity']) {
        const cell = row.querySelector(`[data-f="${f}"]`);
        if (cell) cell.textContent = fmt(t[f]);
      }
      const cap = Math.max(1, t.capacity);
      row.querySelector('.meter .sold').style.width = `${(100 * t.sold) / cap}%`;
      row.querySelector('.meter .held').style.width = `${(100 * t.held) / cap}%`;
    }
  }

  // A calm spoken summary: at most every 20 s, or at once when the mode changes.
  let spokenAt = 0;
  let spokenMode = null;
  function speak(s) {
    const now = Date.now();
    if (now - spokenAt < 20_000 && spokenMode === s.settings.mode) return;
    spokenAt = now;
    spokenMode = s.settings.mode;
    setText(
      'live-summary',
      `${MODE_LABELS[s.settings.mode]}. ${fmt(s.waiting)} waiting. Admitting ${fmt(s.admitted_per_min)} per minute at a rate of ${fmt(s.settings.rate_per_minute)}. ` +
        `${fmt(s.active)} of ${fmt(s.settings.max_active)} active. ${fmt(s.holds_converted_per_min)} paid orders per minute.`,
    );
  }

  // ------------------------------------------------------------------ controls
  const rate = $('rate');
  const rateRange = $('rate-range');
  const maxActive = $('max-active');
  let dirty = false;

  function showSettings(s) {
    if (!canSteer) return;
    const st = s.settings;
    const editing = dirty || [rate, rateRange, maxActive].includes(document.activeElement);
    if (!editing) {
      rate.value = st.rate_per_minute;
      maxActive.value = st.max_active;
      syncRange();
    }
    const m = st.mode;
    $('pause').disabled = m !== 'on';
    $('resume').disabled = !['paused', 'sold_out', 'closed', 'off'].includes(m);
    $('open-now').hidden = m !== 'prequeue';
    $('sold-out').disabled = m === 'sold_out';
    $('close').disabled = m === 'closed';
    const ck = s.checkout;
    // Checkout's pace means something once orders are paid; before, it would read "0".
    let text = 'No sales yet: checkout\'s pace shows here once orders are paid.';
    if (s.funnel.paid > 0) {
      text = `Checkout keeps up with ${fmt(ck.keeps_up_with_per_min)} orders/min`;
      if (ck.suggested_rate_per_minute != null && ck.conversion != null) {
        text += ` — about ${fmt(ck.suggested_rate_per_minute)} admissions/min at ${pct(ck.conversion)} conversion`;
      }
      text += '.';
    }
    if (ck.saturated) text += ' Checkout is full: a higher rate would only queue people inside checkout.';
    setText('suggest', text);
    $('suggest').classList.toggle('warn', !!ck.saturated);
  }

  function syncRange() {
    const v = Number(rate.value) || 0;
    if (v > Number(rateRange.max)) rateRange.max = String(Math.min(1_000_000, Math.ceil((v * 2) / 100) * 100));
    rateRange.value = String(v);
  }

  /** Asks for a reason in the dialog; resolves to the reason, or null if cancelled. */
  function ask(what) {
    const dialog = $('confirm');
    const reason = $('reason');
    $('confirm-what').textContent = what;
    reason.value = '';
    return new Promise((resolve) => {
      const done = (value) => {
        $('confirm-form').removeEventListener('submit', onSubmit);
        $('confirm-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('cancel', onCancel);
        if (dialog.open) dialog.close();
        resolve(value);
      };
      const onSubmit = (e) => {
        e.preventDefault();
        const r = reason.value.trim();
        if (!r) {
          reason.setAttribute('aria-invalid', 'true');
          reason.focus();
          return;
        }
        reason.removeAttribute('aria-invalid');
        done(r);
      };
      const onCancel = (e) => {
        e.preventDefault();
        done(null);
      };
      $('confirm-form').addEventListener('submit', onSubmit);
      $('confirm-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('cancel', onCancel);
      dialog.showModal();
      reason.focus();
    });
  }

  async function change(body, what) {
    const reason = await ask(what);
    if (reason == null) return;
    const result = $('steer-result');
    result.className = 'result';
    result.textContent = 'Applying…';
    try {
      const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
      if (csrf) headers['X-CSRF-Token'] = csrf;
      const res = await fetch(`/console/api/events/${encodeURIComponent(slug)}/admission`, {
        method: 'PUT',
        headers,
        credentials: 'same-origin',
        body: JSON.stringify({ ...body, reason }),
      });
      const answer = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(answer.message || `the console answered ${res.status}`);
      dirty = false;
      result.className = 'result ok';
      result.textContent = `Applied at ${clockZoned(new Date())}: ${what}`;
      refreshAudit();
    } catch (e) {
      result.className = 'result bad';
      result.textContent = `Not applied: ${e.message}`;
    }
  }

  function current() {
    return latest?.settings || {
      mode: room.dataset.mode,
      rate_per_minute: Number(room.dataset.rate),
      max_active: Number(room.dataset.maxActive),
    };
  }

  function wireControls() {
    if (!canSteer) return;
    rate.addEventListener('input', () => {
      dirty = true;
      syncRange();
    });
    rateRange.addEventListener('input', () => {
      dirty = true;
      rate.value = rateRange.value;
    });
    maxActive.addEventListener('input', () => {
      dirty = true;
    });
    $('steer').addEventListener('submit', (e) => {
      e.preventDefault();
      const now = current();
      const r = Number(rate.value);
      const m = Number(maxActive.value);
      const result = $('steer-result');
      if (!Number.isInteger(r) || r < 0 || r > 1_000_000) {
        result.className = 'result bad';
        result.textContent = 'The rate is a whole number from 0 to 1,000,000 per minute.';
        rate.focus();
        return;
      }
      if (!Number.isInteger(m) || m < 1 || m > 1_000_000) {
        result.className = 'result bad';
        result.textContent = 'Max active is a whole number from 1 to 1,000,000.';
        maxActive.focus();
        return;
      }
      const parts = [];
      if (r !== now.rate_per_minute) parts.push(`rate ${fmt(now.rate_per_minute)} → ${fmt(r)}/min`);
      if (m !== now.max_active) parts.push(`max active ${fmt(now.max_active)} → ${fmt(m)}`);
      if (!parts.length) {
        result.className = 'result';
        result.textContent = 'Nothing to change.';
        return;
      }
      change({ rate_per_minute: r, max_active: m }, parts.join(', '));
    });
    const modes = {
      pause: [{ mode: 'paused' }, 'pause admissions (the queue keeps growing)'],
      resume: [{ mode: 'on' }, 'resume admissions'],
      'sold-out': [{ mode: 'sold_out' }, 'declare the event sold out (people waiting are told)'],
      close: [{ mode: 'closed' }, 'close the queue (nobody new can join)'],
    };
    for (const [id, [body, what]] of Object.entries(modes)) {
      $(id).addEventListener('click', () => change(body, what));
    }
    $('open-now').addEventListener('click', () =>
      change({ mode: 'on', opens_at: new Date().toISOString() }, 'open now: draw the pre-queue and start admitting'),
    );
  }

  async function refreshAudit() {
    const body = $('audit');
    if (!body) return;
    try {
      const res = await fetch(`/console/api/events/${encodeURIComponent(slug)}/audit?limit=20`, {
        headers: { Accept: 'application/json' },
        credentials: 'same-origin',
      });
      if (!res.ok) return;
      const rows = await res.json();
      const frag = document.createDocumentFragment();
      // Refused attempts are audited but changed nothing: not in the list of changes.
      for (const r of rows.filter((x) => !String(x.action).endsWith('.refused'))) {
        const li = document.createElement('li');
        const meta = document.createElement('span');
        meta.className = 'meta';
        const when = document.createElement('time');
        when.dateTime = r.at;
        when.title = new Date(r.at).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
        when.textContent = clockZoned(new Date(r.at));
        meta.append(when, ` · ${r.actor}`);
        const what = document.createElement('span');
        what.className = 'what';
        what.textContent = r.action === 'admission.update' ? r.summary : r.action;
        li.append(meta, what);
        if (r.reason) {
          const why = document.createElement('span');
          why.className = 'why';
          why.textContent = ` — ${r.reason}`;
          li.append(' ', why);
        }
        frag.append(li);
      }
      if (!rows.length) return;
      body.replaceChildren(frag);
    } catch {
      /* the next change tries again */
    }
  }

  // ------------------------------------------------------------------ the feed
  function onSnapshot(s) {
    latest = s;
    lastSnapshotAt = Date.now();
    if (s.changes?.length) {
      const known = new Set(markers.map((m) => m.id));
      for (const m of s.changes) if (!known.has(m.id) && isSteering(m)) markers.push(m);
      refreshAudit();
    }
    append(s);
    redraw();
    showNumbers(s);
    showSettings(s);
    speak(s);
    $('stale').hidden = true;
    setText('conn', `Live · ${clockZoned(new Date(s.at))}`);
    $('conn').className = 'conn live';
  }

  function connect() {
    const feed = new EventSource(`/console/api/events/${encodeURIComponent(slug)}/live`);
    feed.addEventListener('history', (e) => {
      const h = JSON.parse(e.data);
      loadHistory(h);
      buildCharts();
      if (h.latest) onSnapshot(h.latest);
    });
    feed.addEventListener('snapshot', (e) => onSnapshot(JSON.parse(e.data)));
    feed.addEventListener('problem', (e) => {
      const p = JSON.parse(e.data);
      const stale = $('stale');
      stale.textContent = `${p.message} (${clock(new Date(p.at))}).`;
      stale.hidden = false;
    });
    feed.addEventListener('open', () => {
      setText('conn', 'Live');
      $('conn').className = 'conn live';
    });
    feed.addEventListener('error', () => {
      setText('conn', feed.readyState === EventSource.CLOSED ? 'Disconnected — reload the page' : 'Reconnecting…');
      $('conn').className = 'conn down';
    });
  }

  setInterval(() => {
    if (!lastSnapshotAt) return;
    const age = Math.round((Date.now() - lastSnapshotAt) / 1000);
    if (age >= 5) {
      const stale = $('stale');
      stale.textContent = `No update for ${age} s: the figures may be out of date.`;
      stale.hidden = false;
    }
  }, 1000);

  // Re-read colours when the system switches between light and dark.
  window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => {
    if (Object.keys(charts).length) buildCharts();
  });

  wireControls();
  connect();
})();
