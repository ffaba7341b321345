//! The waiting room at the edge: join, status and the page, as request → reply logic
//! independent of Pingora so it can be reasoned about (and tested) on its own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use waitroom::EventSlug;
use waitroom::queue::{Claim, Joined, Snapshot, Status};
use waitroom::settings::Mode;
use waitroom::tokens::{
    AdmissionClaims, QueueClaims, TokenError, TokenKind, TokenSigner, audience,
};

use crate::EdgeError;
use crate::arrivals::Arrivals;
use crate::limits::Limits;
use crate::lottery::Lotteries;
use crate::page;
use crate::reply::{Reply, admission_cookie_name, cookie, queue_cookie_name, token_cookie};
use crate::snapshots::Snapshots;
use crate::verified::VerifiedQueueTokens;

/// What the edge knows about a request that matters to the waiting room.
#[derive(Clone, Copy, Debug)]
pub struct Visit<'a> {
    /// Who is asking (see [`crate::limits::client_ip`]): a new place is charged to it.
    pub client: IpAddr,
    pub cookie: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

impl<'a> Visit<'a> {
    fn bearer(&self) -> Option<&'a str> {
        self.authorization?
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// A token from `Authorization: Bearer` or else from the named cookie.
    pub fn token(&self, cookie_name: &str) -> Option<&'a str> {
        self.bearer().or_else(|| cookie(self.cookie, cookie_name))
    }
}

pub struct Waiting {
    pub snapshots: Arc<Snapshots>,
    /// The published pre-queue draws.
    pub lotteries: Lotteries,
    /// Every new place is charged to the join limit here, whichever request takes it.
    pub limits: Arc<Limits>,
    /// New places, taken in batches (see [`crate::arrivals`]).
    pub arrivals: Arrivals,
    /// Signs admission tokens (EdDSA: orders verifies them with the public key).
    pub signer: TokenSigner,
    /// Issues and verifies queue tokens (HMAC, the gateways' shared key), remembering
    /// the good ones (see [`crate::verified`]); holds the admissions' verifier.
    pub queue_tokens: VerifiedQueueTokens,
    pub queue_token_ttl: Duration,
    pub secure_cookies: bool,
}

/// Where a visitor stands after a join or a poll.
enum Place {
    /// The queue does not take places now (off, closed, sold out).
    NotQueued(Mode),
    InLine {
        status: Status,
        queue_token: String,
        /// The queue token changed (new, or re-issued after the draw or a lapse).
        fresh: bool,
        /// Share of the line ahead at arrival admitted since (for the progress bar).
        progress_percent: u8,
        admission: Option<(String, i64)>,
    },
}

fn not_queued_state(mode: Mode) -> &'static str {
    match mode {
        Mode::Off => "open",
        Mode::SoldOut => "sold_out",
        Mode::Closed => "closed",
        Mode::Paused => "paused",
        Mode::Prequeue => "prequeue",
        Mode::On => "waiting",
    }
}

impl Waiting {
    pub async fn join(&self, event: &EventSlug, visit: Visit<'_>) -> Result<Reply, EdgeError> {
        let place = self.place(event, visit, true).await?;
        Ok(self.json_reply(event, place, true))
    }

    pub async fn status(&self, event: &EventSlug, visit: Visit<'_>) -> Result<Reply, EdgeError> {
        let place = self.place(event, visit, false).await?;
        Ok(self.json_reply(event, place, false))
    }

    /// The waiting page. A visitor without a valid place joins on arrival, so the page
    /// works in one request even with JavaScript off.
    pub async fn page(&self, event: &EventSlug, visit: Visit<'_>) -> Result<Reply, EdgeError> {
        let snapshot = self.snapshots.get(event).await?;
        let place = self.place(event, visit, true).await?;
        let event_url = format!("/e/{event}");
        let reply = match &place {
            Place::NotQueued(Mode::Off) => Reply::redirect(303, &event_url),
            Place::InLine {
                admission: Some(_), ..
            } => Reply::redirect(303, &event_url),
            Place::NotQueued(mode) => Reply::html(
                200,
                page::render(&page::View {
                    event,
                    title: snapshot.title.as_deref(),
                    state: not_queued_state(*mode),
                    position: None,
                    ahead: None,
                    eta: None,
                    progress_percent: 0,
                    retry_after_ms: 30_000,
                }),
            ),
            Place::InLine {
                status,
                progress_percent,
                ..
            } => Reply::html(
                200,
                page::render(&page::View {
                    event,
                    title: snapshot.title.as_deref(),
                    state: status.state,
                    position: status.position,
                    ahead: status.ahead,
                    eta: status.eta_min_seconds.zip(status.eta_max_seconds),
                    progress_percent: *progress_percent,
                    retry_after_ms: status.retry_after_ms,
                }),
            ),
        };
        Ok(self.with_cookies(event, reply, &place, false))
    }

