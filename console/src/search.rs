//! One search box for everything a support person is handed: an email or a fragment of
//! one, a name (or a surname alone), an order id, a ticket code, a payment intent id,
//! the address an order had before it was corrected, the name or address of someone a
//! ticket was given to. Exact identifiers are matched exactly; text by substring
//! (trigram indexes) and, failing that, by similarity, so "lovelace" and "lovelase" both
//! find Ada. Each hit says why it matched: the support person sees at once that
//! "lindquist" is the holder of a ticket and not the buyer.
//!
//! A host who sees an event's addresses masked (`privacy`) still finds its order by the
//! whole address (that is how they help a buyer who writes in), shown masked; a part of
//! an address, or one like it, finds nothing there: else typing one more letter at a
//! time would spell the address out from which searches found the order.

/// Trigram thresholds tried in turn, strictest first: (similarity of the whole text,
/// similarity of the best-matching words of it). A typo in a name (one swapped or wrong
/// letter) still scores ≳ 0.5, and at 0.5 the trigram index hands back a few candidates
/// instead of hundreds (at 100,000 orders: 1.4 ms vs 18 ms for a misspelt name); only a
/// search that found nothing at all pays for the looser pass, which catches short names
/// where one letter weighs more. The word measure is what lets a surname typed alone
/// ("lindqvist") find a longer name ("Anna-Karin Maria Lindquist"): against the whole
/// name it scores 0.24, against its best words 0.54.
const THRESHOLDS: [(&str, &str); 2] = [("0.5", "0.5"), ("0.3", "0.4")];

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use contract::states::OrderStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::auth::{Operator, Role};

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    pub q: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Hit {
    pub order_id: Uuid,
    pub buyer_email: String,
    pub buyer_name: String,
    pub status: OrderStatus,
    pub amount_cents: i64,
    pub currency: String,
    pub event_slug: String,
    pub event_title: String,
    /// The event's timezone: the page shows the order's time in it.
    pub event_timezone: String,
    pub created_at: DateTime<Utc>,
    /// Why the order was found, each reason once, in [`Matched`]'s order.
    pub matched: Vec<Matched>,
    pub score: f32,
    /// The order's event, to decide how its addresses are shown (not part of the API).
    #[serde(skip)]
    pub event_id: Uuid,
}

/// What in an order the search matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    OrderId,
    PaymentId,
    TicketCode,
    Email,
    Name,
    /// An address the order had before an operator corrected it.
    OldAddress,
    /// Someone a ticket of the order was given to, by name or address.
    TicketHolder,
    /// Someone who held a ticket of the order and gave it on.
    FormerHolder,
    SimilarEmail,
    SimilarName,
}

impl Matched {
    /// The reason as the search page says it.
    pub fn words(self) -> &'static str {
        match self {
            Matched::OrderId => "order id",
            Matched::PaymentId => "payment id",
            Matched::TicketCode => "ticket code",
            Matched::Email => "email",
            Matched::Name => "name",
            Matched::OldAddress => "old address",
            Matched::TicketHolder => "ticket holder",
            Matched::FormerHolder => "former ticket holder",
            Matched::SimilarEmail => "similar email",
            Matched::SimilarName => "similar name",
        }
    }
}

