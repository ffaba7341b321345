//! Operator accounts and browser sessions.
//!
//! Passwords are hashed with argon2id. A session is a random 256-bit id in an HttpOnly,
//! SameSite=Strict cookie (Secure over TLS); only its SHA-256 is stored, with the
//! session's CSRF token, so sessions are revocable server-side and a database leak
//! yields none. A fresh id is issued at every login (no fixation). Failed logins are
//! counted per account and per client and throttled; an attempt is counted *before*
//! its password is checked, so a parallel burst cannot have more guesses checked than
//! the limit. Argon2 runs on tokio's blocking pool: each verification is tens of
//! milliseconds of CPU that would otherwise stall every request on that worker.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ConsoleError;
use crate::auth::{Operator, Role};

pub const COOKIE: &str = "fg_console";
pub const LIFETIME_HOURS: i64 = 12;
/// Failed attempts allowed per account, and per client, in the window.
const MAX_FAILURES: i64 = 5;
const MAX_CLIENT_FAILURES: i64 = 20;
const WINDOW_MINUTES: i32 = 15;
/// How long a throttled client waits at most (`Retry-After`): the whole window, by
/// which time every failure that counted has aged out.
pub const THROTTLE_SECONDS: u32 = WINDOW_MINUTES as u32 * 60;

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    if password.chars().count() < 12 {
        return Err(ConsoleError::Invalid(
            "a password has at least 12 characters".into(),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConsoleError::Invalid(format!("password: {e}")))
}

pub async fn create_operator(
    db: &PgPool,
    email: &str,
    name: &str,
    role: Role,
    password: &str,
) -> Result<Uuid, ConsoleError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || name.trim().is_empty() {
        return Err(ConsoleError::Invalid(
            "an operator needs an email and a name".into(),
        ));
    }
    let id = Uuid::now_v7();
    let password = password.to_owned();
    let password_hash = on_blocking_pool(move || hash_password(&password)).await?;
    sqlx::query!(
        "INSERT INTO operators (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5)",
        id,
        email,
        name.trim(),
        role.as_str(),
        password_hash,
    )
    .execute(db)
    .await?;
    Ok(id)
}

/// How long an invitation link works.
pub const INVITE_DAYS: i32 = 7;

/// What an invited account's password hash is until its invitation is taken up: not a
/// PHC string, so no password matches it.
const NO_PASSWORD_YET: &str = "!invited";

/// Someone to invite: their address, name, role and (for a host) the events they see.
pub struct Invitation<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub events: &'a [Uuid],
}

/// Creates the invited person's account, without a password, and its invitation;
/// returns the account and the link's token (shown once, stored hashed). An address
/// that already has an account is refused and nothing is written.
pub async fn invite(
    conn: &mut PgConnection,
    who: &Invitation<'_>,
    by: &str,
) -> Result<(Uuid, String), ConsoleError> {
    let email = orders::buyers::Email::parse(&who.email.to_lowercase())?;
    let name = who.name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err(ConsoleError::Invalid(
            "a name is 1 to 120 characters on one line".into(),
        ));
    }
    let id = sqlx::query_scalar!(
        r#"INSERT INTO operators (id, email, name, role, password_hash, event_ids)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING RETURNING id"#,
        Uuid::now_v7(),
        email.as_str(),
        name,
        who.role.as_str(),
        NO_PASSWORD_YET,
        who.events,
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(orders::Error::Conflict(
        "account_exists",
        "there is already an account for that address",
    ))?;
    let token = random_token();
    sqlx::query!(
        r#"INSERT INTO operator_invites (token_hash, operator_id, created_by, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(days => $4))"#,
        hash(&token),
        id,
        by,
        INVITE_DAYS,
    )
    .execute(&mut *conn)
    .await?;
    Ok((id, token))
}

/// The name of whoever this invitation is for, while it can still be taken up.
pub async fn invited(db: &PgPool, token: &str) -> Result<Option<String>, ConsoleError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT o.name FROM operator_invites i JOIN operators o ON o.id = i.operator_id
           WHERE i.token_hash = $1 AND i.used_at IS NULL AND i.expires_at > now()"#,
        hash(token)
    )
    .fetch_optional(db)
    .await?)
}

/// Takes up an invitation: the person's own password, once. A password that is too
/// short is refused before the invitation is used, so it can be tried again.
pub async fn accept_invite(db: &PgPool, token: &str, password: &str) -> Result<(), ConsoleError> {
    // Hashing a password costs the CPU far more than a lookup: a link that takes no one
    // in (guessed, used, expired) is refused before any hashing.
    if invited(db, token).await?.is_none() {
        return Err(orders::Error::NotFound("invitation").into());
    }
    let password = password.to_owned();
    let password_hash = on_blocking_pool(move || hash_password(&password)).await?;
    sqlx::query_scalar!(
        r#"WITH used AS (
               UPDATE operator_invites SET used_at = now()
               WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
               RETURNING operator_id)
           UPDATE operators o SET password_hash = $2 FROM used
           WHERE o.id = used.operator_id RETURNING o.id"#,
        hash(token),
        password_hash
    )
    .fetch_optional(db)
    .await?
    .ok_or(orders::Error::NotFound("invitation"))?;
    Ok(())
}