    /// The public pre-queue draw, for anyone to verify; from memory (see
    /// [`crate::lottery`]).
    pub async fn lottery(&self, event: &EventSlug) -> Result<Reply, EdgeError> {
        let snapshot = self.snapshots.get(event).await?;
        let body = self.lotteries.get(event, &snapshot).await?;
        Ok(Reply::new(200, "application/json", body))
    }

    async fn place(
        &self,
        event: &EventSlug,
        visit: Visit<'_>,
        join_if_needed: bool,
    ) -> Result<Place, EdgeError> {
        let snapshot = self.snapshots.get(event).await?;
        let presented = visit.token(&queue_cookie_name(event));
        let verified = match presented.map(|t| self.queue_tokens.verify(t, event)) {
            Some(Ok(claims)) => Some((claims, presented.unwrap_or_default().to_owned())),
            // Joining again without a usable token takes a new place at the back;
            // a status poll with a bad token is refused.
            Some(Err(e)) if !join_if_needed => return Err(e.into()),
            None if !join_if_needed => return Err(TokenError::Missing.into()),
            _ => None,
        };
        let (mut claims, mut token, mut fresh) = match verified {
            Some((claims, token)) => (claims, token, false),
            None => match self.new_place(event, visit.client, snapshot.head).await? {
                Ok((claims, token)) => (claims, token, true),
                Err(mode) => return Ok(Place::NotQueued(mode)),
            },
        };

        if let Some(index) = claims.pq {
            let drawn = if snapshot.settings.mode == Mode::Prequeue {
                None
            } else {
                self.snapshots.room().drawn_seq(event, index).await?
            };
            match drawn {
                None => {
                    return Ok(Place::InLine {
                        status: snapshot.prequeue_status(Utc::now()),
                        queue_token: token,
                        fresh,
                        progress_percent: 0,
                        admission: None,
                    });
                }
                Some(seq) => {
                    claims.pq = None;
                    claims.seq = Some(seq);
                    token = self.queue_tokens.issue(&claims);
                    fresh = true;
                }
            }
        }

        let mut seq = claims.seq.ok_or(TokenError::Malformed)?;
        if !fresh && seq > snapshot.tail {
            // A place handed out before Redis lost the queue, past what the restore
            // put back (see waitroom::recovery): move the counter beyond it before a
            // newcomer is given the same place. Rare: a normal place is older than
            // the snapshot that counts it.
            self.snapshots.room().raise_counters(event, 0, seq).await?;
        }
        let mut status = snapshot.status_of(seq);
        let mut admission = None;
        if status.state == "admitted" {
            let ttl = snapshot.settings.admission_ttl_seconds;
            match self.snapshots.room().claim(event, seq, ttl).await? {
                Claim::Granted { jti, exp } => {
                    admission = Some((self.admission_token(event, &claims, seq, jti, exp), exp));
                }
                Claim::Expired => {
                    // The admission lapsed unused: a new place at the back, not a refusal.
                    match self.new_place(event, visit.client, snapshot.head).await? {
                        Ok((c, t)) => {
                            claims = c;
                            token = t;
                            fresh = true;
                            seq = claims.seq.unwrap_or(u64::MAX);
                            status = snapshot.status_of(seq);
                        }
                        Err(mode) => return Ok(Place::NotQueued(mode)),
                    }
                }
            }
        }
        Ok(Place::InLine {
            status,
            queue_token: token,
            fresh,
            progress_percent: progress(&snapshot, seq, claims.from),
            admission,
        })
    }

    /// Takes a new place; `Err(mode)` when the queue takes no places right now.
    ///
    /// The one door to a new place, so the join limit is charged here: a page load
    /// without a cookie, a join, a poll whose admission lapsed all take a place, and a
    /// script must not find one of them a cheaper way in than the others.
    async fn new_place(
        &self,
        event: &EventSlug,
        client: IpAddr,
        head: u64,
    ) -> Result<Result<(QueueClaims, String), Mode>, EdgeError> {
        self.limits.check(&self.limits.join, client)?;
        let visitor = uuid::Uuid::new_v4().simple().to_string();
        let shared = self.limits.shared_bucket(client);
        let (seq, pq) = match self.arrivals.join(event, visitor.clone(), shared).await {
            Ok(Joined::Limited { retry_after_secs }) => {
                return Err(EdgeError::RateLimited { retry_after_secs });
            }
            Ok(Joined::Queued { seq }) => (Some(seq), None),
            Ok(Joined::Prequeued { index }) => (None, Some(index)),
            Ok(Joined::NotQueued(mode)) => return Ok(Err(mode)),
            // The caller holds a snapshot of this event, so Redis has lost it (see
            // `Snapshots::refresh`): no place can be handed out until it is restored.
            Err(EdgeError::UnknownEvent) => return Ok(Err(Mode::Paused)),
            Err(e) => return Err(e),
        };
        let now = Utc::now().timestamp();
        let claims = QueueClaims {
            kind: TokenKind::Queue,
            aud: audience(event),
            evt: event.clone(),
            sub: visitor,
            seq,
            pq,
            from: seq.map(|_| head),
            iat: now,
            exp: now + self.queue_token_ttl.as_secs() as i64,
        };
        let token = self.queue_tokens.issue(&claims);
        Ok(Ok((claims, token)))
    }