/// Escapes LIKE's wildcards in user input.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn find(s: &AppState, operator: &Operator, q: &str) -> Result<Vec<Hit>, ConsoleError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    if q.chars().count() > 200 {
        return Err(ConsoleError::Invalid(
            "a search is at most 200 characters".into(),
        ));
    }
    let lower = q.to_lowercase();
    let pattern = format!("%{}%", like_escape(&lower));
    let exact_id: Option<Uuid> = q.parse().ok();
    let host_scope: Option<Vec<Uuid>> =
        (operator.role == Role::Host).then(|| operator.events.clone());
    let masked = crate::privacy::masked_events(&s.reads, operator).await?;
    let mut hits = Vec::new();
    for (whole, words) in THRESHOLDS {
        // `%` and `%>` read their thresholds from the session: set them for this
        // transaction only, so a pooled connection goes back as it came. JIT too is off
        // for it: the query's cost estimate crosses `jit_above_cost`, and compiling
        // took 1-3 s of a search that returns at most 50 rows in ~0.1 s without it
        // (100,000 orders).
        let mut tx = s.reads.begin().await?;
        sqlx::query!(
            r#"SELECT set_config('pg_trgm.similarity_threshold', $1, true) AS "whole!",
                      set_config('pg_trgm.word_similarity_threshold', $2, true) AS "words!",
                      set_config('jit', 'off', true) AS "jit!""#,
            whole,
            words
        )
        .fetch_one(&mut *tx)
        .await?;
        hits = matches(
            &mut tx,
            q,
            &lower,
            exact_id,
            &pattern,
            host_scope.as_deref(),
            &masked,
        )
        .await?;
        tx.commit().await?;
        for hit in &mut hits {
            hit.matched.sort();
            if masked.contains(&hit.event_id) {
                hit.buyer_email = crate::privacy::mask(&hit.buyer_email);
            }
        }
        if !hits.is_empty() {
            break;
        }
    }
    Ok(hits)
}

