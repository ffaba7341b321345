//! The verdict: every invariant of an on-sale, checked against what Postgres holds,
//! what the SMTP sink received and what the buyers saw. Each check is named, passes or
//! fails, and carries its numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::crowd::Record;
use super::stats::{Folded, Step};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    /// One line for people.
    pub summary: String,
    pub numbers: serde_json::Value,
}

fn check(name: &'static str, pass: bool, summary: String, numbers: serde_json::Value) -> Check {
    Check {
        name,
        pass,
        summary,
        numbers,
    }
}

/// A tier as the database has it at the end.
#[derive(Debug, Clone, Serialize)]
pub struct TierRow {
    pub code: String,
    pub capacity: i64,
    pub sold: i64,
    pub held: i64,
    pub live_tickets: i64,
    pub tickets: i64,
}

/// An order of the simulated event as the database has it.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: Uuid,
    pub status: String,
    pub quantity: i64,
    pub email: String,
    pub paid_at: Option<DateTime<Utc>>,
    pub live_tickets: i64,
    pub refunded: bool,
    pub charged: bool,
}

/// What the database says about the event.
pub struct Db {
    pub tiers: Vec<TierRow>,
    pub orders: Vec<OrderRow>,
    pub ticket_count: i64,
    pub distinct_codes: i64,
    /// Succeeded payment events that name no order of ours but carry our order ids in
    /// their metadata (a charge the service could not attach).
    pub orphan_charges: i64,
}

pub async fn read_db(db: &PgPool, slug: &str) -> anyhow::Result<Db> {
    let event_id: Uuid = sqlx::query_scalar("SELECT id FROM events WHERE slug = $1")
        .bind(slug)
        .fetch_one(db)
        .await?;
    let tiers = sqlx::query(
        r#"SELECT t.code, t.capacity::bigint AS capacity, t.sold::bigint AS sold, t.held::bigint AS held,
                  (SELECT count(*) FROM tickets k WHERE k.tier_id = t.id
                     AND k.status IN ('valid', 'transferred')) AS live,
                  (SELECT count(*) FROM tickets k WHERE k.tier_id = t.id) AS all_tickets
           FROM tiers t WHERE t.event_id = $1 ORDER BY t.position"#,
    )
    .bind(event_id)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| TierRow {
        code: r.get("code"),
        capacity: r.get("capacity"),
        sold: r.get("sold"),
        held: r.get("held"),
        live_tickets: r.get("live"),
        tickets: r.get("all_tickets"),
    })
    .collect();
    let orders = sqlx::query(
        r#"SELECT o.id, o.status, o.quantity::bigint AS quantity, o.buyer_email, o.paid_at,
                  (SELECT count(*) FROM tickets t WHERE t.order_id = o.id
                     AND t.status IN ('valid', 'transferred')) AS live,
                  EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = o.id) AS refunded,
                  EXISTS (SELECT 1 FROM payment_events p WHERE p.order_id = o.id
                            AND p.type = 'payment_intent.succeeded') AS charged
           FROM orders o WHERE o.event_id = $1"#,
    )
    .bind(event_id)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| OrderRow {
        id: r.get("id"),
        status: r.get("status"),
        quantity: r.get("quantity"),
        email: r.get("buyer_email"),
        paid_at: r.get("paid_at"),
        live_tickets: r.get("live"),
        refunded: r.get("refunded"),
        charged: r.get("charged"),
    })
    .collect();
    let codes = sqlx::query(
        "SELECT count(*) AS n, count(DISTINCT code) AS d FROM tickets WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(db)
    .await?;
    let orphan_charges: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM payment_events p
           WHERE p.type = 'payment_intent.succeeded' AND p.order_id IS NULL
             AND (p.payload #>> '{metadata,order_id}') IN
                 (SELECT id::text FROM orders WHERE event_id = $1)"#,
    )
    .bind(event_id)
    .fetch_one(db)
    .await?;
    Ok(Db {
        tiers,
        orders,
        ticket_count: codes.get("n"),
        distinct_codes: codes.get("d"),
        orphan_charges,
    })
}

/// Whether there was a crowd at all. Every other check holds over zero buyers (no
/// seat oversold, nobody waited out of turn), so a run in which no buyer took part —
/// an empty arrivals file, a gateway nobody reached — would pass having checked
/// nothing; it fails here instead.
pub fn crowd(buyers: &[Record]) -> Check {
    let joined = buyers.iter().filter(|b| b.joined_ms.is_some()).count();
    check(
        "buyers took part",
        joined > 0,
        format!(
            "{} buyers simulated, {joined} joined the queue",
            buyers.len()
        ),
        json!({"buyers": buyers.len(), "joined": joined}),
    )
}

