//! The operator's fixes: what each is called in the audit trail, and how one runs —
//! once per idempotency key, audited with its actor and reason in its own transaction,
//! and, when the refund policy refuses it, leaving a trace of what was asked.

use std::future::Future;
use std::pin::Pin;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::Operator;

/// Every fix an operator can make. The names are the audit rows' `action`, read back
/// by the timeline, the control room and the idempotency check, so they never change;
/// an order's fix has the same name as the order event its correction writes, which
/// is how the timeline puts the operator's reason next to the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    Refund,
    CancelOrder,
    Resend,
    ChangeEmail,
    Transfer,
    Reschedule,
    CancelEvent,
    ResendUndelivered,
    EditEvent,
}

impl Fix {
    pub const ALL: [Fix; 9] = [
        Fix::Refund,
        Fix::CancelOrder,
        Fix::Resend,
        Fix::ChangeEmail,
        Fix::Transfer,
        Fix::Reschedule,
        Fix::CancelEvent,
        Fix::ResendUndelivered,
        Fix::EditEvent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Fix::Refund => "order.refund",
            Fix::CancelOrder => "order.cancel",
            Fix::Resend => "order.resend",
            Fix::ChangeEmail => "order.email_change",
            Fix::Transfer => "ticket.transfer",
            Fix::Reschedule => "event.reschedule",
            Fix::CancelEvent => "event.cancel",
            Fix::ResendUndelivered => "event.resend_undelivered",
            Fix::EditEvent => "event.edit",
        }
    }

    /// The fix an audit row or order event names, if it names one.
    pub fn parse(action: &str) -> Option<Fix> {
        Fix::ALL.into_iter().find(|f| f.as_str() == action)
    }
}

/// One operator's attempt at a fix, as [`once`] runs and audits it.
pub struct Attempt<'a> {
    pub operator: &'a Operator,
    pub action: Fix,
    /// What it acts on (an order id, an event slug): the audit row's subject.
    pub subject: &'a str,
    pub event: Uuid,
    pub reason: Option<&'a str>,
    /// Everything the caller asked for (the body, and any id that is not the subject).
    /// An idempotency key is bound to it, so a key sent again with another request is
    /// refused instead of being answered with the first request's result.
    pub request: serde_json::Value,
    pub key: Option<&'a str>,
}

impl Attempt<'_> {
    /// The request's fingerprint: SHA-256 of its JSON, whose field order is fixed
    /// (struct fields in declaration order, maps as built), so the same request always
    /// hashes the same.
    fn request_hash(&self) -> Vec<u8> {
        Sha256::digest(serde_json::to_vec(&self.request).expect("json")).to_vec()
    }
}

/// Runs a fix once per key: a repeat (double-click, retried request) returns the
/// first result and does nothing. The key is bound to the operator, action, subject
/// and request that first used it; reused for anything else it is refused
/// ([`ConsoleError::KeyReused`]) — answering with the first result would tell the
/// caller that something they did not do was done. Audited with the action in one
/// transaction.
pub async fn once<F>(
    s: &AppState,
    attempt: &Attempt<'_>,
    f: F,
) -> Result<serde_json::Value, ConsoleError>
where
    F: for<'c> FnOnce(
        &'c mut PgConnection,
    ) -> Pin<
        Box<dyn Future<Output = Result<serde_json::Value, ConsoleError>> + Send + 'c>,
    >,
{
    let mut tx = s.db.begin().await?;
    let actor = attempt.operator.label();
    let action = attempt.action.as_str();
    if let Some(key) = attempt.key {
        if key.len() > 200 {
            return Err(ConsoleError::Invalid(
                "an idempotency key is at most 200 characters".into(),
            ));
        }
        let request_hash = attempt.request_hash();
        let claimed = sqlx::query_scalar!(
            r#"INSERT INTO operator_actions (key, actor, action, subject, request_hash, result)
               VALUES ($1, $2, $3, $4, $5, '{}') ON CONFLICT (key) DO NOTHING RETURNING key"#,
            key,
            actor,
            action,
            attempt.subject,
            request_hash,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            drop(tx);
            let first = sqlx::query!(
                "SELECT actor, action, subject, request_hash, result FROM operator_actions WHERE key = $1",
                key
            )
            .fetch_one(&s.db)
            .await?;
            let same = first.actor == actor
                && first.action == action
                && first.subject == attempt.subject
                && first
                    .request_hash
                    .is_none_or(|h| h.as_slice() == request_hash.as_slice());
            if !same {
                return Err(ConsoleError::KeyReused);
            }
            return Ok(serde_json::json!({"repeated": true, "result": first.result}));
        }
    }
    let result = f(&mut tx).await?;
    audit::record(
        &mut tx,
        attempt.operator,
        Entry {
            action,
            event_id: Some(attempt.event),
            subject: attempt.subject,
            before: None,
            after: Some(result.clone()),
            reason: attempt.reason,
        },
    )
    .await?;
    if let Some(key) = attempt.key {
        sqlx::query!(
            "UPDATE operator_actions SET result = $2 WHERE key = $1",
            key,
            result
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(result)
}

/// Whether the refund policy (or the role's authority over it) refused a money fix —
/// as opposed to a typo in the form or a missing order.
fn refused_by_policy(e: &ConsoleError) -> bool {
    matches!(e, ConsoleError::Orders(o) if matches!(o.code(), "outside_refund_policy" | "forbidden"))
}

/// A refund or cancellation the refund policy refused leaves a trace: an audit row
/// `{action}.refused` (who, what they asked for, why it was refused, their reason),
/// written after the refused transaction rolled back. It shows in the order's
/// timeline. Refusals at the role gate (a read-only host) and typos are not recorded.
/// A failure to record is logged and does not change the answer.
pub async fn record_refusal(s: &AppState, attempt: &Attempt<'_>, e: &ConsoleError) {
    if !refused_by_policy(e) {
        return;
    }
    let (_, code, message) = e.public();
    // The reason has a column of its own; what is left is what they asked for.
    let mut asked = attempt.request.clone();
    if let Some(map) = asked.as_object_mut() {
        map.remove("reason");
        map.retain(|_, v| !v.is_null());
        map.insert("error".into(), code.into());
        map.insert("message".into(), message.into());
    }
    let written = async {
        let mut conn = s.db.acquire().await?;
        audit::record(
            &mut conn,
            attempt.operator,
            Entry {
                action: &format!("{}.refused", attempt.action.as_str()),
                event_id: Some(attempt.event),
                subject: attempt.subject,
                before: None,
                after: Some(asked),
                reason: attempt.reason.map(str::trim).filter(|r| !r.is_empty()),
            },
        )
        .await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, order_id = %attempt.subject, "recording a refused fix failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit rows already written carry these names; renaming one would orphan them.
    #[test]
    fn fix_names_are_the_audit_actions_of_record() {
        assert_eq!(
            Fix::ALL.map(Fix::as_str),
            [
                "order.refund",
                "order.cancel",
                "order.resend",
                "order.email_change",
                "ticket.transfer",
                "event.reschedule",
                "event.cancel",
                "event.resend_undelivered",
                "event.edit",
            ]
        );
        for fix in Fix::ALL {
            assert_eq!(Fix::parse(fix.as_str()), Some(fix));
        }
        assert_eq!(Fix::parse("hold.create"), None);
    }
}
