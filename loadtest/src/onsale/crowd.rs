//! The crowd: one tokio task per simulated buyer, each with its own HTTP client and
//! cookie jar, walking the journey a browser would: join the queue, poll as the page
//! does (honouring `retry_after_ms`), hold, check out, pay at the sandbox, and watch
//! the order page until it says paid.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;
use rand::SeedableRng;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use reqwest::{Client, RequestBuilder};
use serde::Serialize;
use serde_json::Value;

use super::stats::{Sample, Step};

/// The tiers of the simulated event, as the buyers know them.
#[derive(Debug, Clone, Serialize)]
pub struct TierSpec {
    pub code: String,
    pub capacity: u32,
    pub price_cents: i64,
}

/// Everything a buyer needs to know about the run.
pub struct Ctx {
    pub base: String,
    pub sandbox: String,
    pub sandbox_key: String,
    pub slug: String,
    pub run_id: String,
    pub tiers: Vec<TierSpec>,
    pub max_poll: Duration,
    pub pay_timeout: Duration,
    /// Multiplies how often failed requests are retried (fault runs raise it).
    pub patience: u32,
    pub start: Instant,
    /// The crowd's hard end: buyers still going then stop as "unfinished".
    pub deadline: Instant,
    pub counters: Counters,
}

impl Ctx {
    pub fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// Live counts, for the progress bars and the timeline.
#[derive(Default)]
pub struct Counters {
    pub arrived: AtomicU64,
    pub waiting: AtomicU64,
    /// Buyers told "sold out" who keep watching in case seats come back.
    pub watching: AtomicU64,
    pub admitted: AtomicU64,
    pub held: AtomicU64,
    pub paid: AtomicU64,
    pub finished: AtomicU64,
    /// Buyers between admission and the end of their purchase.
    pub in_flight: AtomicU64,
    /// The last time (ms since start) `in_flight` changed or was non-zero.
    pub in_flight_seen_ms: AtomicU64,
    pub requests: AtomicU64,
    pub server_errors: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

/// Who a buyer is, drawn before the run so a seed reproduces the crowd.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub n: usize,
    /// Arrival, ms after the opening.
    pub arrival_ms: u64,
    pub quantity: u32,
    /// Index into the tiers: the one this buyer wants first.
    pub tier: usize,
    /// Leaves the queue after this long if not admitted by then.
    pub abandon_queue_after_ms: Option<u64>,
    pub abandon_checkout: bool,
    /// Pays first with a card that is declined.
    pub declined_card: bool,
    /// After a decline, tries again with a good card.
    pub retries_after_decline: bool,
    /// Reloads the waiting page (joins again with its queue token) after this many polls.
    pub refresh_after_polls: Option<u32>,
    pub think_ms: u64,
}

/// The knobs that shape the crowd.
pub struct CrowdShape {
    pub arrivals_ms: Vec<u64>,
    pub quantity_mix: Vec<(u32, u32)>,
    pub tier_weights: Vec<u32>,
    pub abandon_queue: f64,
    pub abandon_checkout: f64,
    pub decline_rate: f64,
    pub retry_declined: f64,
    pub refreshers: f64,
    pub think_ms: u64,
    pub seed: u64,
}

pub fn plans(shape: &CrowdShape) -> Vec<Plan> {
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let qty = WeightedIndex::new(shape.quantity_mix.iter().map(|(_, w)| *w))
        .expect("quantity mix has a positive weight");
    let tier = WeightedIndex::new(&shape.tier_weights).expect("tiers have capacity");
    shape
        .arrivals_ms
        .iter()
        .enumerate()
        .map(|(n, &arrival_ms)| Plan {
            n,
            arrival_ms,
            quantity: shape.quantity_mix[qty.sample(&mut rng)].0,
            tier: tier.sample(&mut rng),
            abandon_queue_after_ms: rng
                .gen_bool(shape.abandon_queue)
                .then(|| rng.gen_range(500..15_000)),
            abandon_checkout: rng.gen_bool(shape.abandon_checkout),
            declined_card: rng.gen_bool(shape.decline_rate),
            retries_after_decline: rng.gen_bool(shape.retry_declined),
            refresh_after_polls: rng.gen_bool(shape.refreshers).then(|| rng.gen_range(1..4)),
            think_ms: if shape.think_ms == 0 {
                0
            } else {
                rng.gen_range(0..=shape.think_ms)
            },
        })
        .collect()
}

/// How a buyer's visit ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Paid, and the order page said so.
    Paid,
    /// The order ended refunded (paid after the hold lapsed and the tier was full).
    Refunded,
    /// The queue said sold out (or closed) before this buyer got in.
    SoldOutInQueue,
    /// Admitted, but every tier was sold out at the hold.
    SoldOutAtHold,
    /// Left the queue before being admitted.
    AbandonedQueue,
    /// Released the hold instead of paying.
    AbandonedCheckout,
    /// The card was declined and the buyer gave up (hold released).
    Declined,
    /// Charged, but the order page did not say paid within the timeout.
    PayTimeout,
    /// Something unexpected; the text says what.
    Failed(String),
    /// Still going when the run's time ran out.
    Unfinished,
}

