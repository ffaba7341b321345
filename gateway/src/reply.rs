//! What the edge answers, before it is written to a Pingora session.

use bytes::Bytes;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: body.into(),
        }
    }

    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Self::new(
            status,
            "application/json",
            serde_json::to_vec(value).expect("serialisable reply"),
        )
    }

    pub fn html(status: u16, body: String) -> Self {
        Self::new(status, "text/html; charset=utf-8", body)
    }

    pub fn redirect(status: u16, location: &str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            format!("See {location}\n"),
        )
        .header("Location", location)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A `Set-Cookie` value for a token cookie: HttpOnly, SameSite=Lax, `Secure` over TLS.
pub fn token_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Finds one cookie's value in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

pub fn queue_cookie_name(event: &waitroom::EventSlug) -> String {
    format!("fg_q_{event}")
}

pub fn admission_cookie_name(event: &waitroom::EventSlug) -> String {
    format!("fg_a_{event}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_only() {
        let h = Some("a=1; fg_q_demo=tok; fg_q_demo2=other");
        assert_eq!(cookie(h, "fg_q_demo"), Some("tok"));
        assert_eq!(cookie(h, "fg_q_dem"), None);
        assert_eq!(cookie(None, "a"), None);
    }

    #[test]
    fn token_cookies_are_http_only_and_secure_over_tls() {
        let c = token_cookie("fg_a_x", "t", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Secure"));
        assert!(!token_cookie("fg_a_x", "t", 60, false).contains("Secure"));
    }
}
