//! The admission check on protected paths.
//!
//! A valid admission token passes without touching Redis (it needs only the public
//! key), so admitted buyers keep buying even while Redis is briefly unreachable. Without
//! one, only an event whose queue is known to be `off` passes; an unknown event or an
//! unreadable queue fails closed: pages go to the waiting room, API calls get a 401.
//! Which of the two let a request through matters to the caller: with the queue off
//! nothing ties a request to one buyer, so writes that pass that way are limited per
//! client ([`crate::limits::Limits::holds_without_admission`]).

use waitroom::EventSlug;
use waitroom::settings::Mode;
use waitroom::tokens::{TokenError, TokenVerifier};

use crate::EdgeError;
use crate::reply::{Reply, admission_cookie_name};
use crate::snapshots::Snapshots;
use crate::waiting::Visit;

pub enum Verdict {
    /// A valid admission for this event.
    Admitted,
    /// No valid admission, but the queue is off.
    Open,
    Deny(Reply),
}

pub async fn check(
    snapshots: &Snapshots,
    verifier: &TokenVerifier,
    event: &EventSlug,
    page: bool,
    visit: Visit<'_>,
) -> Verdict {
    let token = visit.token(&admission_cookie_name(event));
    let refusal = match token.map(|t| verifier.verify_admission(t, event)) {
        Some(Ok(_)) => return Verdict::Admitted,
        Some(Err(e)) => e,
        None => TokenError::Missing,
    };
    if let Ok(s) = snapshots.get(event).await
        && s.settings.mode == Mode::Off
    {
        return Verdict::Open;
    }
    Verdict::Deny(if page {
        Reply::redirect(302, &format!("/queue/{event}"))
    } else {
        EdgeError::Token(refusal).reply()
    })
}