impl Outcome {
    pub fn key(&self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Refunded => "refunded",
            Outcome::SoldOutInQueue => "sold_out_in_queue",
            Outcome::SoldOutAtHold => "sold_out_at_hold",
            Outcome::AbandonedQueue => "abandoned_queue",
            Outcome::AbandonedCheckout => "abandoned_checkout",
            Outcome::Declined => "declined",
            Outcome::PayTimeout => "pay_timeout",
            Outcome::Failed(_) => "failed",
            Outcome::Unfinished => "unfinished",
        }
    }
}

/// A refresher's reload: the place before and after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Refresh {
    pub seq_before: Option<u64>,
    pub seq_after: Option<u64>,
}

/// What one buyer did and saw.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub n: usize,
    pub plan: Plan,
    pub email: String,
    pub arrival_ms: u64,
    pub joined_ms: Option<u64>,
    /// `position` in the join answer.
    pub join_position: Option<u64>,
    /// The wait the join answer estimated (`eta_seconds`), for a buyer told to wait.
    pub join_eta_ms: Option<u64>,
    /// `seq` of the queue token in effect (the place in line).
    pub seq: Option<u64>,
    /// Set when the place changed other than by a reload (e.g. a lapsed admission).
    pub requeued: bool,
    /// When the first answer saying `admitted` arrived.
    pub admitted_ms: Option<u64>,
    /// `seq` in the admission token.
    pub admission_seq: Option<u64>,
    /// When the last status poll answered `waiting` was sent (for the current `seq`).
    pub last_waiting_sent_ms: Option<u64>,
    /// The poll interval the buyer used just before it saw itself admitted.
    pub last_poll_interval_ms: Option<u64>,
    pub polls: u32,
    pub refresh: Option<Refresh>,
    pub hold_id: Option<String>,
    pub tier: Option<String>,
    pub quantity: Option<u32>,
    pub order_id: Option<String>,
    /// A confirm at the sandbox answered success (directly or replayed).
    pub charged: bool,
    /// Confirms answered with the sandbox's injected 504 (then replayed by key).
    pub injected_timeouts: u32,
    pub charged_ms: Option<u64>,
    pub paid_seen_ms: Option<u64>,
    pub outcome: Outcome,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

impl Record {
    /// A buyer as it arrives, before its first request: nothing done, nothing known.
    pub fn arriving(plan: Plan, email: String) -> Self {
        Self {
            n: plan.n,
            arrival_ms: plan.arrival_ms,
            plan,
            email,
            joined_ms: None,
            join_position: None,
            join_eta_ms: None,
            seq: None,
            requeued: false,
            admitted_ms: None,
            admission_seq: None,
            last_waiting_sent_ms: None,
            last_poll_interval_ms: None,
            polls: 0,
            refresh: None,
            hold_id: None,
            tier: None,
            quantity: None,
            order_id: None,
            charged: false,
            injected_timeouts: 0,
            charged_ms: None,
            paid_seen_ms: None,
            outcome: Outcome::Unfinished,
            samples: Vec::new(),
        }
    }
}

