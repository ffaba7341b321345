//! People: the admin's page for who may use the console. An admin invites someone by
//! email, chooses their role and, for a host, the events they see; later changes which
//! events a host sees. No SQL, no command line.
//!
//! An invitation is a link the admin hands on (shown once, kept only as a hash) with
//! which the person chooses their own password within a week: the admin never knows
//! it, and until then the account cannot sign in.
//!
//! Hooks for tests: `table#people` (one row per account, `td.events` the host's events,
//! `form.host-events` to change them), `form#invite` (`email`, `name`, `role`,
//! `event:{id}` checkboxes), `#invite-link` (the link, once); `/console/invite/{token}`
//! with `form#accept` (`password`).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ConsoleError;
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{CsrfForm, Operator, Role, SignedIn};
use crate::html;
use crate::pages::{Flash, Retry, urlencode};
use crate::sessions::{self, Invitation};

/// An account as the list shows it.
#[derive(Serialize)]
struct Person {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    host: bool,
    /// The host's events, by title.
    events: Vec<String>,
    event_ids: Vec<Uuid>,
    /// Invited, and the invitation not taken up yet.
    invited: bool,
    disabled: bool,
}

/// An event a host can be given.
#[derive(Serialize)]
struct Choice {
    id: Uuid,
    title: String,
    slug: String,
}

/// The page: everyone, the invitation form, and the token of an invitation just made
/// (its link is shown once); for anyone but an admin, the console's refusal page.
async fn shown(
    s: &AppState,
    op: &Operator,
    invited: Option<&str>,
    retry: Option<&Retry>,
    flash: &Flash,
) -> Response {
    match people(s, op).await {
        Ok((people, events)) => html::render_with(
            retry.map_or(StatusCode::OK, |r| r.status),
            "people.html",
            Some(op),
            context! {
                title => "People",
                people,
                events,
                invited,
                retry,
                flash => flash.view(),
                invite_days => sessions::INVITE_DAYS,
            },
        ),
        Err(e) => html::error_page(Some(op), &e),
    }
}

/// Every account, and the events a host can be given.
async fn people(s: &AppState, op: &Operator) -> Result<(Vec<Person>, Vec<Choice>), ConsoleError> {
    op.require(&[Role::Admin])?;
    let events: Vec<Choice> = orders::events::list(&s.db)
        .await?
        .into_iter()
        .map(|e| Choice {
            id: e.id,
            title: e.title,
            slug: e.slug,
        })
        .collect();
    let title_of: HashMap<Uuid, &str> = events.iter().map(|e| (e.id, e.title.as_str())).collect();
    let rows = sqlx::query!(
        r#"SELECT o.id, o.email, o.name, o.role, o.event_ids, o.disabled_at IS NOT NULL AS "disabled!",
                  EXISTS (SELECT 1 FROM operator_invites i WHERE i.operator_id = o.id
                          AND i.used_at IS NULL) AS "invited!"
           FROM operators o ORDER BY o.role, o.email"#
    )
    .fetch_all(&s.db)
    .await?;
    let people: Vec<Person> = rows
        .into_iter()
        .map(|r| Person {
            host: r.role == Role::Host.as_str(),
            events: r
                .event_ids
                .iter()
                .filter_map(|id| title_of.get(id).map(|t| (*t).to_owned()))
                .collect(),
            event_ids: r.event_ids,
            id: r.id,
            email: r.email,
            name: r.name,
            role: r.role,
            invited: r.invited,
            disabled: r.disabled,
        })
        .collect();
    Ok((people, events))
}

/// `GET /console/people` (admins).
pub async fn page(
    State(s): State<AppState>,
    SignedIn(operator): SignedIn,
    Query(flash): Query<Flash>,
) -> Response {
    shown(&s, &operator, None, None, &flash).await
}

/// The events ticked in a form (`event:{id}` boxes), each one that exists.
async fn ticked(s: &AppState, f: &CsrfForm) -> Result<Vec<Uuid>, ConsoleError> {
    let wanted: Vec<Uuid> = f
        .fields
        .keys()
        .filter_map(|k| k.strip_prefix("event:"))
        .map(|id| {
            id.parse()
                .map_err(|_| ConsoleError::Invalid("an event in the form is not an event".into()))
        })
        .collect::<Result<_, _>>()?;
    let known: Vec<Uuid> = orders::events::list(&s.db)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    if let Some(unknown) = wanted.iter().find(|id| !known.contains(id)) {
        return Err(ConsoleError::Invalid(format!(
            "there is no event {unknown}"
        )));
    }
    Ok(wanted)
}