    fn admission_token(
        &self,
        event: &EventSlug,
        queue: &QueueClaims,
        seq: u64,
        jti: String,
        exp: i64,
    ) -> String {
        self.signer.sign(&AdmissionClaims {
            kind: TokenKind::Admission,
            aud: audience(event),
            evt: event.clone(),
            sub: queue.sub.clone(),
            jti,
            seq,
            iat: Utc::now().timestamp(),
            exp,
        })
    }

    fn json_reply(&self, event: &EventSlug, place: Place, always_send_queue_token: bool) -> Reply {
        let body = match &place {
            Place::NotQueued(mode) => serde_json::json!({
                "state": not_queued_state(*mode),
                "position": null,
                "ahead": null,
                "eta_seconds": null,
                "eta_min_seconds": null,
                "eta_max_seconds": null,
                "retry_after_ms": 30_000,
            }),
            Place::InLine {
                status,
                queue_token,
                fresh,
                admission,
                progress_percent,
                ..
            } => {
                let mut v = serde_json::to_value(status).expect("status serialises");
                v["progress_percent"] = (*progress_percent).into();
                if always_send_queue_token || *fresh {
                    v["queue_token"] = queue_token.clone().into();
                }
                if let Some((token, _)) = admission {
                    v["admission_token"] = token.clone().into();
                }
                v
            }
        };
        self.with_cookies(
            event,
            Reply::json(200, &body),
            &place,
            always_send_queue_token,
        )
    }

    fn with_cookies(
        &self,
        event: &EventSlug,
        mut reply: Reply,
        place: &Place,
        always: bool,
    ) -> Reply {
        if let Place::InLine {
            queue_token,
            fresh,
            admission,
            ..
        } = place
        {
            if always || *fresh {
                reply = reply.header(
                    "Set-Cookie",
                    token_cookie(
                        &queue_cookie_name(event),
                        queue_token,
                        self.queue_token_ttl.as_secs(),
                        self.secure_cookies,
                    ),
                );
            }
            if let Some((token, exp)) = admission {
                let max_age = (exp - Utc::now().timestamp()).max(0) as u64;
                reply = reply.header(
                    "Set-Cookie",
                    token_cookie(
                        &admission_cookie_name(event),
                        token,
                        max_age,
                        self.secure_cookies,
                    ),
                );
            }
        }
        reply
    }
}

/// Share of the line ahead of this visitor when they joined that has been admitted
/// since: someone who just joined at the back starts at 0 %, however far the queue has
/// come. `from` is the head the gateway saw at the join (in the queue token); a place
/// without one (drawn in the pre-queue lottery) counts from the start of the queue.
fn progress(snapshot: &Snapshot, seq: u64, from: Option<u64>) -> u8 {
    let from = from.unwrap_or(0).min(seq.saturating_sub(1));
    let done = snapshot.head.clamp(from, seq) - from;
    match seq - from {
        0 => 0,
        line => (done * 100 / line) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(head: u64) -> Snapshot {
        Snapshot::at_rest(Default::default(), head, 10_000)
    }

    #[test]
    fn progress_counts_from_the_visitors_own_join() {
        // Joined at place 1,000 when 900 were already in: nothing moved yet is 0 %.
        assert_eq!(progress(&at(900), 1_000, Some(900)), 0);
        assert_eq!(progress(&at(950), 1_000, Some(900)), 50);
        assert_eq!(progress(&at(1_000), 1_000, Some(900)), 100);
        // A head the gateway saw late (behind the one at the join) is no negative.
        assert_eq!(progress(&at(850), 1_000, Some(900)), 0);
        // No join head in the token: from the start of the queue.
        assert_eq!(progress(&at(500), 1_000, None), 50);
        assert_eq!(progress(&at(0), 1, Some(0)), 0);
    }
}
