//! Who is asking, and what their role lets them do.
//!
//! API tokens are 256-bit random strings shown once; only their SHA-256 is stored, so
//! a leaked database does not leak usable tokens, and lookup by hash needs no
//! constant-time comparison of secrets.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use waitroom::EventSlug;

use crate::ConsoleError;
use crate::app::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including refunds outside policy and managing operators.
    Admin,
    /// Runs on-sales and fixes orders.
    Operator,
    /// Read-only.
    Host,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "host" => Some(Role::Host),
            _ => None,
        }
    }
}

/// An authenticated operator: by API token (no CSRF needed: a bearer header cannot be
/// forged cross-site) or by session cookie (CSRF token required on every change).
#[derive(Clone, Debug)]
pub struct Operator {
    /// The token's or the operator account's id.
    pub token_id: Uuid,
    pub name: String,
    pub role: Role,
    /// For hosts: the events they may see (empty = none).
    pub events: Vec<Uuid>,
    /// The session's CSRF token; `None` for API tokens.
    pub csrf: Option<String>,
}

/// Roles that may change things.
pub const STAFF: &[Role] = &[Role::Admin, Role::Operator];

impl Operator {
    /// How the operator appears in the audit trail.
    pub fn label(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.name)
    }

    /// Checks a presented CSRF token for session-authenticated changes.
    pub fn verify_csrf(&self, presented: Option<&str>) -> Result<(), ConsoleError> {
        match &self.csrf {
            None => Ok(()),
            Some(expected) => {
                use subtle::ConstantTimeEq;
                let ok: bool = presented
                    .map(|p| p.as_bytes().ct_eq(expected.as_bytes()).into())
                    .unwrap_or(false);
                if ok { Ok(()) } else { Err(ConsoleError::Csrf) }
            }
        }
    }

    /// Whether this operator may see an event (hosts only their own).
    pub fn may_see(&self, event_id: Uuid) -> bool {
        self.role != Role::Host || self.events.contains(&event_id)
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ConsoleError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden)
        }
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates an API token; the returned secret is shown once and never stored.
pub async fn create_token(
    db: &PgPool,
    name: &str,
    role: Role,
) -> Result<(Uuid, String), ConsoleError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(ConsoleError::Invalid(
            "a token name is 1 to 120 characters".into(),
        ));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "fgo_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO operator_tokens (id, name, role, token_hash) VALUES ($1, $2, $3, $4)",
        id,
        name,
        role.as_str(),
        hash(&token),
    )
    .execute(db)
    .await?;
    Ok((id, token))
}

pub async fn authenticate(db: &PgPool, token: &str) -> Result<Option<Operator>, ConsoleError> {
    if !token.starts_with("fgo_") || token.len() > 100 {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"UPDATE operator_tokens SET last_used_at = now()
           WHERE token_hash = $1 AND revoked_at IS NULL
           RETURNING id, name, role, event_ids"#,
        hash(token),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        Some(Operator {
            token_id: r.id,
            name: r.name,
            role: Role::parse(&r.role)?,
            events: r.event_ids,
            csrf: None,
        })
    }))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            return authenticate(&state.db, token)
                .await?
                .ok_or(ConsoleError::Unauthenticated);
        }
        let session = parts
            .headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == crate::sessions::COOKIE)
            .map(|(_, v)| v.to_owned())
            .ok_or(ConsoleError::Unauthenticated)?;
        let (operator, _) = crate::sessions::operator(&state.db, &session)
            .await?
            .ok_or(ConsoleError::Unauthenticated)?;
        // Changes made with a session carry the CSRF token: JSON calls in a header, HTML
        // forms in a field their handler checks (`verify_csrf`). Only the pages have such
        // handlers: an API route takes no form, so a form post to it (what a cross-site
        // page can send without a preflight) still needs the header.
        let safe = matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
        let form = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        // Inside the nested API router `parts.uri` has lost its prefix; the original has not.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |u| u.0.path());
        let page_form = form && !path.starts_with("/console/api/");
        if !safe && !page_form {
            let header = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            operator.verify_csrf(header)?;
        }
        Ok(operator)
    }
}

/// An operator on a page. Without a session the answer is the sign-in page (a
/// redirect), not the API's `401`; any other refusal is an error page.
pub struct SignedIn(pub Operator);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Operator::from_request_parts(parts, state).await {
            Ok(o) => Ok(SignedIn(o)),
            Err(ConsoleError::Unauthenticated) => {
                Err(Redirect::to("/console/login").into_response())
            }
            Err(e) => Err(crate::html::error_page(None, &e)),
        }
    }
}

/// A page's form, posted by a signed-in operator with the session's CSRF token in its
/// `csrf` field (checked here, so no handler can forget it): the fields by name. A
/// form without the token, or with another session's, is refused with a `403` page
/// and nothing is done.
pub struct CsrfForm {
    pub operator: Operator,
    pub fields: HashMap<String, String>,
}

impl CsrfForm {
    /// A field's value, if the form sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let SignedIn(operator) = SignedIn::from_request_parts(&mut parts, state).await?;
        let refused = |e: ConsoleError| crate::html::error_page(Some(&operator), &e);
        let Form(fields) =
            Form::<HashMap<String, String>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(|e| refused(e.into()))?;
        operator
            .verify_csrf(fields.get("csrf").map(String::as_str))
            .map_err(refused)?;
        Ok(CsrfForm { operator, fields })
    }
}

/// An event slug from a path, unknown events and malformed slugs alike a 404.
pub(crate) fn event_slug(s: &str) -> Result<EventSlug, ConsoleError> {
    EventSlug::parse(s).map_err(|_| orders::Error::NotFound("event").into())
}

/// The event, if it exists and this operator may see it (hosts: only their events).
pub(crate) async fn visible_event(
    db: &PgPool,
    operator: &Operator,
    event: &str,
) -> Result<(EventSlug, orders::events::Event), ConsoleError> {
    let slug = event_slug(event)?;
    let found = orders::events::by_slug(db, slug.as_str())
        .await?
        .filter(|e| operator.may_see(e.id))
        .ok_or(orders::Error::NotFound("event"))?;
    Ok((slug, found))
}