/// `POST /console/people`: invites someone. Done: the page with the link, once (never in
/// a URL, where logs would keep it). Refused: the page with the reason and what was
/// typed; nothing is written.
pub async fn invite_form(State(s): State<AppState>, f: CsrfForm) -> Response {
    let op = &f.operator;
    let result = async {
        op.require(&[Role::Admin])?;
        let role = Role::parse(f.get("role").unwrap_or("")).ok_or_else(|| {
            ConsoleError::Invalid("choose a role: admin, operator or host".into())
        })?;
        // Only a host is limited to some events; the others see all.
        let events = if role == Role::Host {
            ticked(&s, &f).await?
        } else {
            Vec::new()
        };
        let mut tx = s.db.begin().await?;
        let who = Invitation {
            email: f.get("email").unwrap_or(""),
            name: f.get("name").unwrap_or(""),
            role,
            events: &events,
        };
        let (id, token) = sessions::invite(&mut tx, &who, &op.label()).await?;
        let after = serde_json::json!({"role": role.as_str(), "events": events});
        let entry = Entry {
            action: "operator.invite",
            event_id: None,
            subject: &id.to_string(),
            before: None,
            after: Some(after),
            reason: None,
        };
        audit::record(&mut tx, op, entry).await?;
        tx.commit().await?;
        Ok::<_, ConsoleError>(token)
    }
    .await;
    match result {
        Ok(token) => shown(&s, op, Some(&token), None, &Flash::none()).await,
        Err(e) => {
            let retry = Retry::new("invite", &e, f.fields.clone());
            shown(&s, op, None, Some(&retry), &Flash::none()).await
        }
    }
}

/// `POST /console/people/{id}/events`: the events a host sees.
pub async fn events_form(State(s): State<AppState>, Path(id): Path<Uuid>, f: CsrfForm) -> Response {
    let op = &f.operator;
    let result = async {
        op.require(&[Role::Admin])?;
        let events = ticked(&s, &f).await?;
        let mut tx = s.db.begin().await?;
        // The old list comes back from the same statement, for the audit row.
        let before = sqlx::query_scalar!(
            r#"UPDATE operators o SET event_ids = $2
               FROM (SELECT id, event_ids FROM operators WHERE id = $1 AND role = 'host' FOR UPDATE) old
               WHERE o.id = old.id RETURNING old.event_ids"#,
            id,
            &events
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(orders::Error::NotFound("host"))?;
        let entry = Entry {
            action: "operator.host_events",
            event_id: None,
            subject: &id.to_string(),
            before: Some(serde_json::json!({ "events": before })),
            after: Some(serde_json::json!({ "events": events })),
            reason: None,
        };
        audit::record(&mut tx, op, entry).await?;
        tx.commit().await?;
        Ok::<_, ConsoleError>(())
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&format!(
            "/console/people?done={}",
            urlencode("the host's events are saved")
        ))
        .into_response(),
        Err(e) => {
            let retry = Retry::new(format!("events:{id}"), &e, f.fields.clone());
            shown(&s, op, None, Some(&retry), &Flash::none()).await
        }
    }
}

/// `GET /console/invite/{token}`: the invited person chooses their password.
pub async fn accept_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    accept_html(&s, &token, StatusCode::OK, None).await
}

async fn accept_html(
    s: &AppState,
    token: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    match sessions::invited(&s.db, token).await {
        Ok(Some(name)) => html::render_with(
            status,
            "invite.html",
            None,
            context! { title => "Choose your password", name, error },
        ),
        Ok(None) => html::message(
            StatusCode::NOT_FOUND,
            "This invitation does not work",
            None,
            "It was used already, or it is more than a week old. Ask the admin who invited you for a new one.",
        ),
        Err(e) => html::error_page(None, &e),
    }
}

#[derive(Deserialize)]
pub struct AcceptForm {
    pub password: String,
}

/// `POST /console/invite/{token}`: the password, once; then to the sign-in page.
pub async fn accept_form(
    State(s): State<AppState>,
    Path(token): Path<String>,
    Form(f): Form<AcceptForm>,
) -> Response {
    match sessions::accept_invite(&s.db, &token, &f.password).await {
        Ok(()) => Redirect::to("/console/login").into_response(),
        Err(ConsoleError::Invalid(why)) => {
            accept_html(&s, &token, StatusCode::UNPROCESSABLE_ENTITY, Some(&why)).await
        }
        Err(e) => html::error_page(None, &e),
    }
}
