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
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub organiser: String,
    #[serde(default)]
    pub organiser_email: Option<String>,
    #[serde(default)]
    pub sales_open_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sales_close_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub hosts_see_buyer_emails: bool,
}

#[derive(Debug, Clone, Deserialize)]
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
    pub details: Details,
}

/// What buyers read about an event besides its title and times, and who may see what:
/// set at creation and on the edit page alike, checked by [`Details::check`].
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub description: String,
    pub organiser: String,
    pub organiser_email: Option<String>,
    pub sales_open_at: Option<DateTime<Utc>>,
    pub sales_close_at: Option<DateTime<Utc>>,
    pub hosts_see_buyer_emails: bool,
}

impl Details {
    /// Trims the texts and refuses what buyers could not read or an e-mail could not
    /// carry: a description over 4,000 characters, an organiser name with line breaks,
    /// an address without one `@`, a sale that closes before it opens or after the
    /// event has ended.
    pub fn check(mut self, ends_at: DateTime<Utc>) -> Result<Self, Error> {
        self.description = self.description.trim().replace("\r\n", "\n");
        if self.description.chars().count() > 4000 {
            return Err(invalid("The description can be at most 4,000 characters."));
        }
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid(
                "The description may contain line breaks but no other control characters.",
            ));
        }
        self.organiser = self.organiser.trim().to_owned();
        if self.organiser.chars().count() > 200 {
            return Err(invalid(
                "The organiser's name can be at most 200 characters.",
            ));
        }
        if self.organiser.chars().any(|c| c.is_control()) {
            return Err(invalid("The organiser's name must be on one line."));
        }
        self.organiser_email = match self.organiser_email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => {
                let mut parts = a.split('@');
                let ok = matches!((parts.next(), parts.next(), parts.next()),
                    (Some(l), Some(d), None) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
                    && a.len() <= 254
                    && !a.chars().any(|c| c.is_whitespace() || c.is_control());
                if !ok {
                    return Err(invalid(
                        "The organiser's address must look like name@example.org.",
                    ));
                }
                Some(a.to_owned())
            }
        };
        if let (Some(open), Some(close)) = (self.sales_open_at, self.sales_close_at)
            && close <= open
        {
            return Err(invalid("Sales must close after they open."));
        }
        if let Some(open) = self.sales_open_at
            && open >= ends_at
        {
            return Err(invalid("Sales must open before the event ends."));
        }
        Ok(self)
    }
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

impl NewTierRequest {
    /// One tier's own rules; that codes differ is the event's to check.
    pub fn check(self) -> Result<NewTier, Error> {
        let code_ok = !self.code.is_empty()
            && self.code.len() <= 32
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !code_ok {
            return Err(invalid(format!(
                "The tier code {:?} must be 1 to 32 lowercase letters, digits, - or _.",
                self.code
            )));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(invalid(format!(
                "Tier {}: the name must be 1 to 120 characters.",
                self.code
            )));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "Tier {}: the name must be on one line.",
                self.code
            )));
        }
        if !(0..=100_000_000).contains(&self.price_cents) {
            return Err(invalid(format!(
                "Tier {}: the price must be between 0 and 1,000,000.00.",
                self.code
            )));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "Tier {}: the currency is a three-letter code such as EUR.",
                self.code
            )));
        }
        if !(0..=1_000_000).contains(&self.capacity) {
            return Err(invalid(format!(
                "Tier {}: the capacity must be between 0 and 1,000,000.",
                self.code
            )));
        }
        let max_per_order = self.max_per_order.unwrap_or(10);
        if !(1..=100).contains(&max_per_order) {
            return Err(invalid(format!(
                "Tier {}: a buyer may take 1 to 100 tickets per order.",
                self.code
            )));
        }
        Ok(NewTier {
            code: self.code,
            name,
            price_cents: self.price_cents,
            currency: self.currency,
            capacity: self.capacity,
            max_per_order,
        })
    }
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
            "The title must be on one line, without tabs or other control characters.",
        ));
    }
    Ok(())
}

