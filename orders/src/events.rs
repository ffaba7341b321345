//! Events and their tiers: what is on sale, when, and how much of it is left.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use contract::states::EventStatus;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;
use waitroom::EventSlug;
use waitroom::settings::{AdmissionSettings, Mode};

use crate::Error;

/// `POST /console/api/events` as it arrives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEventRequest {
    pub slug: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: String,
    pub meeting: Meeting,
    #[serde(default)]
    pub refund_policy: RefundPolicy,
    pub tiers: Vec<NewTierRequest>,
    #[serde(default)]
    pub queue: QueueRequest,
    #[serde(default)]
    pub hold_ttl_seconds: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTierRequest {
    pub code: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i32,
    #[serde(default)]
    pub max_per_order: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    pub mode: Option<Mode>,
    pub opens_at: Option<DateTime<Utc>>,
    pub rate_per_minute: Option<u32>,
    pub max_active: Option<u32>,
    pub admission_ttl_seconds: Option<u32>,
}

/// Where the event happens. Provider-specific fields (a Zoom meeting id, say) are kept
/// as given; buyers never see any of it, only their own access link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meeting {
    pub provider: MeetingProvider,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingProvider {
    Jitsi,
    Zoom,
    GoogleMeet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundPolicy {
    /// Refunds are granted without an override until this many hours before the start.
    pub refundable_until_hours_before: u32,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        Self {
            refundable_until_hours_before: 48,
        }
    }
}

/// A validated new event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub slug: EventSlug,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: chrono_tz::Tz,
    pub meeting: Meeting,
    pub refund_policy: RefundPolicy,
    pub tiers: Vec<NewTier>,
    pub admission: AdmissionSettings,
    pub hold_ttl_seconds: i32,
}

#[derive(Debug, Clone)]
pub struct NewTier {
    pub code: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i32,
    pub max_per_order: i32,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// A title travels into e-mail subjects and calendar invites, line-based formats: a
/// line break in it would add a line of the attacker's choosing (the writers escape
/// too; this keeps such a title out of the database in the first place).
fn check_title_characters(title: &str) -> Result<(), Error> {
    if title
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(invalid(
            "title may not contain line breaks, tabs or other control characters",
        ));
    }
    Ok(())
}

impl NewEventRequest {
    pub fn parse(self) -> Result<NewEvent, Error> {
        let slug = EventSlug::parse(&self.slug).map_err(|e| invalid(e.to_string()))?;
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(invalid("title must be 1 to 200 characters"));
        }
        check_title_characters(&title)?;
        if self.ends_at <= self.starts_at {
            return Err(invalid("ends_at must be after starts_at"));
        }
        let timezone: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| invalid(format!("unknown time zone {:?}", self.timezone)))?;
        if self.tiers.is_empty() || self.tiers.len() > 20 {
            return Err(invalid("an event has 1 to 20 tiers"));
        }
        let mut codes = HashSet::new();
        let tiers = self
            .tiers
            .into_iter()
            .map(|t| {
                let code_ok = !t.code.is_empty()
                    && t.code.len() <= 32
                    && t.code.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !code_ok {
                    return Err(invalid(format!(
                        "tier code {:?}: 1 to 32 lowercase letters, digits, - or _",
                        t.code
                    )));
                }
                if !codes.insert(t.code.clone()) {
                    return Err(invalid(format!("tier code {:?} appears twice", t.code)));
                }
                let name = t.name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 120 {
                    return Err(invalid("tier name must be 1 to 120 characters"));
                }
                if t.price_cents < 0 || t.price_cents > 100_000_000 {
                    return Err(invalid("price_cents must be between 0 and 100000000"));
                }
                if t.currency.len() != 3 || !t.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid("currency is a three-letter ISO code such as EUR"));
                }
                if !(0..=1_000_000).contains(&t.capacity) {
                    return Err(invalid("capacity must be between 0 and 1000000"));
                }
                let max_per_order = t.max_per_order.unwrap_or(10);
                if !(1..=100).contains(&max_per_order) {
                    return Err(invalid("max_per_order must be between 1 and 100"));
                }
                Ok(NewTier {
                    code: t.code,
                    name,
                    price_cents: t.price_cents,
                    currency: t.currency,
                    capacity: t.capacity,
                    max_per_order,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = AdmissionSettings::default();
        let admission = AdmissionSettings {
            mode: self.queue.mode.unwrap_or(defaults.mode),
            rate_per_minute: self
                .queue
                .rate_per_minute
                .unwrap_or(defaults.rate_per_minute),
            max_active: self.queue.max_active.unwrap_or(defaults.max_active),
            admission_ttl_seconds: self
                .queue
                .admission_ttl_seconds
                .unwrap_or(defaults.admission_ttl_seconds),
            opens_at: self.queue.opens_at,
        };
        admission.validate().map_err(|e| invalid(e.to_string()))?;
        let hold_ttl_seconds = self.hold_ttl_seconds.unwrap_or(600);
        if !(60..=3600).contains(&hold_ttl_seconds) {
            return Err(invalid("hold_ttl_seconds must be between 60 and 3600"));
        }
        Ok(NewEvent {
            slug,
            title,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            timezone,
            meeting: self.meeting,
            refund_policy: self.refund_policy,
            tiers,
            admission,
            hold_ttl_seconds,
        })
    }
}

