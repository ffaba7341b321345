//! What a buyer tells us about themselves, parsed once at the edge of the service so
//! the rest of the crate never re-validates it.

use std::fmt;

use crate::Error;

/// A deliverable email address (syntax per RFC 5322 as checked by `email_address`),
/// at most 254 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.len() > 254 || !email_address::EmailAddress::is_valid(s) || !s.contains('.') {
            return Err(Error::Invalid("email is not a valid address".into()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Emails never go to logs: Debug shows only the domain.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("?", |(_, d)| d);
        write!(f, "Email(***@{domain})")
    }
}

/// A buyer's name as they want it on the ticket: 1 to 120 characters, no control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct BuyerName(String);

impl BuyerName {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > 120 || s.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "name must be 1 to 120 characters without control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BuyerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BuyerName(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_checked_and_never_printed() {
        assert!(Email::parse("ada@example.org").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "a b@example.org",
            "ada@localhost",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let e = Email::parse("ada@example.org").unwrap();
        assert_eq!(format!("{e:?}"), "Email(***@example.org)");
        assert!(BuyerName::parse("Ada Lovelace").is_ok());
        assert!(BuyerName::parse("  ").is_err());
        assert!(BuyerName::parse("a\u{0}b").is_err());
        assert!(!format!("{:?}", BuyerName::parse("Ada").unwrap()).contains("Ada"));
    }
}