impl NewEventRequest {
    pub fn parse(self) -> Result<NewEvent, Error> {
        let slug = EventSlug::parse(&self.slug).map_err(|e| invalid(e.to_string()))?;
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(invalid("The title must be 1 to 200 characters."));
        }
        check_title_characters(&title)?;
        if self.ends_at <= self.starts_at {
            return Err(invalid("The event must end after it starts."));
        }
        let timezone: chrono_tz::Tz = self.timezone.parse().map_err(|_| {
            invalid(format!(
                "{:?} is not a time zone name such as Europe/Amsterdam.",
                self.timezone
            ))
        })?;
        if self.tiers.is_empty() || self.tiers.len() > 20 {
            return Err(invalid("An event has 1 to 20 tiers."));
        }
        let mut codes = HashSet::new();
        let tiers = self
            .tiers
            .into_iter()
            .map(|t| {
                let t = t.check()?;
                if !codes.insert(t.code.clone()) {
                    return Err(invalid(format!(
                        "Two tiers have the code {}; each needs its own.",
                        t.code
                    )));
                }
                Ok(t)
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
            return Err(invalid("Seats are held for 1 to 60 minutes."));
        }
        let details = Details {
            description: self.description,
            organiser: self.organiser,
            organiser_email: self.organiser_email,
            sales_open_at: self.sales_open_at,
            sales_close_at: self.sales_close_at,
            hosts_see_buyer_emails: self.hosts_see_buyer_emails,
        }
        .check(self.ends_at)?;
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
            details,
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
    pub description: String,
    pub organiser: String,
    pub organiser_email: Option<String>,
    pub sales_open_at: Option<DateTime<Utc>>,
    pub sales_close_at: Option<DateTime<Utc>>,
    pub hosts_see_buyer_emails: bool,
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
                queue_max_active, admission_ttl_seconds, queue_opens_at, description,
                organiser, organiser_email, sales_open_at, sales_close_at,
                hosts_see_buyer_emails)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                $17, $18, $19, $20)
           RETURNING id, slug, title, starts_at, ends_at, timezone, meeting, refund_policy,
                status AS "status: EventStatus", hold_ttl_seconds, queue_mode AS "queue_mode: Mode",
                queue_rate_per_minute,
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at,
                description, organiser, organiser_email, sales_open_at, sales_close_at,
                hosts_see_buyer_emails"#,
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
        new.details.description,
        new.details.organiser,
        new.details.organiser_email,
        new.details.sales_open_at,
        new.details.sales_close_at,
        new.details.hosts_see_buyer_emails,
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
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at,
                description, organiser, organiser_email, sales_open_at, sales_close_at,
                hosts_see_buyer_emails
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
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at,
                description, organiser, organiser_email, sales_open_at, sales_close_at,
                hosts_see_buyer_emails
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
                queue_max_active, admission_ttl_seconds, queue_opens_at, created_at,
                description, organiser, organiser_email, sales_open_at, sales_close_at,
                hosts_see_buyer_emails
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
    pub description: String,
    pub organiser: String,
    pub organiser_email: Option<String>,
    pub refund_policy: serde_json::Value,
    pub sales_open_at: Option<DateTime<Utc>>,
    pub sales_close_at: Option<DateTime<Utc>>,
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
            description: e.description.clone(),
            organiser: e.organiser.clone(),
            organiser_email: e.organiser_email.clone(),
            refund_policy: e.refund_policy.clone(),
            sales_open_at: e.sales_open_at,
            sales_close_at: e.sales_close_at,
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
    pub hold_ttl_seconds: i32,
    pub tiers: Vec<TierEdit>,
    /// Tiers added to the event, checked as at creation.
    pub new_tiers: Vec<NewTierRequest>,
    pub details: Details,
}

/// A change to one of the event's tiers.
#[derive(Debug, Clone)]
pub struct TierEdit {
    pub id: Uuid,
    pub price_cents: i64,
    pub capacity: i32,
    pub max_per_order: i32,
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
        return Err(invalid("The title must be 1 to 200 characters."));
    }
    check_title_characters(title)?;
    let timezone: chrono_tz::Tz = edit.timezone.trim().parse().map_err(|_| {
        invalid(format!(
            "{:?} is not a time zone name such as Europe/Amsterdam.",
            edit.timezone
        ))
    })?;
    if !(60..=3600).contains(&edit.hold_ttl_seconds) {
        return Err(invalid("Seats are held for 1 to 60 minutes."));
    }
    let meeting = serde_json::to_value(&edit.meeting).expect("meeting serialises");
    let policy = serde_json::to_value(&edit.refund_policy).expect("policy serialises");
    let ends_at = sqlx::query_scalar!(
        "SELECT ends_at FROM events WHERE id = $1 FOR UPDATE",
        event_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound("event"))?;
    let d = edit.details.clone().check(ends_at)?;
    sqlx::query!(
        r#"UPDATE events SET title = $2, timezone = $3, meeting = $4, refund_policy = $5,
                description = $6, organiser = $7, organiser_email = $8, sales_open_at = $9,
                sales_close_at = $10, hosts_see_buyer_emails = $11, hold_ttl_seconds = $12,
                updated_at = now()
           WHERE id = $1"#,
        event_id,
        title,
        timezone.name(),
        meeting,
        policy,
        d.description,
        d.organiser,
        d.organiser_email,
        d.sales_open_at,
        d.sales_close_at,
        d.hosts_see_buyer_emails,
        edit.hold_ttl_seconds,
    )
    .execute(&mut *conn)
    .await?;
    for t in &edit.tiers {
        if !(0..=100_000_000).contains(&t.price_cents) {
            return Err(invalid("A price must be between 0 and 1,000,000.00."));
        }
        if !(0..=1_000_000).contains(&t.capacity) {
            return Err(invalid("A capacity must be between 0 and 1,000,000."));
        }
        if !(1..=100).contains(&t.max_per_order) {
            return Err(invalid("A buyer may take 1 to 100 tickets per order."));
        }
        let row = sqlx::query!(
            r#"UPDATE tiers SET price_cents = $3, max_per_order = $5,
                      capacity = CASE WHEN sold + held <= $4 THEN $4 ELSE capacity END
               WHERE id = $1 AND event_id = $2
               RETURNING code, sold, held, capacity"#,
            t.id,
            event_id,
            t.price_cents,
            t.capacity,
            t.max_per_order,
        )
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(Error::NotFound("tier"))?;
        if row.capacity != t.capacity {
            return Err(invalid(format!(
                "Tier {}: the capacity cannot go below the {} sold and {} held.",
                row.code, row.sold, row.held
            )));
        }
    }
    for new in &edit.new_tiers {
        let t = new.clone().check()?;
        let added = sqlx::query!(
            r#"INSERT INTO tiers (id, event_id, code, name, price_cents, currency, capacity,
                    max_per_order, position)
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, COALESCE(max(position) + 1, 0)
                 FROM tiers WHERE event_id = $2
               ON CONFLICT (event_id, code) DO NOTHING"#,
            Uuid::now_v7(),
            event_id,
            t.code,
            t.name,
            t.price_cents,
            t.currency,
            t.capacity,
            t.max_per_order,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if added == 0 {
            return Err(invalid(format!(
                "The event already has a tier with the code {}.",
                t.code
            )));
        }
    }
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tiers WHERE event_id = $1"#,
        event_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if count > 20 {
        return Err(invalid("An event has 1 to 20 tiers."));
    }
    Ok(())
}
