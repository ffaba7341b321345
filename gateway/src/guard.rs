//! The admission check on protected paths.
//!
//! A valid admission token passes without touching Redis (it needs only the public
//! key), so admitted buyers keep buying even while Redis is briefly unreachable. Without
//! one, only an event whose queue is known to be `off` passes; an unknown event or an
//! unreadable queue fails closed: pages go to the waiting room, API calls get a 401.

use waitroom::EventSlug;
use waitroom::settings::Mode;
use waitroom::tokens::{TokenError, TokenVerifier};

use crate::EdgeError;
use crate::reply::{Reply, admission_cookie_name};
use crate::snapshots::Snapshots;
use crate::waiting::Visit;

pub enum Verdict {
    Pass,
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
        Some(Ok(_)) => return Verdict::Pass,
        Some(Err(e)) => e,
        None => TokenError::Missing,
    };
    if let Ok(s) = snapshots.get(event).await
        && s.settings.mode == Mode::Off
    {
        return Verdict::Pass;
    }
    Verdict::Deny(if page {
        Reply::redirect(302, &format!("/queue/{event}"))
    } else {
        EdgeError::Token(refusal).reply()
    })
}