/// An event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: String,
    pub meeting: serde_json::Value,
    pub refund_policy: serde_json::Value,
    pub status: EventStatus,
    pub hold_ttl_seconds: i32,
    pub queue_mode: Mode,
    pub queue_rate_per_minute: i32,
    pub queue_max_active: i32,
    pub admission_ttl_seconds: i32,
    pub queue_opens_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn slug(&self) -> EventSlug {
        EventSlug::parse(&self.slug).expect("slugs are checked by the schema")
    }

    pub fn admission(&self) -> AdmissionSettings {
        AdmissionSettings {
            mode: self.queue_mode,
            rate_per_minute: self.queue_rate_per_minute as u32,
            max_active: self.queue_max_active as u32,
            admission_ttl_seconds: self.admission_ttl_seconds as u32,
            opens_at: self.queue_opens_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i32,
    pub sold: i32,
    pub held: i32,
    pub max_per_order: i32,
}

impl Tier {
    pub fn available(&self) -> i32 {
        (self.capacity - self.sold - self.held).max(0)
    }
}

/// Inserts an event and its tiers; the caller owns the transaction (the console adds
/// its audit row to it).
pub async fn create(conn: &mut PgConnection, new: &NewEvent) -> Result<Event, Error> {
    let meeting = serde_json::to_value(&new.meeting).expect("meeting serialises");
    let policy = serde_json::to_value(&new.refund_policy).expect("policy serialises");
    let a = &new.admission;
    let event = sqlx::query_as!(
        Event,
        r#"INSERT INTO events (id, slug, title, starts_at, ends_at, timezone, meeting,
                refund_policy, hold_ttl_seconds, queue_mode, queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           RETURNING id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                status AS "status: EventStatus", hold_ttl_seconds, queue_mode AS "queue_mode: Mode",
                queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at"#,
        Uuid::now_v7(),
        new.slug.as_str(),
        new.title,
        new.starts_at,
        new.ends_at,
        new.timezone.name(),
        meeting,
        policy,
        new.hold_ttl_seconds,
        a.mode.as_str(),
        a.rate_per_minute as i32,
        a.max_active as i32,
        a.admission_ttl_seconds as i32,
        a.opens_at,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("events_slug_key") => Error::SlugTaken,
        _ => Error::Database(e),
    })?;
    for (position, t) in new.tiers.iter().enumerate() {
        sqlx::query!(
            r#"INSERT INTO tiers (id, event_id, code, name, price_cents, currency, capacity,
                    max_per_order, position)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
            Uuid::now_v7(),
            event.id,
            t.code,
            t.name,
            t.price_cents,
            t.currency,
            t.capacity,
            t.max_per_order,
            position as i32,
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(event)
}

pub async fn by_slug(db: impl PgExecutor<'_>, slug: &str) -> Result<Option<Event>, Error> {
    Ok(sqlx::query_as!(
        Event,
        r#"SELECT id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                status AS "status: EventStatus", hold_ttl_seconds, queue_mode AS "queue_mode: Mode",
                queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at
           FROM events WHERE slug = $1"#,
        slug
    )
    .fetch_optional(db)
    .await?)
}

/// The event row locked for an update in the caller's transaction.
pub async fn lock_by_slug(conn: &mut PgConnection, slug: &str) -> Result<Option<Event>, Error> {
    Ok(sqlx::query_as!(
        Event,
        r#"SELECT id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                status AS "status: EventStatus", hold_ttl_seconds, queue_mode AS "queue_mode: Mode",
                queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at
           FROM events WHERE slug = $1 FOR UPDATE"#,
        slug
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Event>, Error> {
    Ok(sqlx::query_as!(
        Event,
        r#"SELECT id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                status AS "status: EventStatus", hold_ttl_seconds, queue_mode AS "queue_mode: Mode",
                queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at
           FROM events ORDER BY starts_at, slug"#
    )
    .fetch_all(db)
    .await?)
}

pub async fn tiers(db: impl PgExecutor<'_>, event_id: Uuid) -> Result<Vec<Tier>, Error> {
    Ok(sqlx::query_as!(
        Tier,
        r#"SELECT id, code, name, price_cents, currency, capacity, sold, held, max_per_order
           FROM tiers WHERE event_id = $1 ORDER BY position"#,
        event_id
    )
    .fetch_all(db)
    .await?)
}

/// Stores new admission settings (the console mirrors them to Redis in the same step).
pub async fn set_admission(
    conn: &mut PgConnection,
    event_id: Uuid,
    a: &AdmissionSettings,
) -> Result<(), Error> {
    sqlx::query!(
        r#"UPDATE events SET queue_mode = $2, queue_rate_per_minute = $3, queue_max_active = $4,
                admission_ttl_seconds = $5, queue_opens_at = $6, updated_at = now()
           WHERE id = $1"#,
        event_id,
        a.mode.as_str(),
        a.rate_per_minute as i32,
        a.max_active as i32,
        a.admission_ttl_seconds as i32,
        a.opens_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The buyer's view of an event: no queue internals, no meeting details.
#[derive(Debug, Serialize)]
pub struct PublicEvent {
    pub slug: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub timezone: String,
    pub status: EventStatus,
    pub tiers: Vec<PublicTier>,
}

#[derive(Debug, Serialize)]
pub struct PublicTier {
    pub code: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub capacity: i32,
    pub available: i32,
    pub max_per_order: i32,
}

impl PublicEvent {
    pub fn new(e: &Event, tiers: &[Tier]) -> Self {
        Self {
            slug: e.slug.clone(),
            title: e.title.clone(),
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            timezone: e.timezone.clone(),
            status: e.status,
            tiers: tiers
                .iter()
                .map(|t| PublicTier {
                    code: t.code.clone(),
                    name: t.name.clone(),
                    price_cents: t.price_cents,
                    currency: t.currency.clone(),
                    capacity: t.capacity,
                    available: t.available(),
                    max_per_order: t.max_per_order,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> Result<NewEvent, Error> {
        serde_json::from_value::<NewEventRequest>(json)
            .map_err(|e| Error::BadRequest(e.to_string()))?
            .parse()
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "slug": "gig", "title": "The Gig",
            "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T20:00:00Z",
            "timezone": "Europe/Amsterdam", "meeting": {"provider": "jitsi"},
            "tiers": [{"code": "ga", "name": "General", "price_cents": 1000, "currency": "EUR", "capacity": 10}],
            "queue": {"mode": "on", "rate_per_minute": 60, "max_active": 5}
        })
    }

    #[test]
    fn a_valid_event_parses_with_defaults() {
        let e = request(valid()).unwrap();
        assert_eq!(e.admission.rate_per_minute, 60);
        assert_eq!(e.admission.admission_ttl_seconds, 900);
        assert_eq!(e.tiers[0].max_per_order, 10);
        assert_eq!(e.refund_policy.refundable_until_hours_before, 48);
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("slug", serde_json::json!("Bad Slug")),
            ("ends_at", serde_json::json!("2029-01-01T00:00:00Z")),
            ("timezone", serde_json::json!("Mars/Olympus")),
            ("tiers", serde_json::json!([])),
            (
                "tiers",
                serde_json::json!([
                {"code": "ga", "name": "A", "price_cents": 1, "currency": "EUR", "capacity": 1},
                {"code": "ga", "name": "B", "price_cents": 1, "currency": "EUR", "capacity": 1}]),
            ),
            (
                "tiers",
                serde_json::json!([{"code": "ga", "name": "A", "price_cents": -1, "currency": "EUR", "capacity": 1}]),
            ),
            (
                "tiers",
                serde_json::json!([{"code": "ga", "name": "A", "price_cents": 1, "currency": "eur", "capacity": 1}]),
            ),
            ("queue", serde_json::json!({"mode": "prequeue"})),
            ("queue", serde_json::json!({"max_active": 0})),
            (
                "title",
                serde_json::json!("Gig\r\nATTENDEE:mailto:evil@example.org"),
            ),
            ("title", serde_json::json!("Gig\u{2028}X")),
        ];
        for (field, value) in cases {
            let mut body = valid();
            body[field] = value.clone();
            assert!(request(body).is_err(), "{field} = {value} accepted");
        }
    }
}

/// What the set-up page may change on an existing event. Times move through
/// `corrections::reschedule` (buyers are told); queue settings through the admission API.
#[derive(Debug, Clone)]
pub struct EventEdit {
    pub title: String,
    pub timezone: String,
    pub meeting: Meeting,
    pub refund_policy: RefundPolicy,
    /// (tier id, price in cents, capacity) for tiers of this event.
    pub tiers: Vec<(Uuid, i64, i32)>,
}

/// Applies an edit in the caller's transaction. A capacity below what is already sold
/// or held is refused (before the database's CHECK would), naming the tier.
pub async fn update(
    conn: &mut PgConnection,
    event_id: Uuid,
    edit: &EventEdit,
) -> Result<(), Error> {
    let title = edit.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(invalid("title must be 1 to 200 characters"));
    }
    check_title_characters(title)?;
    let timezone: chrono_tz::Tz = edit
        .timezone
        .trim()
        .parse()
        .map_err(|_| invalid(format!("unknown time zone {:?}", edit.timezone)))?;
    let meeting = serde_json::to_value(&edit.meeting).expect("meeting serialises");
    let policy = serde_json::to_value(&edit.refund_policy).expect("policy serialises");
    let updated = sqlx::query!(
        r#"UPDATE events SET title = $2, timezone = $3, meeting = $4, refund_policy = $5, updated_at = now()
           WHERE id = $1"#,
        event_id,
        title,
        timezone.name(),
        meeting,
        policy
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(Error::NotFound("event"));
    }
    for (tier, price, capacity) in &edit.tiers {
        if !(0..=100_000_000).contains(price) {
            return Err(invalid("price_cents must be between 0 and 100000000"));
        }
        if !(0..=1_000_000).contains(capacity) {
            return Err(invalid("capacity must be between 0 and 1000000"));
        }
        let row = sqlx::query!(
            r#"UPDATE tiers SET price_cents = $3,
                      capacity = CASE WHEN sold + held <= $4 THEN $4 ELSE capacity END
               WHERE id = $1 AND event_id = $2
               RETURNING code, sold, held, capacity"#,
            tier,
            event_id,
            price,
            capacity
        )
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::NotFound("tier"))?;
        if row.capacity != *capacity {
            return Err(invalid(format!(
                "tier {}: capacity {capacity} is below the {} sold and {} held",
                row.code, row.sold, row.held
            )));
        }
    }
    Ok(())
}