pub struct NewSession {
    /// The cookie value (shown once, stored hashed).
    pub id: String,
    pub csrf: String,
}

pub enum Login {
    Ok(NewSession),
    Refused,
    Throttled,
}

/// Runs CPU-bound work (argon2) on the blocking pool. A panic there is a bug; it is
/// raised again here rather than turned into an answer.
async fn on_blocking_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Counts a login attempt before its password is checked, as a failure until it is
/// known to be right: `Some(attempt id)`, or `None` when the account or the client has
/// used up its attempts. Attempts on one account and from one client are counted one
/// at a time (transaction-scoped advisory locks, account before client so two
/// attempts never wait on each other in a circle): a count and an insert in separate
/// steps would let a parallel burst all read "0 so far" and all be checked.
async fn claim_attempt(
    db: &PgPool,
    email: &str,
    client: &str,
) -> Result<Option<i64>, ConsoleError> {
    let mut tx = db.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(1, hashtext($1))", email)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(2, hashtext($1))", client)
        .execute(&mut *tx)
        .await?;
    let attempt = sqlx::query_scalar!(
        r#"INSERT INTO login_attempts (email, client)
           SELECT $1, $2
            WHERE (SELECT count(*) FROM login_attempts
                    WHERE email = $1 AND at > now() - make_interval(mins => $3)) < $4
              AND (SELECT count(*) FROM login_attempts
                    WHERE client = $2 AND at > now() - make_interval(mins => $3)) < $5
           RETURNING id"#,
        email,
        client,
        WINDOW_MINUTES,
        MAX_FAILURES,
        MAX_CLIENT_FAILURES,
    )
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(attempt)
}

pub async fn login(
    db: &PgPool,
    email: &str,
    password: &str,
    client: &str,
) -> Result<Login, ConsoleError> {
    let email = email.trim().to_lowercase();
    let Some(attempt) = claim_attempt(db, &email, client).await? else {
        return Ok(Login::Throttled);
    };
    let row = sqlx::query!(
        "SELECT id, password_hash FROM operators WHERE email = $1 AND disabled_at IS NULL",
        email
    )
    .fetch_optional(db)
    .await?;
    // Verify against a dummy hash when the account does not exist, so timing does not
    // reveal which emails are operators.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4Nne0lt3Bw3MQ4pJ8iV9kX3v+VjQ4Bq0T0Qb5f1jZ5c";
    let stored = row
        .as_ref()
        .map_or(DUMMY, |r| r.password_hash.as_str())
        .to_owned();
    let password = password.to_owned();
    let ok = on_blocking_pool(move || {
        PasswordHash::new(&stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await;
    // A wrong password leaves its attempt counted as a failure.
    let Some(row) = row.filter(|_| ok) else {
        return Ok(Login::Refused);
    };
    // The right one is no failure: its attempt is taken back.
    sqlx::query!("DELETE FROM login_attempts WHERE id = $1", attempt)
        .execute(db)
        .await?;
    let session = NewSession {
        id: random_token(),
        csrf: random_token(),
    };
    sqlx::query!(
        r#"INSERT INTO operator_sessions (id_hash, operator_id, csrf_token, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(hours => $4))"#,
        hash(&session.id),
        row.id,
        session.csrf,
        LIFETIME_HOURS as i32
    )
    .execute(db)
    .await?;
    Ok(Login::Ok(session))
}

pub async fn logout(db: &PgPool, id: &str) -> Result<(), ConsoleError> {
    sqlx::query!(
        "UPDATE operator_sessions SET revoked_at = now() WHERE id_hash = $1",
        hash(id)
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The operator behind a session cookie, with the session's CSRF token.
pub async fn operator(db: &PgPool, id: &str) -> Result<Option<(Operator, String)>, ConsoleError> {
    let row = sqlx::query!(
        r#"SELECT o.id, o.name, o.role, o.event_ids, s.csrf_token
           FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
           WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
             AND o.disabled_at IS NULL"#,
        hash(id)
    )
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        Some((
            Operator {
                token_id: r.id,
                name: r.name,
                role: Role::parse(&r.role)?,
                events: r.event_ids,
                csrf: Some(r.csrf_token.clone()),
            },
            r.csrf_token,
        ))
    }))
}

pub fn cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}