pub fn capacity(db: &Db) -> Check {
    let over: Vec<&TierRow> = db
        .tiers
        .iter()
        .filter(|t| t.sold > t.capacity || t.sold + t.held > t.capacity)
        .collect();
    let sold: i64 = db.tiers.iter().map(|t| t.sold).sum();
    let held: i64 = db.tiers.iter().map(|t| t.held).sum();
    let capacity: i64 = db.tiers.iter().map(|t| t.capacity).sum();
    check(
        "sold within capacity",
        over.is_empty() && !db.tiers.is_empty(),
        format!(
            "sold {sold} + held {held} of {capacity} seats over {} tiers; {} tiers over capacity",
            db.tiers.len(),
            over.len()
        ),
        json!({"tiers": db.tiers, "sold": sold, "held": held, "capacity": capacity,
               "tiers_over_capacity": over.len()}),
    )
}

pub fn no_double_sale(db: &Db) -> Check {
    let mismatched: Vec<&TierRow> = db
        .tiers
        .iter()
        .filter(|t| t.live_tickets != t.sold)
        .collect();
    let dup_codes = db.ticket_count - db.distinct_codes;
    check(
        "no seat sold twice",
        mismatched.is_empty() && dup_codes == 0,
        format!(
            "{} tickets, {} distinct codes; {} tiers whose live tickets differ from sold",
            db.ticket_count,
            db.distinct_codes,
            mismatched.len()
        ),
        json!({"tickets": db.ticket_count, "distinct_codes": db.distinct_codes,
               "duplicate_codes": dup_codes,
               "mismatched_tiers": mismatched.iter().map(|t| json!({"tier": t.code, "sold": t.sold, "live_tickets": t.live_tickets})).collect::<Vec<_>>()}),
    )
}

/// Every charge has tickets or a refund: the database's succeeded payment events, and
/// every confirm a buyer saw go through.
pub fn charges_accounted(db: &Db, buyers: &[Record]) -> Check {
    let fine = |o: &OrderRow| (o.status == "paid" && o.live_tickets == o.quantity) || o.refunded;
    let by_id: HashMap<String, &OrderRow> =
        db.orders.iter().map(|o| (o.id.to_string(), o)).collect();
    let charged_db: Vec<&OrderRow> = db.orders.iter().filter(|o| o.charged).collect();
    let bad_db: Vec<String> = charged_db
        .iter()
        .filter(|o| !fine(o))
        .map(|o| {
            format!(
                "{} ({}, {} of {} tickets)",
                o.id, o.status, o.live_tickets, o.quantity
            )
        })
        .collect();
    let charged_buyers: Vec<&Record> = buyers.iter().filter(|b| b.charged).collect();
    let bad_buyers: Vec<String> = charged_buyers
        .iter()
        .filter_map(|b| {
            let id = b.order_id.as_deref()?;
            match by_id.get(id) {
                Some(o) if fine(o) => None,
                Some(o) => Some(format!("buyer {}: order {id} is {}", b.n, o.status)),
                None => Some(format!("buyer {}: order {id} not in the database", b.n)),
            }
        })
        .collect();
    let refunded = charged_db.iter().filter(|o| o.refunded).count();
    check(
        "every charge has tickets or a refund",
        bad_db.is_empty() && bad_buyers.is_empty() && db.orphan_charges == 0,
        format!(
            "{} charged orders in the database ({refunded} refunded), {} charges seen by buyers; {} + {} unaccounted, {} unattached",
            charged_db.len(),
            charged_buyers.len(),
            bad_db.len(),
            bad_buyers.len(),
            db.orphan_charges
        ),
        json!({"charged_orders": charged_db.len(), "refunded": refunded,
               "charged_by_buyers": charged_buyers.len(),
               "unaccounted_orders": bad_db.iter().take(20).collect::<Vec<_>>(),
               "unaccounted_buyers": bad_buyers.iter().take(20).collect::<Vec<_>>(),
               "unattached_charges": db.orphan_charges}),
    )
}

/// One message of the SMTP sink's listing.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub to: Vec<String>,
    pub received_at: DateTime<Utc>,
    pub subject: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
}

pub const CONFIRMATION_SUBJECT: &str = "Your access to";

