//! What a buyer tells us about themselves, parsed once at the edge of the service so
//! the rest of the crate never re-validates it.

use std::fmt;

use crate::Error;

/// A deliverable email address (syntax per RFC 5322 as checked by `email_address`),
/// at most 254 characters, with a dotted domain and no whitespace or control
/// characters (RFC 5322 allows tabs and spaces inside a quoted local part; no buyer
/// needs them, and they would travel on into SMTP headers and pages).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let dotted_domain = s.rsplit_once('@').is_some_and(|(_, d)| d.contains('.'));
        if s.len() > 254
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
            || !dotted_domain
            || !email_address::EmailAddress::is_valid(s)
        {
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
        for good in [
            "ada@example.org",
            "ada.lovelace@example.org",
            "o'brien+tickets@mail.example.co.uk",
            "  ada@example.org  ",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "a b@example.org",
            "ada@localhost",
            // A dot in the local part is not a dotted domain.
            "ada.lovelace@localhost",
            // Quoted local parts may hold whitespace and control characters per RFC.
            "\":\t\t.!\"@example.org",
            "\"a b\"@example.org",
            "\"a\\\r\\\nb\"@example.org",
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
