//! The live figures as Prometheus metrics (`floodgate_queue_*`, `floodgate_tier_*`, ...).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use waitroom::EventSlug;
use waitroom::figures::Figures;
use waitroom::settings::Mode;

use super::snapshot::Sales;

#[derive(Clone)]
pub(super) struct LiveMetrics {
    /// Whether this console exports the events' figures (it holds the exporter lease;
    /// see `hub::export_forever`). Off, it exports none, so a sum over two consoles is
    /// not twice the queue.
    exporting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(super) viewers: IntGaugeVec,
    pub(super) feeds: IntGauge,
    pub(super) reads: IntCounterVec,
    pub(super) read_failures: IntCounterVec,
    pub(super) waiting: IntGaugeVec,
    pub(super) active: IntGaugeVec,
    pub(super) max_active: IntGaugeVec,
    pub(super) rate: IntGaugeVec,
    pub(super) mode: IntGaugeVec,
    pub(super) no_shows: IntGaugeVec,
    pub(super) arrivals: IntCounterVec,
    pub(super) admitted: IntCounterVec,
    pub(super) tier_sold: IntGaugeVec,
    pub(super) tier_held: IntGaugeVec,
    pub(super) tier_capacity: IntGaugeVec,
    pub(super) orders_paid: IntCounterVec,
    pub(super) payments_failed: IntCounterVec,
    pub(super) deliveries_pending: IntGaugeVec,
    pub(super) deliveries_failed: IntGaugeVec,
}

pub(super) const MODES: [Mode; 6] = [
    Mode::Off,
    Mode::Prequeue,
    Mode::On,
    Mode::Paused,
    Mode::SoldOut,
    Mode::Closed,
];

impl LiveMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            r.register(Box::new(g.clone())).expect("register");
            g
        }
        fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            r.register(Box::new(c.clone())).expect("register");
            c
        }
        let feeds = IntGauge::new(
            "floodgate_console_live_feeds",
            "Live feeds running (one per watched event)",
        )
        .expect("metric");
        registry
            .register(Box::new(feeds.clone()))
            .expect("register");
        let r = registry;
        let ev = &["event"];
        let tier = &["event", "tier"];
        Self {
            // One console alone exports; with several, `export_forever` settles who.
            exporting: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            viewers: gauge(
                r,
                "floodgate_console_live_viewers",
                "Open control-room streams",
                ev,
            ),
            feeds,
            reads: counter(
                r,
                "floodgate_console_live_reads_total",
                "Store reads made by live feeds and the exporter",
                &["store"],
            ),
            read_failures: counter(
                r,
                "floodgate_console_live_read_failures_total",
                "Store reads that failed",
                &["store"],
            ),
            waiting: gauge(r, "floodgate_queue_waiting", "People waiting in line", ev),
            active: gauge(
                r,
                "floodgate_queue_active",
                "Admission slots held (admitted, not finished or lapsed)",
                ev,
            ),
            max_active: gauge(r, "floodgate_queue_max_active", "Configured max active", ev),
            rate: gauge(
                r,
                "floodgate_queue_rate_per_minute",
                "Configured admission rate",
                ev,
            ),
            mode: gauge(
                r,
                "floodgate_queue_mode",
                "1 for the queue's current mode",
                &["event", "mode"],
            ),
            no_shows: gauge(
                r,
                "floodgate_queue_no_shows",
                "Admissions that lapsed unclaimed",
                ev,
            ),
            arrivals: counter(
                r,
                "floodgate_queue_arrivals_total",
                "Places taken in the queue (as counted in Redis)",
                ev,
            ),
            admitted: counter(
                r,
                "floodgate_queue_admitted_total",
                "Visitors admitted (the queue's admission pointer)",
                ev,
            ),
            tier_sold: gauge(r, "floodgate_tier_sold", "Seats sold", tier),
            tier_held: gauge(r, "floodgate_tier_held", "Seats on hold", tier),
            tier_capacity: gauge(r, "floodgate_tier_capacity", "Seats in the tier", tier),
            orders_paid: counter(
                r,
                "floodgate_orders_paid_total",
                "Orders paid (as counted in Postgres)",
                ev,
            ),
            payments_failed: counter(
                r,
                "floodgate_payments_failed_total",
                "Failed payment attempts (as counted in Postgres)",
                ev,
            ),
            deliveries_pending: gauge(
                r,
                "floodgate_deliveries_pending",
                "Emails queued, not yet sent",
                ev,
            ),
            deliveries_failed: gauge(
                r,
                "floodgate_deliveries_failed",
                "Emails given up on or bounced",
                ev,
            ),
        }
    }

    pub(super) fn read(&self, store: &str, ok: bool) {
        self.reads.with_label_values(&[store]).inc();
        if !ok {
            self.read_failures.with_label_values(&[store]).inc();
        }
    }

    /// Takes up or gives up exporting the events' figures; giving up forgets every
    /// figure exported so far (a scrape must not find stale copies).
    pub(super) fn set_exporting(&self, on: bool) {
        let was = self
            .exporting
            .swap(on, std::sync::atomic::Ordering::Relaxed);
        if was && !on {
            for g in [
                &self.waiting,
                &self.active,
                &self.max_active,
                &self.rate,
                &self.mode,
                &self.no_shows,
                &self.tier_sold,
                &self.tier_held,
                &self.tier_capacity,
                &self.deliveries_pending,
                &self.deliveries_failed,
            ] {
                g.reset();
            }
            for c in [
                &self.arrivals,
                &self.admitted,
                &self.orders_paid,
                &self.payments_failed,
            ] {
                c.reset();
            }
        }
    }

    pub(super) fn exporting(&self) -> bool {
        self.exporting.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn export(&self, slug: &EventSlug, f: &Figures, s: &Sales) {
        if !self.exporting() {
            return;
        }
        let ev = slug.as_str();
        let set = |g: &IntGaugeVec, v: u64| g.with_label_values(&[ev]).set(v as i64);
        set(&self.waiting, f.waiting());
        set(&self.active, f.active);
        set(&self.max_active, u64::from(f.settings.max_active));
        set(&self.rate, u64::from(f.settings.rate_per_minute));
        set(&self.no_shows, f.no_shows());
        set(&self.deliveries_pending, s.deliveries_pending);
        set(&self.deliveries_failed, s.deliveries_failed);
        for m in MODES {
            self.mode
                .with_label_values(&[ev, m.as_str()])
                .set(i64::from(m == f.settings.mode));
        }
        for t in &s.tiers {
            let labels = [ev, t.code.as_str()];
            self.tier_sold.with_label_values(&labels).set(t.sold);
            self.tier_held.with_label_values(&labels).set(t.held);
            self.tier_capacity
                .with_label_values(&labels)
                .set(t.capacity);
        }
        // Counters follow the database's counts (they only grow there).
        let follow = |c: &IntCounterVec, v: u64| {
            let c = c.with_label_values(&[ev]);
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        follow(&self.arrivals, f.arrived());
        follow(&self.admitted, f.head);
        follow(&self.orders_paid, s.orders_paid);
        follow(&self.payments_failed, s.payments_failed);
    }
}
