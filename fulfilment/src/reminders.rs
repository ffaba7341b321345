//! Reminders at T−24 h and T−1 h, as rows in the shared jobs table.
//!
//! A reminder job names the start time it was scheduled for (in its dedup key and
//! payload). When the event moves, new jobs are scheduled for the new time and the old
//! ones, on running, see the start no longer matches and retire without sending. A
//! reminder whose moment passed more than [`GRACE`] ago (an event set up or bought
//! for at short notice, or a mailer that was down) is skipped and logged, never sent
//! late with words that are no longer true ("starts tomorrow" half an hour before).
//! The clock is a parameter so tests can stand at T−24 h without waiting a day.

use chrono::{DateTime, Duration, Utc};
use contract::states::EventStatus;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Error;
use crate::app::AppState;

pub const KIND: &str = "reminder";

/// Offsets before the start, with the words the email uses.
pub const OFFSETS: [(i64, &str); 2] = [(24 * 3600, "tomorrow"), (3600, "in an hour")];

/// How late a reminder may still go out: its words stay true within it.
pub const GRACE: Duration = Duration::minutes(15);

/// Schedules the event's reminders for its current start (idempotent).
pub async fn schedule(conn: &mut PgConnection, event_id: Uuid) -> Result<(), Error> {
    let starts_at = sqlx::query_scalar!("SELECT starts_at FROM events WHERE id = $1", event_id)
        .fetch_one(&mut *conn)
        .await?;
    for (offset, _) in OFFSETS {
        let run_at = starts_at - Duration::seconds(offset);
        sqlx::query!(
            r#"INSERT INTO jobs (id, kind, payload, run_at, dedup_key)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedup_key) DO NOTHING"#,
            Uuid::now_v7(),
            KIND,
            serde_json::json!({"event_id": event_id, "offset_seconds": offset, "starts_at": starts_at}),
            run_at,
            format!("reminder:{event_id}:{offset}:{}", starts_at.timestamp()),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Runs the reminder jobs due at `now`: queues one reminder email per paid order.
pub async fn run_due(s: &AppState, now: DateTime<Utc>) -> Result<usize, Error> {
    let mut tx = s.db.begin().await?;
    let due = sqlx::query!(
        r#"SELECT id, payload, run_at FROM jobs
           WHERE kind = $1 AND done_at IS NULL AND run_at <= $2
           ORDER BY run_at LIMIT 20 FOR UPDATE SKIP LOCKED"#,
        KIND,
        now
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut queued = 0;
    for job in &due {
        let event_id: Option<Uuid> = job
            .payload
            .get("event_id")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok());
        let offset = job
            .payload
            .get("offset_seconds")
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        let planned: Option<DateTime<Utc>> = job
            .payload
            .get("starts_at")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok());
        if let (Some(event_id), Some(planned)) = (event_id, planned) {
            let current = sqlx::query!(
                r#"SELECT starts_at, status AS "status: EventStatus" FROM events WHERE id = $1"#,
                event_id
            )
            .fetch_one(&mut *tx)
            .await?;
            let late = now - job.run_at;
            if late > GRACE {
                tracing::info!(
                    %event_id,
                    offset_seconds = offset,
                    late_minutes = late.num_minutes(),
                    "reminder skipped: its moment has passed"
                );
            }
            // Moved or cancelled since scheduling: this reminder retires silently.
            if current.starts_at == planned
                && current.status == EventStatus::Scheduled
                && now < current.starts_at
                && late <= GRACE
            {
                let when = OFFSETS
                    .iter()
                    .find(|(o, _)| *o == offset)
                    .map_or("soon", |(_, w)| w);
                queued += sqlx::query!(
                    r#"INSERT INTO deliveries (id, order_id, kind, dedup_key, recipient, context)
                       SELECT gen_random_uuid(), o.id, 'reminder', $2, o.buyer_email,
                              jsonb_build_object('when_text', $3::text)
                       FROM orders o
                       WHERE o.event_id = $1 AND o.status IN ('paid', 'partially_refunded')
                         AND EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id AND t.status = 'valid')
                       ON CONFLICT (order_id, dedup_key) DO NOTHING"#,
                    event_id,
                    format!("reminder:{offset}:{}", planned.timestamp()),
                    when,
                )
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            }
        }
        sqlx::query!(
            "UPDATE jobs SET done_at = $2, attempts = attempts + 1 WHERE id = $1",
            job.id,
            now
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if queued > 0 {
        s.wake.notify_one();
    }
    Ok(queued)
}