/// One pass of the search at the transaction's similarity threshold.
async fn matches(
    tx: &mut sqlx::PgConnection,
    q: &str,
    lower: &str,
    exact_id: Option<Uuid>,
    pattern: &str,
    host_scope: Option<&[Uuid]>,
    masked: &[Uuid],
) -> Result<Vec<Hit>, ConsoleError> {
    let hits = sqlx::query_as!(
        Hit,
        // One branch per way a query can match, each answered by its own index, then
        // joined: an OR across the branches (and the tickets EXISTS) made Postgres scan
        // every order — 1-2 s at 100,000 orders instead of milliseconds. Each branch
        // names its reason and the text it matched (none for an identifier); the score
        // is computed once, from that text.
        // Similarity only when nothing matched exactly or by substring (the module's
        // promise): it is the slow branch, and its near-misses must not push the exact
        // hit out of the first 50.
        // A ticket row is a holder's only when the holder is not the buyer (under the
        // current address or an old one): the buyer's own tickets carry the buyer's
        // name and address, which the order's rows already matched.
        // `address`: the branch matched an address; where its event's addresses are
        // masked for this operator ($6), only the whole address counts (the module's
        // doc says why), so each order keeps its reasons and score both ways.
        r#"WITH direct (id, why, text, ticket, address) AS (
               SELECT id, 'order_id', NULL, NULL::uuid, false FROM orders WHERE id = $3
               UNION ALL SELECT id, 'payment_id', NULL, NULL, false FROM orders WHERE payment_intent_id = $1
               UNION ALL SELECT order_id, 'ticket_code', NULL, NULL, false FROM tickets WHERE code = upper($1)
               UNION ALL SELECT id, 'email', buyer_email, NULL, true FROM orders WHERE lower(buyer_email) LIKE $4
               UNION ALL SELECT id, 'name', buyer_name, NULL, false FROM orders WHERE lower(buyer_name) LIKE $4
               UNION ALL SELECT order_id, 'old_address', before ->> 'email', NULL, true FROM order_events
                   WHERE action = 'order.email_change' AND lower(before ->> 'email') LIKE $4
               UNION ALL SELECT order_id, 'holder', holder_email, id, true FROM tickets WHERE lower(holder_email) LIKE $4
               UNION ALL SELECT order_id, 'holder', holder_name, id, false FROM tickets WHERE lower(holder_name) LIKE $4
           ), fuzzy (id, why, text, ticket, address) AS (
               SELECT id, 'similar_email', buyer_email, NULL::uuid, true FROM orders
                   WHERE NOT EXISTS (SELECT 1 FROM direct) AND length($2) >= 4 AND lower(buyer_email) % $2
               UNION ALL SELECT id, 'similar_name', buyer_name, NULL, false FROM orders
                   WHERE NOT EXISTS (SELECT 1 FROM direct) AND length($2) >= 4 AND lower(buyer_name) % $2
               UNION ALL SELECT id, 'similar_name', buyer_name, NULL, false FROM orders
                   WHERE NOT EXISTS (SELECT 1 FROM direct) AND length($2) >= 4 AND lower(buyer_name) %> $2
               UNION ALL SELECT order_id, 'holder', holder_name, id, false FROM tickets
                   WHERE NOT EXISTS (SELECT 1 FROM direct) AND length($2) >= 4 AND lower(holder_name) %> $2
           ), matched AS (
               -- Per ticket row, by its primary key: a join of the rows with every
               -- ticket and order made Postgres hash both tables whole (1.7 s at
               -- 100,000 orders for one exact address).
               SELECT m.id, m.text, m.address AND lower(m.text) <> $2 AS part_of_address,
                      CASE WHEN m.ticket IS NULL THEN m.why
                           ELSE (SELECT CASE WHEN t.holder_email = o.buyer_email OR EXISTS (
                                                  SELECT 1 FROM order_events ev
                                                  WHERE ev.order_id = o.id AND ev.action = 'order.email_change'
                                                    AND ev.before ->> 'email' = t.holder_email) THEN NULL
                                             WHEN t.status = 'transferred' THEN 'former_holder'
                                             ELSE 'ticket_holder' END
                                 FROM tickets t JOIN orders o ON o.id = t.order_id WHERE t.id = m.ticket)
                      END AS why
               FROM (SELECT * FROM direct UNION ALL SELECT * FROM fuzzy) m
           ), ranked AS (
               -- Ranked before the orders are joined: the join then reads each order by
               -- its key instead of hashing the whole table.
               SELECT m.id, array_agg(DISTINCT m.why) AS matched,
                      array_agg(DISTINCT m.why) FILTER (WHERE NOT m.part_of_address) AS matched_whole,
                      max(m.score) AS score,
                      max(m.score) FILTER (WHERE NOT m.part_of_address) AS score_whole
               FROM (SELECT m.id, m.why, coalesce(m.part_of_address, false) AS part_of_address,
                            (CASE WHEN m.text IS NULL THEN 3.0
                                  ELSE similarity(lower(m.text), $2) + word_similarity($2, lower(m.text))
                             END)::float4 AS score
                     FROM matched m WHERE m.why IS NOT NULL) m
               GROUP BY m.id
           ), shown AS (
               SELECT r.id,
                      CASE WHEN o.event_id = ANY($6) THEN r.matched_whole ELSE r.matched END AS matched,
                      CASE WHEN o.event_id = ANY($6) THEN r.score_whole ELSE r.score END AS score
               FROM ranked r JOIN orders o ON o.id = r.id
               WHERE $5::uuid[] IS NULL OR o.event_id = ANY($5)
           )
           SELECT o.id AS order_id, o.buyer_email, o.buyer_name, o.status AS "status: OrderStatus", o.amount_cents, o.currency,
                  e.slug AS event_slug, e.title AS event_title, e.timezone AS event_timezone,
                  o.created_at, r.matched AS "matched!: Vec<Matched>", r.score AS "score!", o.event_id
           FROM shown r JOIN orders o ON o.id = r.id JOIN events e ON e.id = o.event_id
           WHERE r.matched IS NOT NULL
           ORDER BY r.score DESC, o.created_at DESC
           LIMIT 50"#,
        q,
        lower,
        exact_id,
        pattern,
        host_scope,
        masked,
    )
    .fetch_all(tx)
    .await?;
    Ok(hits)
}

pub async fn api(
    State(s): State<AppState>,
    operator: Operator,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<Hit>>, ConsoleError> {
    let Query(q) = q?;
    Ok(Json(find(&s, &operator, &q.q).await?))
}
