//! Who bought and who comes: an event's orders and its attendees (one row per ticket),
//! a page at a time for the event's page, whole as CSV for a spreadsheet, and the
//! money taken and refunded. Every address goes through [`Shown`]: a host sees them as
//! the event's owner allows, in the lists and in the files alike.
//!
//! An export is buyers' personal data leaving the console, so each one is written to
//! the operator audit trail (`export.orders`, `export.attendees`) with who took it,
//! before the first byte is sent. The file is streamed from one query (one snapshot,
//! constant memory, no re-sorting per chunk): 100,000 orders are one pass.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use contract::states::{OrderStatus, TicketStatus};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Operator, SignedIn};
use crate::moment::{self, Moment, Precision};
use crate::pages::money;
use crate::privacy::Shown;
use crate::{csv, labels};

/// Rows on one page of either list.
pub const PER_PAGE: i64 = 50;
/// Rows per chunk of an export: big enough that a chunk is not a syscall per row, small
/// enough that a slow download holds little in memory.
const CHUNK_ROWS: usize = 500;

/// What the event took, in one currency: "EUR 380.00 net: EUR 400.00 taken, EUR 20.00
/// refunded".
#[derive(Serialize)]
pub struct Revenue {
    pub currency: String,
    pub taken: String,
    pub refunded: String,
    pub net: String,
}

/// Money paid (by orders that were ever paid) and refunded, per currency.
pub async fn revenue(db: &PgPool, event_id: Uuid) -> Result<Vec<Revenue>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT currency,
                  coalesce(sum(amount_cents) FILTER (WHERE paid_at IS NOT NULL), 0)::bigint AS "taken!",
                  coalesce(sum(refunded_cents), 0)::bigint AS "refunded!"
           FROM orders WHERE event_id = $1 AND paid_at IS NOT NULL
           GROUP BY currency ORDER BY currency"#,
        event_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Revenue {
            taken: money(r.taken, &r.currency),
            refunded: money(r.refunded, &r.currency),
            net: money(r.taken - r.refunded, &r.currency),
            currency: r.currency,
        })
        .collect())
}

/// Page `page` (from 1) of `total` rows: where the page's links go.
#[derive(Serialize)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub first_row: i64,
    pub last_row: i64,
}

impl Pager {
    /// The page asked for, within the pages there are.
    pub fn new(asked: i64, total: i64, shown: usize) -> Pager {
        let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
        let page = asked.clamp(1, pages);
        let first_row = (page - 1) * PER_PAGE + 1;
        Pager {
            page,
            pages,
            total,
            first_row: if shown == 0 { 0 } else { first_row },
            last_row: first_row + shown as i64 - 1,
        }
    }

    fn offset(asked: i64, total: i64) -> i64 {
        let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
        (asked.clamp(1, pages) - 1) * PER_PAGE
    }
}

struct OrderRow {
    id: Uuid,
    status: OrderStatus,
    buyer_name: String,
    buyer_email: String,
    quantity: i32,
    tier: String,
    amount_cents: i64,
    refunded_cents: i64,
    currency: String,
    created_at: DateTime<Utc>,
}

/// A row of the event's orders list.
#[derive(Serialize)]
pub struct OrderLine {
    pub id: Uuid,
    pub status: &'static str,
    pub name: String,
    pub email: String,
    pub tickets: i32,
    pub tier: String,
    pub amount: String,
    pub refunded: Option<String>,
    pub ordered: Moment,
}

/// One page of the event's orders, most recent first.
pub async fn orders(
    db: &PgPool,
    event_id: Uuid,
    tz: chrono_tz::Tz,
    page: i64,
    shown: Shown,
) -> Result<(Vec<OrderLine>, Pager), sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM orders WHERE event_id = $1"#,
        event_id
    )
    .fetch_one(db)
    .await?;
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT o.id, o.status AS "status: OrderStatus", o.buyer_name, o.buyer_email, o.quantity,
                  t.name AS tier, o.amount_cents, o.refunded_cents, o.currency, o.created_at
           FROM orders o JOIN tiers t ON t.id = o.tier_id
           WHERE o.event_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2 OFFSET $3"#,
        event_id,
        PER_PAGE,
        Pager::offset(page, total),
    )
    .fetch_all(db)
    .await?;
    let lines: Vec<OrderLine> = rows
        .into_iter()
        .map(|o| OrderLine {
            id: o.id,
            status: labels::order_status(o.status),
            email: shown.email(&o.buyer_email),
            name: o.buyer_name,
            tickets: o.quantity,
            tier: o.tier,
            amount: money(o.amount_cents, &o.currency),
            refunded: (o.refunded_cents > 0).then(|| money(o.refunded_cents, &o.currency)),
            ordered: moment::at(o.created_at, tz, Precision::Minute),
        })
        .collect();
    let pager = Pager::new(page, total, lines.len());
    Ok((lines, pager))
}