/// A call's result: the status (0 = no answer) and the JSON body if any.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

struct Buyer<'a> {
    ctx: &'a Ctx,
    plan: &'a Plan,
    http: Client,
    rec: Record,
    rng: StdRng,
    watching: bool,
}

/// Decodes the `seq` claim of a JWT without verifying it (the simulator only reads).
pub fn token_seq(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["seq"].as_u64()
}

fn retry_after_header(r: &reqwest::Response) -> Option<Duration> {
    let secs: f64 = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(secs.clamp(0.0, 60.0)))
}

impl Buyer<'_> {
    async fn call(&mut self, step: Step, req: RequestBuilder) -> Answer {
        let at_ms = self.ctx.ms();
        let t = Instant::now();
        inc(&self.ctx.counters.requests);
        let (status, body, retry_after) = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = retry_after_header(&r);
                let body = r
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                (status, body, retry_after)
            }
            Err(_) => (0, Value::Null, None),
        };
        if status >= 500 {
            inc(&self.ctx.counters.server_errors);
        }
        self.rec.samples.push(Sample {
            step,
            at_ms,
            latency_us: t.elapsed().as_micros() as u64,
            status,
        });
        Answer {
            status,
            body,
            retry_after,
        }
    }

    /// Calls until answered with something other than 429, a 5xx or no answer, at most
    /// `tries` times (each failure is recorded; the verdict counts them).
    async fn call_retrying(
        &mut self,
        step: Step,
        tries: u32,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Answer {
        let mut wait = Duration::from_millis(200);
        let mut last = None;
        for _ in 0..tries * self.ctx.patience {
            let a = self.call(step, make(&self.http)).await;
            if a.status != 0 && a.status != 429 && a.status < 500 {
                return a;
            }
            let pause = a.retry_after.unwrap_or(wait);
            last = Some(a);
            tokio::time::sleep(pause.min(self.ctx.max_poll)).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        last.expect("at least one try")
    }

    /// Whether a request of this step went unanswered (a retry may then meet the
    /// effect of the first attempt).
    /// Whether an earlier try of `step` may have taken effect without the buyer hearing
    /// so: no answer at all, or the gateway's 502/503/504 — a proxy that lost its
    /// upstream mid-request cannot know whether the upstream committed (a hold killed
    /// with orders after its commit answers 502, and the retry finds the hold).
    fn lost_answer(&self, step: Step) -> bool {
        self.rec
            .samples
            .iter()
            .any(|s| s.step == step && matches!(s.status, 0 | 502..=504))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ctx.base)
    }

    fn fail(&mut self, what: &str, a: &Answer) -> Outcome {
        let code = a.body["error"].as_str().unwrap_or("");
        Outcome::Failed(format!("{what}: HTTP {} {code}", a.status))
    }

    async fn run(&mut self) -> Outcome {
        // ---- join
        let join_url = self.url(&format!("/queue/{}/join", self.ctx.slug));
        let (sent, a) = loop {
            let sent = self.ctx.ms();
            let a = self
                .call_retrying(Step::Join, 5, |c| c.post(&join_url))
                .await;
            if a.status != 200 {
                return self.fail("join", &a);
            }
            // Paused without a place (the queue is being restored): the waiting page
            // reloads itself and joins again.
            if a.body["state"] == "paused" && a.body["queue_token"].is_null() {
                if Instant::now() >= self.ctx.deadline {
                    return Outcome::Unfinished;
                }
                let ms = a.body["retry_after_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms).min(self.ctx.max_poll)).await;
                continue;
            }
            break (sent, a);
        };
        self.rec.joined_ms = Some(self.ctx.ms());
        self.rec.join_position = a.body["position"].as_u64();
        let mut queue_token = a.body["queue_token"].as_str().unwrap_or("").to_owned();
        self.rec.seq = token_seq(&queue_token);
        let state = a.body["state"].as_str().unwrap_or("").to_owned();
        if matches!(state.as_str(), "sold_out" | "closed") {
            return Outcome::SoldOutInQueue;
        }
        if !matches!(state.as_str(), "waiting" | "admitted" | "paused") {
            return Outcome::Failed(format!("join: unexpected state {state:?}"));
        }
        if state != "admitted" {
            // Told to wait: an observation for the fairness check, like a poll's.
            self.rec.last_waiting_sent_ms = Some(sent);
            self.rec.join_eta_ms = a.body["eta_seconds"].as_u64().map(|s| s * 1000);
        }
        let mut retry = Duration::from_millis(a.body["retry_after_ms"].as_u64().unwrap_or(1000));

        // ---- wait in line (unless the join itself let this buyer in)
        let admitted = match a.body["admission_token"].as_str() {
            Some(token) if state == "admitted" => {
                self.rec.admitted_ms = self.rec.joined_ms;
                self.rec.admission_seq = token_seq(token);
                Ok(token.to_owned())
            }
            _ => {
                inc(&self.ctx.counters.waiting);
                let r = self.wait_in_line(&mut queue_token, &mut retry).await;
                self.set_watching(false);
                dec(&self.ctx.counters.waiting);
                r
            }
        };
        let admission = match admitted {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        inc(&self.ctx.counters.admitted);

        // ---- buy
        let _in_flight = InFlight::enter(self.ctx);
        self.buy(&admission).await
    }

    /// Polls until admitted (`Ok(admission token)`) or out of the queue.
    async fn wait_in_line(
        &mut self,
        queue_token: &mut String,
        retry: &mut Duration,
    ) -> Result<String, Outcome> {
        let status_url = self.url(&format!("/queue/{}/status", self.ctx.slug));
        let join_url = self.url(&format!("/queue/{}/join", self.ctx.slug));
        let give_up_at = self
            .plan
            .abandon_queue_after_ms
            .map(|d| self.rec.joined_ms.unwrap_or(0) + d);
        let mut sold_out_since: Option<u64> = None;
        loop {
            let pause = (*retry).min(self.ctx.max_poll);
            if let Some(at) = give_up_at
                && self.ctx.ms() + pause.as_millis() as u64 >= at
            {
                tokio::time::sleep(Duration::from_millis(at.saturating_sub(self.ctx.ms()))).await;
                return Err(Outcome::AbandonedQueue);
            }
            tokio::time::sleep(pause).await;
            self.rec.last_poll_interval_ms = Some(pause.as_millis() as u64);

            if self.rec.refresh.is_none()
                && self
                    .plan
                    .refresh_after_polls
                    .is_some_and(|k| self.rec.polls >= k)
            {
                // The page is reloaded: join again, carrying the queue token.
                let token = queue_token.clone();
                let a = self
                    .call_retrying(Step::Rejoin, 5, |c| c.post(&join_url).bearer_auth(&token))
                    .await;
                if a.status != 200 {
                    return Err(self.fail("rejoin", &a));
                }
                let after = a.body["queue_token"]
                    .as_str()
                    .map(token_seq)
                    .unwrap_or(None);
                self.rec.refresh = Some(Refresh {
                    seq_before: self.rec.seq,
                    seq_after: after,
                });
                if let Some(t) = a.body["queue_token"].as_str() {
                    *queue_token = t.to_owned();
                }
                if after != self.rec.seq {
                    self.rec.seq = after;
                    self.rec.last_waiting_sent_ms = None;
                }
                *retry = Duration::from_millis(a.body["retry_after_ms"].as_u64().unwrap_or(1000));
                continue;
            }

            let sent = self.ctx.ms();
            let a = self.call(Step::Status, self.http.get(&status_url)).await;
            self.rec.polls += 1;
            match a.status {
                200 => {}
                0 | 429 | 500.. => {
                    *retry = a.retry_after.unwrap_or(Duration::from_secs(1));
                    continue;
                }
                _ => return Err(self.fail("status", &a)),
            }
            if let Some(t) = a.body["queue_token"].as_str() {
                // A new place (e.g. an admission that lapsed): track the new seq.
                let seq = token_seq(t);
                if seq != self.rec.seq {
                    self.rec.requeued = true;
                    self.rec.seq = seq;
                    self.rec.last_waiting_sent_ms = None;
                }
                *queue_token = t.to_owned();
            }
            *retry = Duration::from_millis(a.body["retry_after_ms"].as_u64().unwrap_or(1000));
            match a.body["state"].as_str().unwrap_or("") {
                "admitted" => {
                    let Some(token) = a.body["admission_token"].as_str() else {
                        return Err(Outcome::Failed("admitted without a token".into()));
                    };
                    self.rec.admitted_ms = Some(self.ctx.ms());
                    self.rec.admission_seq = token_seq(token);
                    return Ok(token.to_owned());
                }
                "waiting" | "paused" | "prequeue" => {
                    self.rec.last_waiting_sent_ms = Some(sent);
                    sold_out_since = None;
                    self.set_watching(false);
                }
                "sold_out" | "closed" => {
                    // The page keeps polling while seats may come back (holds in
                    // checkout can be released); it gives up once nobody has been
                    // buying for a few seconds.
                    let now = self.ctx.ms();
                    let since = *sold_out_since.get_or_insert(now);
                    self.set_watching(true);
                    let idle = Counters::get(&self.ctx.counters.in_flight) == 0
                        && now.saturating_sub(Counters::get(&self.ctx.counters.in_flight_seen_ms))
                            >= 2_000;
                    if idle && now - since >= 1_000 {
                        return Err(Outcome::SoldOutInQueue);
                    }
                    // (`retry` is the server's hint, capped by --max-poll-ms.)
                }
                other => {
                    return Err(Outcome::Failed(format!(
                        "status: unexpected state {other:?}"
                    )));
                }
            }
        }
    }

    /// Moves this buyer between "waiting" and "watching a sold-out queue" in the counts.
    fn set_watching(&mut self, on: bool) {
        if self.watching != on {
            self.watching = on;
            let c = &self.ctx.counters;
            if on {
                dec(&c.waiting);
                inc(&c.watching);
            } else {
                dec(&c.watching);
                inc(&c.waiting);
            }
        }
    }

    async fn think(&mut self) {
        if self.plan.think_ms > 0 {
            let ms = self.rng.gen_range(0..=self.plan.think_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    async fn buy(&mut self, admission: &str) -> Outcome {
        // ---- hold: the wanted tier and quantity, then one seat, then other tiers.
        self.think().await;
        let holds_url = self.url(&format!("/api/events/{}/holds", self.ctx.slug));
        let mut attempts: Vec<(usize, u32)> = vec![(self.plan.tier, self.plan.quantity)];
        if self.plan.quantity > 1 {
            attempts.push((self.plan.tier, 1));
        }
        for t in (0..self.ctx.tiers.len()).filter(|t| *t != self.plan.tier) {
            attempts.push((t, 1));
        }
        let mut hold = None;
        for (tier, quantity) in attempts {
            let code = self.ctx.tiers[tier].code.clone();
            let body = serde_json::json!({
                "tier": code,
                "quantity": quantity,
                "email": self.rec.email,
                "name": format!("Loadtest Buyer {}", self.plan.n),
            });
            let a = self
                .call_retrying(Step::Hold, 3, |c| {
                    c.post(&holds_url).bearer_auth(admission).json(&body)
                })
                .await;
            match (a.status, a.body["error"].as_str()) {
                (201, _) => {
                    let Some(id) = a.body["hold_id"].as_str() else {
                        return Outcome::Failed("hold: no hold_id".into());
                    };
                    hold = Some(id.to_owned());
                    self.rec.tier = Some(code);
                    self.rec.quantity = Some(quantity);
                    break;
                }
                (409, Some("sold_out")) => continue,
                (409, Some("hold_exists"))
                    if self.lost_answer(Step::Hold) && a.body["hold_id"].is_string() =>
                {
                    // The 201 was lost (the connection dropped after the commit) and
                    // the retry was told which hold is this admission's: carry on.
                    hold = a.body["hold_id"].as_str().map(str::to_owned);
                    self.rec.tier = Some(code);
                    self.rec.quantity = Some(quantity);
                    break;
                }
                (409, Some("hold_exists")) if self.lost_answer(Step::Hold) => {
                    // The 201 was lost and the retry cannot learn the hold's id: the
                    // buyer is stuck until the hold expires.
                    return Outcome::Failed(
                        "hold: answer lost, the retry got 409 hold_exists without the hold id"
                            .into(),
                    );
                }
                _ => return self.fail("hold", &a),
            }
        }
        let Some(hold_id) = hold else {
            return Outcome::SoldOutAtHold;
        };
        inc(&self.ctx.counters.held);
        self.rec.hold_id = Some(hold_id.clone());
        let hold_url = self.url(&format!("/api/holds/{hold_id}"));

        self.think().await;
        if self.plan.abandon_checkout {
            return self
                .release(&hold_url, admission, Outcome::AbandonedCheckout)
                .await;
        }

        // ---- checkout (idempotent: safe to repeat)
        let checkout_url = format!("{hold_url}/checkout");
        let a = self
            .call_retrying(Step::Checkout, 3, |c| {
                c.post(&checkout_url).bearer_auth(admission)
            })
            .await;
        if a.status != 201 {
            return self.fail("checkout", &a);
        }
        let (Some(order_id), Some(order_token), Some(intent)) = (
            a.body["order_id"].as_str().map(str::to_owned),
            a.body["order_token"].as_str().map(str::to_owned),
            a.body["payment"]["intent_id"].as_str().map(str::to_owned),
        ) else {
            return Outcome::Failed("checkout: incomplete answer".into());
        };
        self.rec.order_id = Some(order_id.clone());

        // ---- pay at the sandbox
        self.think().await;
        let confirm_url = format!("{}/v1/payment_intents/{intent}/confirm", self.ctx.sandbox);
        let mut method = if self.plan.declined_card {
            "pm_card_chargeDeclined"
        } else {
            "pm_card_visa"
        };
        let mut lost = 0;
        let mut unanswered = 0;
        loop {
            // One idempotency key per card: a confirm whose answer was lost (the
            // sandbox's timeout fault, a 504 after it took effect) is sent again with
            // the same key, and the sandbox replays what really happened.
            let req = self
                .http
                .post(&confirm_url)
                .bearer_auth(&self.ctx.sandbox_key)
                .header(
                    "Idempotency-Key",
                    format!("loadtest-{}-{}-{method}", self.ctx.run_id, self.plan.n),
                )
                .form(&[("payment_method", method)]);
            let a = self.call(Step::Pay, req).await;
            match a.status {
                200 => break,
                504 if a.body["error"]["type"] == "api_error" && lost < 5 => {
                    lost += 1;
                    self.rec.injected_timeouts += 1;
                }
                402 if method != "pm_card_visa" && self.plan.retries_after_decline => {
                    method = "pm_card_visa";
                }
                402 => return self.release(&hold_url, admission, Outcome::Declined).await,
                // The provider down or failing: the same key makes a retry safe.
                0 | 500.. if unanswered < 3 * self.ctx.patience => {
                    unanswered += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return self.fail("pay", &a),
            }
        }
        self.rec.charged = true;
        let charged_ms = self.ctx.ms();
        self.rec.charged_ms = Some(charged_ms);

        // ---- the order page, until it says paid
        let order_url = self.url(&format!("/api/orders/{order_id}"));
        let deadline = Instant::now() + self.ctx.pay_timeout;
        while Instant::now() < deadline {
            let req = self
                .http
                .get(&order_url)
                .query(&[("order_token", order_token.as_str())]);
            let a = self.call(Step::Order, req).await;
            if a.status == 200 {
                match a.body["status"].as_str().unwrap_or("") {
                    "paid" => {
                        let now = self.ctx.ms();
                        self.rec.paid_seen_ms = Some(now);
                        inc(&self.ctx.counters.paid);
                        return Outcome::Paid;
                    }
                    "refunded" | "partially_refunded" => return Outcome::Refunded,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Outcome::PayTimeout
    }

    async fn release(&mut self, hold_url: &str, admission: &str, then: Outcome) -> Outcome {
        let a = self
            .call_retrying(Step::Release, 3, |c| {
                c.delete(hold_url).bearer_auth(admission)
            })
            .await;
        let gone = a.status == 409 && a.body["error"] == "hold_not_active";
        if a.status != 204 && !(gone && self.lost_answer(Step::Release)) {
            return self.fail("release", &a);
        }
        then
    }
}

/// Counts a buyer as buying while alive.
struct InFlight<'a>(&'a Ctx);

impl<'a> InFlight<'a> {
    fn enter(ctx: &'a Ctx) -> Self {
        inc(&ctx.counters.in_flight);
        ctx.counters
            .in_flight_seen_ms
            .fetch_max(ctx.ms(), Ordering::Relaxed);
        Self(ctx)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        dec(&self.0.counters.in_flight);
        self.0
            .counters
            .in_flight_seen_ms
            .fetch_max(self.0.ms(), Ordering::Relaxed);
    }
}

/// One buyer, from arrival to the end of its visit.
pub async fn buyer(ctx: Arc<Ctx>, plan: Plan) -> Record {
    let email = format!("buyer-{}-{}@loadtest.invalid", plan.n, ctx.run_id);
    let mut rec = Record::arriving(plan.clone(), email);
    tokio::time::sleep_until((ctx.start + Duration::from_millis(plan.arrival_ms)).into()).await;
    inc(&ctx.counters.arrived);
    let http = match Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(2)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            rec.outcome = Outcome::Failed(format!("http client: {e}"));
            inc(&ctx.counters.finished);
            return rec;
        }
    };
    let mut b = Buyer {
        ctx: &ctx,
        plan: &plan,
        http,
        rec,
        rng: StdRng::seed_from_u64(plan.n as u64 ^ 0x5eed),
        watching: false,
    };
    let outcome = tokio::time::timeout_at(ctx.deadline.into(), b.run())
        .await
        .unwrap_or(Outcome::Unfinished);
    b.rec.outcome = outcome;
    inc(&ctx.counters.finished);
    b.rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seq_from_a_token_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"kind":"queue","seq":42,"sub":"x"}"#);
        assert_eq!(
            token_seq(&format!("eyJhbGciOiJFZERTQSJ9.{payload}.sig")),
            Some(42)
        );
        assert_eq!(token_seq("garbage"), None);
        assert_eq!(token_seq("a.!!!.c"), None);
    }

    #[test]
    fn plans_follow_the_shape_and_the_seed() {
        let shape = CrowdShape {
            arrivals_ms: (0..2000).collect(),
            quantity_mix: vec![(1, 70), (2, 25), (4, 5)],
            tier_weights: vec![100, 100],
            abandon_queue: 0.1,
            abandon_checkout: 0.0,
            decline_rate: 0.2,
            retry_declined: 1.0,
            refreshers: 0.05,
            think_ms: 0,
            seed: 7,
        };
        let a = plans(&shape);
        let b = plans(&shape);
        assert_eq!(a.len(), 2000);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.quantity == y.quantity && x.tier == y.tier)
        );
        let ones = a.iter().filter(|p| p.quantity == 1).count();
        assert!((1250..1550).contains(&ones), "{ones}");
        assert!(
            a.iter()
                .all(|p| !p.abandon_checkout && p.retries_after_decline)
        );
        let declined = a.iter().filter(|p| p.declined_card).count();
        assert!((300..500).contains(&declined), "{declined}");
        assert!(a.iter().any(|p| p.tier == 1) && a.iter().any(|p| p.tier == 0));
    }
}
