//! Operator accounts and browser sessions.
//!
//! Passwords are hashed with argon2id. A session is a random 256-bit id in an HttpOnly,
//! SameSite=Strict cookie (Secure over TLS); only its SHA-256 is stored, with the
//! session's CSRF token, so sessions are revocable server-side and a database leak
//! yields none. A fresh id is issued at every login (no fixation). Failed logins are
//! counted per account and per client and throttled.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
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
    sqlx::query!(
        "INSERT INTO operators (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5)",
        id,
        email,
        name.trim(),
        role.as_str(),
        hash_password(password)?,
    )
    .execute(db)
    .await?;
    Ok(id)
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

pub async fn login(
    db: &PgPool,
    email: &str,
    password: &str,
    client: &str,
) -> Result<Login, ConsoleError> {
    let email = email.trim().to_lowercase();
    let failures = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE email = $1) AS "account!", count(*) FILTER (WHERE client = $2) AS "client!"
           FROM login_attempts WHERE at > now() - make_interval(mins => $3)"#,
        email,
        client,
        WINDOW_MINUTES
    )
    .fetch_one(db)
    .await?;
    if failures.account >= MAX_FAILURES || failures.client >= MAX_CLIENT_FAILURES {
        return Ok(Login::Throttled);
    }
    let row = sqlx::query!(
        "SELECT id, password_hash FROM operators WHERE email = $1 AND disabled_at IS NULL",
        email
    )
    .fetch_optional(db)
    .await?;
    // Verify against a dummy hash when the account does not exist, so timing does not
    // reveal which emails are operators.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4Nne0lt3Bw3MQ4pJ8iV9kX3v+VjQ4Bq0T0Qb5f1jZ5c";
    let stored = row.as_ref().map_or(DUMMY, |r| r.password_hash.as_str());
    let ok = PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    let Some(row) = row.filter(|_| ok) else {
        sqlx::query!(
            "INSERT INTO login_attempts (email, client) VALUES ($1, $2)",
            email,
            client
        )
        .execute(db)
        .await?;
        return Ok(Login::Refused);
    };
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