struct TicketRow {
    order_id: Uuid,
    code: String,
    holder_name: String,
    holder_email: String,
    tier: String,
    status: TicketStatus,
}

/// A row of the attendee list: one ticket.
#[derive(Serialize)]
pub struct AttendeeLine {
    pub order_id: Uuid,
    pub code: String,
    pub name: String,
    pub email: String,
    pub tier: String,
    pub status: &'static str,
}

/// One page of the event's tickets, by holder name (the order a door list is read in).
pub async fn attendees(
    db: &PgPool,
    event_id: Uuid,
    page: i64,
    shown: Shown,
) -> Result<(Vec<AttendeeLine>, Pager), sqlx::Error> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tickets WHERE event_id = $1"#,
        event_id
    )
    .fetch_one(db)
    .await?;
    let rows = sqlx::query_as!(
        TicketRow,
        r#"SELECT t.order_id, t.code, t.holder_name, t.holder_email, tr.name AS tier,
                  t.status AS "status: TicketStatus"
           FROM tickets t JOIN tiers tr ON tr.id = t.tier_id
           WHERE t.event_id = $1 ORDER BY lower(t.holder_name), t.code LIMIT $2 OFFSET $3"#,
        event_id,
        PER_PAGE,
        Pager::offset(page, total),
    )
    .fetch_all(db)
    .await?;
    let lines: Vec<AttendeeLine> = rows.into_iter().map(|t| attendee(t, shown)).collect();
    let pager = Pager::new(page, total, lines.len());
    Ok((lines, pager))
}

fn attendee(t: TicketRow, shown: Shown) -> AttendeeLine {
    AttendeeLine {
        order_id: t.order_id,
        email: shown.email(&t.holder_email),
        code: t.code,
        name: t.holder_name,
        tier: t.tier,
        status: labels::ticket_status(t.status),
    }
}

/// "20.00": an amount as a spreadsheet reads it (the currency has its own column).
fn decimal(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What is exported.
#[derive(Clone, Copy)]
enum Export {
    Orders,
    Attendees,
}

impl Export {
    fn action(self) -> &'static str {
        match self {
            Export::Orders => "export.orders",
            Export::Attendees => "export.attendees",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Export::Orders => "orders",
            Export::Attendees => "attendees",
        }
    }

    fn header(self) -> &'static [&'static str] {
        match self {
            Export::Orders => &[
                "order_id",
                "ordered_at_utc",
                "status",
                "buyer_name",
                "buyer_email",
                "tickets",
                "tier",
                "amount",
                "refunded",
                "currency",
            ],
            Export::Attendees => &[
                "ticket_code",
                "holder_name",
                "holder_email",
                "tier",
                "status",
                "order_id",
            ],
        }
    }
}

/// `GET /console/events/{slug}/orders.csv`.
pub async fn orders_csv(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(slug): Path<String>,
) -> Response {
    export(s, operator, slug, Export::Orders).await
}

/// `GET /console/events/{slug}/attendees.csv`.
pub async fn attendees_csv(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Path(slug): Path<String>,
) -> Response {
    export(s, operator, slug, Export::Attendees).await
}