/// Confirmations per recipient (lower-cased), with their arrival times: one entry
/// per distinct message. SMTP is at-least-once where a sender crashes between the
/// server's acceptance and recording it, so a message may arrive again after a crash;
/// fulfilment gives every delivery a stable Message-ID, and a copy with the same
/// Message-ID is the same message (mail clients show it once). The second value
/// counts such copies. Messages without a Message-ID are all distinct.
fn confirmations(
    mails: &[Mail],
    wanted: &HashSet<String>,
) -> (HashMap<String, Vec<DateTime<Utc>>>, usize) {
    let mut by: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut copies = 0;
    for m in mails {
        if !m
            .subject
            .as_deref()
            .is_some_and(|s| s.starts_with(CONFIRMATION_SUBJECT))
        {
            continue;
        }
        for to in &m.to {
            let to = to.to_ascii_lowercase();
            if !wanted.contains(&to) {
                continue;
            }
            if let Some(id) = &m.message_id
                && !seen.insert((to.clone(), id.clone()))
            {
                copies += 1;
                continue;
            }
            by.entry(to).or_default().push(m.received_at);
        }
    }
    (by, copies)
}

/// Waits (bounded) until every paid buyer has a confirmation at the sink; returns the
/// check and, per paid order, `paid_at` and the payment → email duration (ms).
pub async fn emails(
    http: &reqwest::Client,
    sink: &str,
    db: &Db,
    timeout: Duration,
) -> (Check, Vec<(DateTime<Utc>, u64)>) {
    let paid: Vec<&OrderRow> = db.orders.iter().filter(|o| o.status == "paid").collect();
    let wanted: HashSet<String> = paid.iter().map(|o| o.email.to_ascii_lowercase()).collect();
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_error: Option<String>;
    let mut by = HashMap::new();
    let mut copies = 0;
    loop {
        match fetch_mails(http, sink).await {
            Ok(mails) => {
                (by, copies) = confirmations(&mails, &wanted);
                last_error = None;
                if wanted.iter().all(|e| by.contains_key(e)) {
                    // Give a duplicate a moment to show itself.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(mails) = fetch_mails(http, sink).await {
                        (by, copies) = confirmations(&mails, &wanted);
                    }
                    break;
                }
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let missing: Vec<&String> = wanted.iter().filter(|e| !by.contains_key(*e)).collect();
    let duplicated: Vec<(&String, usize)> = by
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(e, v)| (e, v.len()))
        .collect();
    let mut delays = Vec::new();
    for o in &paid {
        if let (Some(paid_at), Some(first)) = (
            o.paid_at,
            by.get(&o.email.to_ascii_lowercase())
                .and_then(|v| v.iter().min()),
        ) {
            delays.push((paid_at, (*first - paid_at).num_milliseconds().max(0) as u64));
        }
    }
    let c = check(
        "every paid buyer got exactly one confirmation",
        missing.is_empty() && duplicated.is_empty() && last_error.is_none(),
        format!(
            "{} paid orders; {} confirmed once, {} missing, {} more than once (waited {:.1} s{}{})",
            paid.len(),
            by.values().filter(|v| v.len() == 1).count(),
            missing.len(),
            duplicated.len(),
            started.elapsed().as_secs_f64(),
            if copies > 0 {
                format!("; {copies} resent with the same Message-ID after a crash")
            } else {
                String::new()
            },
            last_error
                .as_deref()
                .map(|e| format!("; sink unreadable: {e}"))
                .unwrap_or_default()
        ),
        json!({"paid_orders": paid.len(), "missing": missing.iter().take(20).collect::<Vec<_>>(),
               "same_message_resent": copies,
               "missing_count": missing.len(),
               "duplicated": duplicated.iter().take(20).map(|(e, n)| json!({"email": e, "count": n})).collect::<Vec<_>>(),
               "waited_s": started.elapsed().as_secs_f64()}),
    );
    (c, delays)
}

async fn fetch_mails(http: &reqwest::Client, sink: &str) -> anyhow::Result<Vec<Mail>> {
    let r = http
        .get(format!("{sink}/messages"))
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "sink answered {}", r.status());
    Ok(r.json().await?)
}

/// A Fenwick tree over ranks, counting inserted values.
struct Fenwick(Vec<u64>);

