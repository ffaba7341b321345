use std::fmt;

use serde::{Deserialize, Serialize};

/// An event's public identifier: lowercase letters, digits and dashes, 1..=64 chars.
///
/// It is embedded in Redis keys (inside a `{hash tag}`), URLs and token audiences, so
/// anything outside that alphabet is refused at the edge rather than escaped later.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventSlug(String);

impl EventSlug {
    pub fn parse(s: &str) -> Result<Self, InvalidSlug> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidSlug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("an event slug is 1 to 64 lowercase letters, digits or dashes")]
pub struct InvalidSlug;

impl TryFrom<String> for EventSlug {
    type Error = InvalidSlug;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EventSlug> for String {
    fn from(s: EventSlug) -> String {
        s.0
    }
}

impl fmt::Display for EventSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_outside_the_alphabet_are_refused() {
        assert!(EventSlug::parse("demo-2026").is_ok());
        for bad in ["", "Demo", "a b", "a}b", "-x", "a:b", &"x".repeat(65)] {
            assert!(EventSlug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