async fn export(s: AppState, op: Operator, slug: String, what: Export) -> Response {
    let started = async {
        let (_, e) = crate::auth::visible_event(&s.db, &op, &slug).await?;
        let shown = Shown::for_event(&s.db, &op, e.id).await?;
        let mut conn = s.db.acquire().await?;
        audit::record(
            &mut conn,
            &op,
            Entry {
                action: what.action(),
                event_id: Some(e.id),
                subject: &e.slug,
                before: None,
                after: Some(serde_json::json!({
                    "addresses": if shown == Shown::Masked { "masked" } else { "full" }
                })),
                reason: None,
            },
        )
        .await?;
        Ok::<_, ConsoleError>((e, shown))
    }
    .await;
    let (e, shown) = match started {
        Ok(found) => found,
        Err(err) => return crate::html::error_page(Some(&op), &err),
    };
    // Who took it is in the audit row; the log line names no one.
    tracing::info!(event = %e.slug, export = what.file(), "personal data exported");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let (db, event_id, slug) = (s.db.clone(), e.id, e.slug.clone());
    tokio::spawn(async move {
        if let Err(err) = stream_rows(&db, event_id, what, shown, &tx).await {
            tracing::error!(error = %err, event = %slug, "an export stopped part way");
            // The download ends in an error instead of looking complete.
            let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}-{}.csv\"", e.slug, what.file()),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Writes the header and every row to `tx`, a chunk at a time. A receiver gone (the
/// download was cancelled) ends it quietly.
async fn stream_rows(
    db: &PgPool,
    event_id: Uuid,
    what: Export,
    shown: Shown,
    tx: &tokio::sync::mpsc::Sender<Result<String, std::io::Error>>,
) -> Result<(), sqlx::Error> {
    let mut chunk = String::new();
    csv::line(&mut chunk, what.header());
    let mut rows = 0;
    macro_rules! flush_every_chunk {
        () => {
            rows += 1;
            if rows % CHUNK_ROWS == 0 && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                return Ok(());
            }
        };
    }
    match what {
        Export::Orders => {
            let mut stream = sqlx::query_as!(
                OrderRow,
                r#"SELECT o.id, o.status AS "status: OrderStatus", o.buyer_name, o.buyer_email, o.quantity,
                          t.name AS tier, o.amount_cents, o.refunded_cents, o.currency, o.created_at
                   FROM orders o JOIN tiers t ON t.id = o.tier_id
                   WHERE o.event_id = $1 ORDER BY o.created_at DESC, o.id DESC"#,
                event_id,
            )
            .fetch(db);
            while let Some(o) = stream.next().await {
                let o = o?;
                csv::line(
                    &mut chunk,
                    &[
                        o.id.to_string(),
                        o.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        labels::order_status(o.status).to_owned(),
                        o.buyer_name,
                        shown.email(&o.buyer_email),
                        o.quantity.to_string(),
                        o.tier,
                        decimal(o.amount_cents),
                        decimal(o.refunded_cents),
                        o.currency,
                    ],
                );
                flush_every_chunk!();
            }
        }
        Export::Attendees => {
            let mut stream = sqlx::query_as!(
                TicketRow,
                r#"SELECT t.order_id, t.code, t.holder_name, t.holder_email, tr.name AS tier,
                          t.status AS "status: TicketStatus"
                   FROM tickets t JOIN tiers tr ON tr.id = t.tier_id
                   WHERE t.event_id = $1 ORDER BY lower(t.holder_name), t.code"#,
                event_id,
            )
            .fetch(db);
            while let Some(t) = stream.next().await {
                let a = attendee(t?, shown);
                csv::line(
                    &mut chunk,
                    &[
                        a.code,
                        a.name,
                        a.email,
                        a.tier,
                        a.status.to_owned(),
                        a.order_id.to_string(),
                    ],
                );
                flush_every_chunk!();
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{PER_PAGE, Pager, decimal};

    #[test]
    fn a_page_past_the_end_is_the_last_one() {
        let p = Pager::new(9, 120, 20);
        assert_eq!((p.page, p.pages, p.first_row, p.last_row), (3, 3, 101, 120));
        assert_eq!(Pager::offset(9, 120), 2 * PER_PAGE);
        let empty = Pager::new(1, 0, 0);
        assert_eq!((empty.page, empty.pages, empty.first_row), (1, 1, 0));
        assert_eq!(Pager::offset(-3, 0), 0);
    }

    #[test]
    fn amounts_are_decimals() {
        assert_eq!(decimal(123_000), "1230.00");
        assert_eq!(decimal(5), "0.05");
    }
}