impl Fenwick {
    fn add(&mut self, mut i: usize) {
        i += 1;
        while i < self.0.len() {
            self.0[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    /// How many inserted ranks are < `i`.
    fn below(&self, mut i: usize) -> u64 {
        let mut s = 0;
        while i > 0 {
            s += self.0[i];
            i -= i & i.wrapping_neg();
        }
        s
    }
}

/// Nobody admitted ahead of an earlier arrival. The gateway admits by `seq <= head`;
/// from outside that shows as: once a buyer with a larger `seq` has been told
/// "admitted", no buyer with a smaller `seq` is told "waiting" by a poll sent more than
/// `tolerance_ms` later (the edge's snapshot refresh). Each such pair is an inversion.
/// Also: the admission token carries the buyer's own place.
///
/// A "wait" answered while a fault was on (`fault`: from injection to recovery, ms) is
/// left out: a visitor whom the queue had admitted but who had not yet come for it when
/// Redis lost its state cannot be told so until the queue is restored — then they are
/// first in line again (`waitroom::recovery`) — while those who came earlier already
/// hold their tokens. That delay is the fault's cost; a wait told after recovery, when a
/// later place already got in, is still an inversion.
pub fn fairness(buyers: &[Record], tolerance_ms: u64, fault: Option<(u64, u64)>) -> Check {
    // (seq, admitted_ms) of everyone admitted; (seq, last waiting poll sent) of everyone.
    let admitted: Vec<(u64, u64)> = buyers
        .iter()
        .filter_map(|b| Some((b.admission_seq?, b.admitted_ms?)))
        .collect();
    let during_fault = |t: u64| fault.is_some_and(|(from, to)| (from..=to).contains(&t));
    let waited: Vec<(u64, u64)> = buyers
        .iter()
        .filter_map(|b| Some((b.seq?, b.last_waiting_sent_ms?)))
        .filter(|(_, t)| !during_fault(*t))
        .collect();
    let excused = buyers
        .iter()
        .filter(|b| b.seq.is_some() && b.last_waiting_sent_ms.is_some_and(during_fault))
        .count();
    // Sweep from the largest seq down: for each waiting poll of seq s sent at t, count
    // admissions of seq > s seen before t - tolerance.
    let mut times: Vec<u64> = admitted.iter().map(|a| a.1).collect();
    times.sort_unstable();
    times.dedup();
    let rank = |t: u64| times.partition_point(|x| *x < t);
    let mut adm = admitted.clone();
    adm.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
    let mut wai = waited.clone();
    wai.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
    let mut tree = Fenwick(vec![0; times.len() + 1]);
    let mut i = 0;
    let mut inversions = 0u64;
    let mut worst: Option<(u64, u64)> = None;
    for (seq, sent) in &wai {
        while i < adm.len() && adm[i].0 > *seq {
            tree.add(rank(adm[i].1));
            i += 1;
        }
        let n = tree.below(rank(sent.saturating_sub(tolerance_ms)));
        if n > 0 {
            inversions += n;
            worst.get_or_insert((*seq, *sent));
        }
    }
    let wrong_seq: Vec<usize> = buyers
        .iter()
        .filter(|b| b.admission_seq.is_some() && !b.requeued && b.admission_seq != b.seq)
        .map(|b| b.n)
        .collect();
    // Admission order by time, for the record: how far the seqs stray from sorted.
    let mut by_time = admitted.clone();
    by_time.sort_unstable_by_key(|a| (a.1, a.0));
    let out_of_order = by_time.windows(2).filter(|w| w[1].0 < w[0].0).count();
    check(
        "nobody admitted ahead of an earlier arrival",
        inversions == 0 && wrong_seq.is_empty(),
        format!(
            "{} admitted, {} told to wait compared{}; {inversions} inversions beyond {tolerance_ms} ms, {} admission tokens with another place",
            admitted.len(),
            waited.len(),
            if excused > 0 {
                format!(" ({excused} last told to wait while the fault was on, not compared)")
            } else {
                String::new()
            },
            wrong_seq.len()
        ),
        json!({"admitted": admitted.len(), "inversions": inversions, "tolerance_ms": tolerance_ms,
               "waits_during_fault_not_compared": excused,
               "first_inversion": worst.map(|(s, t)| json!({"waiting_seq": s, "poll_sent_ms": t})),
               "admission_seq_mismatch": wrong_seq.iter().take(20).collect::<Vec<_>>(),
               "adjacent_out_of_order_by_seen_time": out_of_order}),
    )
}

pub fn refreshers_keep_place(buyers: &[Record]) -> Check {
    let refreshed: Vec<&Record> = buyers.iter().filter(|b| b.refresh.is_some()).collect();
    let moved: Vec<String> = refreshed
        .iter()
        .filter_map(|b| {
            let r = b.refresh?;
            (r.seq_before.is_none() || r.seq_before != r.seq_after)
                .then(|| format!("buyer {}: seq {:?} -> {:?}", b.n, r.seq_before, r.seq_after))
        })
        .collect();
    check(
        "refreshers keep their place",
        moved.is_empty(),
        format!("{} reloads; {} moved", refreshed.len(), moved.len()),
        json!({"reloads": refreshed.len(), "moved": moved.iter().take(20).collect::<Vec<_>>()}),
    )
}

/// No 5xx anywhere (answers the sandbox's timeout fault produced on purpose aside), and
/// no request left without an answer.
pub fn no_server_errors(folded: &Folded, injected_timeouts: u64, operator_5xx: u64) -> Vec<Check> {
    let mut errors: BTreeMap<&'static str, u64> = folded
        .server_errors()
        .into_iter()
        .map(|(s, n)| (s.name(), n))
        .collect();
    if let Some(pay) = errors.get_mut(Step::Pay.name()) {
        *pay = pay.saturating_sub(injected_timeouts);
    }
    errors.retain(|_, n| *n > 0);
    if operator_5xx > 0 {
        errors.insert("operator_api", operator_5xx);
    }
    let total: u64 = errors.values().sum();
    let listed: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let requests: u64 = folded.statuses.values().flat_map(|c| c.values()).sum();
    let transport: BTreeMap<&'static str, u64> = folded
        .transport_errors()
        .into_iter()
        .map(|(s, n)| (s.name(), n))
        .collect();
    let unanswered: u64 = transport.values().sum();
    vec![
        check(
            "no 5xx",
            total == 0,
            format!(
                "{total} of {requests} answers were 5xx{}{}",
                if listed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", listed.join(", "))
                },
                if injected_timeouts > 0 {
                    format!("; {injected_timeouts} injected sandbox timeouts excluded")
                } else {
                    String::new()
                }
            ),
            json!({"per_endpoint": errors, "requests": requests, "injected_timeouts_excluded": injected_timeouts}),
        ),
        check(
            "every request answered",
            unanswered == 0,
            format!(
                "{unanswered} of {requests} requests got no answer (refused, reset or timed out)"
            ),
            json!({"per_endpoint": transport}),
        ),
    ]
}

/// Every buyer's visit ended, and every charge was seen settled in time.
pub fn liveness(buyers: &[Record], pay_timeout_s: u64) -> Check {
    let unfinished = buyers
        .iter()
        .filter(|b| b.outcome.key() == "unfinished")
        .count();
    let slow = buyers
        .iter()
        .filter(|b| b.outcome.key() == "pay_timeout")
        .count();
    let failed: Vec<String> = buyers
        .iter()
        .filter_map(|b| match &b.outcome {
            super::crowd::Outcome::Failed(why) => Some(format!("buyer {}: {why}", b.n)),
            _ => None,
        })
        .collect();
    check(
        "every buyer finished cleanly",
        unfinished == 0 && slow == 0 && failed.is_empty(),
        format!(
            "{unfinished} unfinished, {slow} charged but not shown paid within {pay_timeout_s} s, {} failed",
            failed.len()
        ),
        json!({"unfinished": unfinished, "pay_timeouts": slow, "failed": failed.len(),
               "failures": failed.iter().take(20).collect::<Vec<_>>()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onsale::crowd::Outcome;

    fn rec(n: usize, seq: u64, admitted_ms: Option<u64>, last_wait: Option<u64>) -> Record {
        let plan = crate::onsale::crowd::Plan {
            n,
            arrival_ms: 0,
            quantity: 1,
            tier: 0,
            abandon_queue_after_ms: None,
            abandon_checkout: false,
            declined_card: false,
            retries_after_decline: false,
            refresh_after_polls: None,
            think_ms: 0,
        };
        Record {
            joined_ms: Some(0),
            join_position: Some(seq),
            seq: Some(seq),
            admitted_ms,
            admission_seq: admitted_ms.map(|_| seq),
            last_waiting_sent_ms: last_wait,
            polls: 1,
            outcome: Outcome::Paid,
            ..Record::arriving(plan, format!("b{n}@loadtest.invalid"))
        }
    }

    #[test]
    fn a_run_without_buyers_fails() {
        assert!(!crowd(&[]).pass, "no buyers");
        let mut never_joined = rec(1, 1, None, None);
        never_joined.joined_ms = None;
        assert!(
            !crowd(&[never_joined.clone()]).pass,
            "nobody reached the queue"
        );
        assert!(crowd(&[never_joined, rec(2, 1, None, None)]).pass);
    }

    #[test]
    fn in_order_admissions_have_no_inversions() {
        // seq k admitted at 100k ms, told waiting until 100k - 50.
        let buyers: Vec<Record> = (1..=50)
            .map(|k| rec(k as usize, k, Some(100 * k), Some(100 * k - 50)))
            .collect();
        let c = fairness(&buyers, 200, None);
        assert!(c.pass, "{}", c.summary);
        assert_eq!(c.numbers["inversions"], 0);
    }

    #[test]
    fn a_later_arrival_let_in_first_is_an_inversion() {
        let mut buyers: Vec<Record> = (1..=10)
            .map(|k| rec(k as usize, k, Some(100 * k), Some(100 * k - 50)))
            .collect();
        // seq 3 is still told "waiting" at 2000 ms, long after seqs 4..=10 got in
        // (400..1000 ms): seven inversions.
        buyers[2] = rec(3, 3, Some(2100), Some(2000));
        let c = fairness(&buyers, 200, None);
        assert!(!c.pass);
        assert_eq!(c.numbers["inversions"], 7);
        // Within the tolerance it is not counted.
        buyers[2] = rec(3, 3, Some(500), Some(450));
        let c = fairness(&buyers, 200, None);
        assert!(c.pass, "{}", c.summary);
    }

    #[test]
    fn a_wait_told_during_a_fault_is_its_cost_but_not_after_recovery() {
        let mut buyers: Vec<Record> = (1..=10)
            .map(|k| rec(k as usize, k, Some(100 * k), Some(100 * k - 50)))
            .collect();
        // seq 3 admitted but unclaimed when Redis went at 1,500 ms: told to wait at
        // 1,600 ms, let in at 2,100 ms after the restore at 2,000 ms.
        buyers[2] = rec(3, 3, Some(2100), Some(1600));
        let c = fairness(&buyers, 200, Some((1500, 2000)));
        assert!(c.pass, "{}", c.summary);
        assert_eq!(c.numbers["waits_during_fault_not_compared"], 1);
        // Still told to wait after the recovery: seven later places got in first.
        buyers[2] = rec(3, 3, Some(2600), Some(2500));
        let c = fairness(&buyers, 200, Some((1500, 2000)));
        assert!(!c.pass);
        assert_eq!(c.numbers["inversions"], 7);
    }

    #[test]
    fn an_admission_token_for_another_place_fails() {
        let mut buyers = vec![rec(1, 1, Some(10), None)];
        buyers[0].admission_seq = Some(9);
        assert!(!fairness(&buyers, 200, None).pass);
    }

    #[test]
    fn confirmations_are_counted_per_recipient_and_message() {
        let at = Utc::now();
        let mail = |to: &str, subject: &str, id: Option<&str>| Mail {
            to: vec![to.into()],
            received_at: at,
            subject: Some(subject.into()),
            message_id: id.map(str::to_owned),
        };
        let mails = vec![
            mail("A@loadtest.invalid", "Your access to Show", Some("<1@fg>")),
            mail("a@loadtest.invalid", "Refund for Show", Some("<2@fg>")),
            // Two different messages: a duplicate.
            mail("b@loadtest.invalid", "Your access to Show", Some("<3@fg>")),
            mail("b@loadtest.invalid", "Your access to Show", Some("<4@fg>")),
            // The same message sent again after a crash: one message.
            mail("c@loadtest.invalid", "Your access to Show", Some("<5@fg>")),
            mail("c@loadtest.invalid", "Your access to Show", Some("<5@fg>")),
            // Without Message-IDs nothing can be told apart: two.
            mail("d@loadtest.invalid", "Your access to Show", None),
            mail("d@loadtest.invalid", "Your access to Show", None),
            mail("e@elsewhere.invalid", "Your access to Show", Some("<6@fg>")),
        ];
        let wanted: HashSet<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| format!("{s}@loadtest.invalid"))
            .collect();
        let (by, copies) = confirmations(&mails, &wanted);
        assert_eq!(by["a@loadtest.invalid"].len(), 1);
        assert_eq!(by["b@loadtest.invalid"].len(), 2);
        assert_eq!(by["c@loadtest.invalid"].len(), 1);
        assert_eq!(by["d@loadtest.invalid"].len(), 2);
        assert_eq!(by.len(), 4);
        assert_eq!(copies, 1);
    }
}
