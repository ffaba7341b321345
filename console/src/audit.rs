//! The operator audit trail. Rows are written with the change, in its transaction, so
//! there is never a change without its row (nor a row for a change that rolled back).

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::Operator;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub event_id: Option<Uuid>,
    pub subject: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub struct Entry<'a> {
    pub action: &'a str,
    pub event_id: Option<Uuid>,
    pub subject: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: Option<&'a str>,
}

pub async fn record(
    conn: &mut PgConnection,
    actor: &Operator,
    e: Entry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO operator_audit (actor, action, event_id, subject, before, after, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
        actor.label(),
        e.action,
        e.event_id,
        e.subject,
        e.before,
        e.after,
        e.reason,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn for_event(
    db: &sqlx::PgPool,
    event_id: Uuid,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        r#"SELECT id, actor, action, event_id, subject, before, after, reason, at
           FROM operator_audit WHERE event_id = $1 ORDER BY at DESC, id DESC LIMIT $2"#,
        event_id,
        limit
    )
    .fetch_all(db)
    .await
}
