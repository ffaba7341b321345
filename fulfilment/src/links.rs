//! Access links: `/join/{token}`, one live link per ticket.
//!
//! The token is `base64url(HMAC-SHA256(link secret, "ticket:{id}:{generation}"))`:
//! 256 bits nobody can guess without the secret, reproducible by fulfilment (so a resend
//! carries the same link without the token ever being stored), and only its SHA-256 is
//! in the database. Revoking a link closes its generation; the next one is a new token.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use platform::env::Secret;

pub fn token(secret: &Secret, ticket_id: Uuid, generation: i32) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key");
    mac.update(format!("ticket:{ticket_id}:{generation}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The ticket's live link generation, issuing generation 1 if it has none. Idempotent.
pub async fn ensure(
    conn: &mut PgConnection,
    secret: &Secret,
    ticket_id: Uuid,
) -> Result<i32, sqlx::Error> {
    if let Some(g) = sqlx::query_scalar!(
        "SELECT generation FROM access_links WHERE ticket_id = $1 AND revoked_at IS NULL",
        ticket_id
    )
    .fetch_optional(&mut *conn)
    .await?
    {
        return Ok(g);
    }
    let next = sqlx::query_scalar!(
        r#"SELECT COALESCE(max(generation), 0) + 1 AS "g!" FROM access_links WHERE ticket_id = $1"#,
        ticket_id
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO access_links (id, ticket_id, generation, token_hash)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"#,
        Uuid::now_v7(),
        ticket_id,
        next,
        hash(&token(secret, ticket_id, next)),
    )
    .execute(&mut *conn)
    .await?;
    // Another consumer may have won the race: read what is live now.
    sqlx::query_scalar!(
        "SELECT generation FROM access_links WHERE ticket_id = $1 AND revoked_at IS NULL",
        ticket_id
    )
    .fetch_one(&mut *conn)
    .await
}

/// Revokes the ticket's live link (transfer, email change, refund).
pub async fn revoke(
    conn: &mut PgConnection,
    ticket_id: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        r#"UPDATE access_links SET revoked_at = now(), revoked_reason = $2
           WHERE ticket_id = $1 AND revoked_at IS NULL"#,
        ticket_id,
        reason
    )
    .execute(conn)
    .await?
    .rows_affected())
}

pub fn url(public_url: &str, token: &str) -> String {
    format!("{}/join/{token}", public_url.trim_end_matches('/'))
}

/// What the stored copy of an email shows instead of the token: enough to tell links
/// apart on a support call, useless to an attacker.
pub fn redact(text: &str, token: &str) -> String {
    let tail = &token[token.len().saturating_sub(4)..];
    text.replace(token, &format!("…{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_differ_by_ticket_generation_and_secret() {
        let s = Secret::new("a".repeat(32));
        let t = Uuid::new_v4();
        let a = token(&s, t, 1);
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&a)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(a, token(&s, t, 1));
        assert_ne!(a, token(&s, t, 2));
        assert_ne!(a, token(&s, Uuid::new_v4(), 1));
        assert_ne!(a, token(&Secret::new("b".repeat(32)), t, 1));
        let redacted = redact(&format!("see /join/{a} now"), &a);
        assert!(!redacted.contains(&a));
        assert!(redacted.contains(&a[a.len() - 4..]));
    }
}
