//! Whose email addresses an operator sees in full. Staff (admins, operators) always do:
//! they correct and resend. A host sees a buyer's or ticket holder's address masked
//! (`j•••@example.org`) unless the event's owner let its hosts see them
//! (`events.hosts_see_buyer_emails`). Every view that shows an address (search, an
//! order and its timeline, the incident view, an event's lists and exports, the
//! audit log) passes it through [`Shown`] here, on the server: an address a host may
//! not read never reaches their browser, so no template or script can leak it.

use std::borrow::Cow;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Operator, Role};

/// How addresses are shown to one operator for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Full,
    Masked,
}

impl Shown {
    /// For `op`, on an event whose owner does (or does not) let hosts see addresses.
    pub fn to(op: &Operator, hosts_see_buyer_emails: bool) -> Shown {
        if op.role == Role::Host && !hosts_see_buyer_emails {
            Shown::Masked
        } else {
            Shown::Full
        }
    }

    /// For `op`, on the event `event_id` (one small read; staff need none).
    pub async fn for_event(
        db: &PgPool,
        op: &Operator,
        event_id: Uuid,
    ) -> Result<Shown, sqlx::Error> {
        if op.role != Role::Host {
            return Ok(Shown::Full);
        }
        let allowed = sqlx::query_scalar!(
            "SELECT hosts_see_buyer_emails FROM events WHERE id = $1",
            event_id
        )
        .fetch_optional(db)
        .await?
        .unwrap_or(false);
        Ok(Shown::to(op, allowed))
    }

    /// An address as this operator may see it.
    pub fn email(self, address: &str) -> String {
        match self {
            Shown::Full => address.to_owned(),
            Shown::Masked => mask(address),
        }
    }

    /// Free text (a timeline sentence, a mail server's answer, an email's HTML) with
    /// every address in it as this operator may see it.
    pub fn text(self, text: &str) -> Cow<'_, str> {
        match self {
            Shown::Full => Cow::Borrowed(text),
            Shown::Masked => mask_in(text),
        }
    }

    /// Like [`Shown::text`] for an optional text, in place.
    pub fn text_in(self, text: &mut Option<String>) {
        if let Some(t) = text {
            *t = self.text(t).into_owned();
        }
    }

    /// Every string in a JSON value (a row's `before` / `after`), in place.
    pub fn json(self, v: &mut Value) {
        if self == Shown::Full {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(masked) = mask_in(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.json(i)),
            _ => {}
        }
    }
}

/// The events `op` sees addresses of masked: none for staff; for a host, those of
/// their events that keep addresses from hosts (the search hides what it matched in
/// those addresses by substring, see `search`).
pub async fn masked_events(db: &PgPool, op: &Operator) -> Result<Vec<Uuid>, sqlx::Error> {
    if op.role != Role::Host || op.events.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar!(
        "SELECT id FROM events WHERE id = ANY($1) AND NOT hosts_see_buyer_emails",
        &op.events
    )
    .fetch_all(db)
    .await
}

/// `jane.doe@example.org` → `j•••@example.org`: the first character of the local part,
/// enough to tell two buyers apart on a list, and the domain, enough to see a typo in
/// it; the rest is hidden. Text without an `@` is hidden whole.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// What may stand in an address's local part and domain, as far as finding one in
/// text goes (HTML escapes like `&lt;` and `mailto:` end them).
fn local_char(c: char) -> bool {
    c.is_alphanumeric() || "._%+-'!#$*/=?^`{|}~".contains(c)
}

fn domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

/// `text` with each address in it masked as [`mask`] does; borrowed when there is none.
pub fn mask_in(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    // `done`: how much of `text` is in `out` already.
    let mut done = 0;
    for (at, _) in text.match_indices('@') {
        if at < done {
            continue;
        }
        let before = &text[done..at];
        let local_len: usize = before
            .chars()
            .rev()
            .take_while(|c| local_char(*c))
            .map(char::len_utf8)
            .sum();
        let after = &text[at + 1..];
        let mut domain_len: usize = after
            .chars()
            .take_while(|c| domain_char(*c))
            .map(char::len_utf8)
            .sum();
        // A sentence's full stop after an address is not part of its domain.
        while after[..domain_len].ends_with('.') {
            domain_len -= 1;
        }
        if local_len == 0 || domain_len == 0 {
            continue;
        }
        let start = at - local_len;
        out.push_str(&text[done..start]);
        out.push_str(&mask(&text[start..at + 1 + domain_len]));
        done = at + 1 + domain_len;
    }
    if done == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(role: Role) -> Operator {
        Operator {
            token_id: Uuid::nil(),
            name: "x".into(),
            role,
            events: vec![],
            csrf: None,
        }
    }

    #[test]
    fn an_address_keeps_its_first_character_and_domain() {
        assert_eq!(mask("jane.doe@example.org"), "j•••@example.org");
        assert_eq!(mask("Ünal@example.org"), "Ü•••@example.org");
        assert_eq!(mask("@example.org"), "•••@example.org");
        assert_eq!(mask("not an address"), "•••");
    }

    #[test]
    fn addresses_in_text_are_masked_and_the_rest_is_kept() {
        assert_eq!(
            mask_in("Address corrected from a@x.org to bob.b@y.example."),
            "Address corrected from a•••@x.org to b•••@y.example."
        );
        assert_eq!(
            mask_in("<a href=\"mailto:jo@x.org\">&lt;jo@x.org&gt;</a>"),
            "<a href=\"mailto:j•••@x.org\">&lt;j•••@x.org&gt;</a>"
        );
        assert!(matches!(mask_in("no address @ all"), Cow::Borrowed(_)));
        assert_eq!(
            mask_in("550 <ada@ex.org>: unknown"),
            "550 <a•••@ex.org>: unknown"
        );
    }

    #[test]
    fn only_hosts_of_an_event_that_keeps_addresses_see_them_masked() {
        assert_eq!(Shown::to(&op(Role::Host), false), Shown::Masked);
        assert_eq!(Shown::to(&op(Role::Host), true), Shown::Full);
        assert_eq!(Shown::to(&op(Role::Operator), false), Shown::Full);
        assert_eq!(Shown::to(&op(Role::Admin), false), Shown::Full);
        let mut v = serde_json::json!({"email": "ab@c.org", "n": 1, "l": ["x@y.z"]});
        Shown::Masked.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"email": "a•••@c.org", "n": 1, "l": ["x•••@y.z"]})
        );
        assert_eq!(Shown::Full.email("ab@c.org"), "ab@c.org");
    }
}
