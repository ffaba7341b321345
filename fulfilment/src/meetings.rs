//! Where a ticket holder is sent when their link is valid. Buyers never see these URLs
//! in email; `/join` redirects to them, so a forwarded email is only as good as the
//! ticket behind it.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use platform::env::Secret;

use crate::Error;

/// Who is joining, for providers that register attendees.
pub struct Attendee<'a> {
    pub ticket_id: Uuid,
    pub name: &'a str,
    pub email: &'a str,
}

#[async_trait]
pub trait MeetingProvider: Send + Sync {
    /// The URL this attendee should be redirected to.
    async fn join_url(
        &self,
        event_id: Uuid,
        meeting: &Value,
        attendee: &Attendee<'_>,
    ) -> Result<String, Error>;
}

/// Jitsi needs no API: an unguessable room per event (HMAC of the event id), with the
/// attendee's display name prefilled.
pub struct Jitsi {
    pub base: String,
    pub secret: Secret,
}

#[async_trait]
impl MeetingProvider for Jitsi {
    async fn join_url(
        &self,
        event_id: Uuid,
        meeting: &Value,
        attendee: &Attendee<'_>,
    ) -> Result<String, Error> {
        let room = match meeting.get("room").and_then(Value::as_str) {
            Some(room) => room.to_owned(),
            None => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes()).expect("key");
                mac.update(b"jitsi-room:");
                mac.update(event_id.as_bytes());
                format!(
                    "Floodgate-{}",
                    &hex::encode(mac.finalize().into_bytes())[..24]
                )
            }
        };
        let name: String = attendee
            .name
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ')
            .collect();
        Ok(format!(
            "{}/{room}#userInfo.displayName=%22{}%22",
            self.base.trim_end_matches('/'),
            name.replace(' ', "%20")
        ))
    }
}

/// Zoom: registers the attendee for the meeting (registrants API) and sends them to
/// their personal join URL, so Zoom's own attendee list matches the ticket list.
pub struct Zoom {
    pub api_base: String,
    pub token: Option<Secret>,
    pub http: reqwest::Client,
}

#[async_trait]
impl MeetingProvider for Zoom {
    async fn join_url(
        &self,
        _event_id: Uuid,
        meeting: &Value,
        attendee: &Attendee<'_>,
    ) -> Result<String, Error> {
        let id = meeting
            .get("meeting_id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| Error::Meeting("zoom meeting has no meeting_id".into()))?;
        let token = self
            .token
            .as_ref()
            .ok_or_else(|| Error::Meeting("ZOOM_API_TOKEN is not configured".into()))?;
        let (first, last) = attendee
            .name
            .split_once(' ')
            .unwrap_or((attendee.name, "-"));
        let resp = self
            .http
            .post(format!("{}/meetings/{id}/registrants", self.api_base.trim_end_matches('/')))
            .bearer_auth(token.expose())
            .json(&serde_json::json!({"email": attendee.email, "first_name": first, "last_name": last}))
            .send()
            .await
            .map_err(|e| Error::Meeting(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(Error::Meeting(format!("zoom answered {}", resp.status())));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| Error::Meeting(e.to_string()))?;
        body.get("join_url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Meeting("zoom gave no join_url".into()))
    }
}

/// Google Meet has no per-attendee links without the Calendar API: the meeting's URL,
/// kept behind `/join` so only valid tickets are sent there.
pub struct GoogleMeet;

#[async_trait]
impl MeetingProvider for GoogleMeet {
    async fn join_url(
        &self,
        _event_id: Uuid,
        meeting: &Value,
        _attendee: &Attendee<'_>,
    ) -> Result<String, Error> {
        meeting
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://meet.google.com/"))
            .map(str::to_owned)
            .ok_or_else(|| Error::Meeting("google meet needs a meet.google.com url".into()))
    }
}

/// Picks the provider an event's meeting names.
pub struct Meetings {
    pub jitsi: Jitsi,
    pub zoom: Zoom,
    pub google_meet: GoogleMeet,
}

impl Meetings {
    pub async fn join_url(
        &self,
        event_id: Uuid,
        meeting: &Value,
        attendee: &Attendee<'_>,
    ) -> Result<String, Error> {
        let provider: &dyn MeetingProvider = match meeting.get("provider").and_then(Value::as_str) {
            Some("zoom") => &self.zoom,
            Some("google_meet") => &self.google_meet,
            _ => &self.jitsi,
        };
        provider.join_url(event_id, meeting, attendee).await
    }
}
