//! Request parameters the way Stripe takes them: form-encoded with bracketed keys
//! (`amount=1500&metadata[order_id]=...`) or, as a convenience Stripe does not
//! offer, JSON (`{"amount":1500,"metadata":{"order_id":"..."}}`).
//!
//! Both are flattened to one ordered key → string map, nested JSON objects becoming
//! bracketed keys. So the two encodings of one request are the *same* request — an
//! `Idempotency-Key` replay compares equal across them — and the handlers read one
//! shape.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::Value;

use crate::Error;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn from_form(body: &[u8]) -> Result<Self, Error> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| Error::BadRequest(format!("Invalid form-encoded body: {e}")))?;
        Ok(Self(pairs.into_iter().collect()))
    }

    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("Invalid JSON body: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(Error::BadRequest("The JSON body must be an object.".into()));
        };
        let mut out = BTreeMap::new();
        for (key, value) in fields {
            flatten(key, value, &mut out);
        }
        Ok(Self(out))
    }

    /// Removes and returns one parameter.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Removes a required parameter, or says it is missing.
    pub fn require(&mut self, key: &str) -> Result<String, Error> {
        self.take(key).ok_or_else(|| Error::missing(key))
    }

    /// Removes every `prefix[key]` parameter and returns them as `key → value`
    /// (`metadata[order_id]=x` → `order_id → x`).
    pub fn take_map(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let open = format!("{prefix}[");
        let keys: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with(&open) && k.ends_with(']'))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let value = self.0.remove(&k)?;
                Some((k[open.len()..k.len() - 1].to_owned(), value))
            })
            .collect()
    }

    /// Drops parameters Stripe accepts that change nothing here (`expand[]`,
    /// `automatic_payment_methods[enabled]`, ...), plain or bracketed.
    pub fn ignore(&mut self, names: &[&str]) {
        self.0.retain(|k, _| {
            let base = k.split('[').next().unwrap_or(k);
            !names.contains(&base)
        });
    }

    /// Refuses whatever nobody took. Stripe refuses unknown parameters too, so a
    /// typo (`metadata.order_id`) fails in development instead of being dropped.
    pub fn finish(self) -> Result<(), Error> {
        match self.0.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(Error::invalid(
                &key,
                "parameter_unknown",
                format!("Received unknown parameter: {key}"),
            )),
        }
    }
}

fn flatten(key: String, value: Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                flatten(format!("{key}[{k}]"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten(format!("{key}[{i}]"), v, out);
            }
        }
        Value::String(s) => {
            out.insert(key, s);
        }
        // Stripe's form encoding unsets a value with an empty string; null is the
        // JSON spelling of the same thing.
        Value::Null => {
            out.insert(key, String::new());
        }
        other => {
            out.insert(key, other.to_string());
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge
            } else {
                Error::BadRequest(e.body_text())
            }
        })?;
        match content_type.as_deref() {
            Some("application/json") => Self::from_json(&body),
            Some("application/x-www-form-urlencoded") | None | Some("") => Self::from_form(&body),
            Some(other) => Err(Error::BadRequest(format!(
                "Unsupported content type {other}; send application/x-www-form-urlencoded or application/json."
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_json_flatten_to_the_same_params() {
        let form = Params::from_form(
            b"amount=1500&currency=eur&metadata[order_id]=o_1&return_url=https%3A%2F%2Fx.test%2Fo%3Fa%3D1",
        )
        .unwrap();
        let json = Params::from_json(
            br#"{"amount":1500,"currency":"eur","metadata":{"order_id":"o_1"},"return_url":"https://x.test/o?a=1"}"#,
        )
        .unwrap();
        assert_eq!(form, json);
    }

    #[test]
    fn takes_maps_and_refuses_leftovers() {
        let mut p = Params::from_form(b"metadata[a]=1&metadata[b]=2&expand[]=x&amount=3").unwrap();
        let meta = p.take_map("metadata");
        assert_eq!(meta.len(), 2);
        assert_eq!(meta["b"], "2");
        p.ignore(&["expand"]);
        assert_eq!(p.require("amount").unwrap(), "3");
        assert!(p.clone().finish().is_ok());
        let mut q = Params::from_form(b"amont=3").unwrap();
        assert!(q.require("amount").is_err());
        assert!(matches!(
            q.finish(),
            Err(Error::InvalidParam {
                code: "parameter_unknown",
                ..
            })
        ));
    }

    #[test]
    fn json_must_be_an_object() {
        assert!(Params::from_json(b"[1,2]").is_err());
        assert!(Params::from_json(b"{").is_err());
        assert_eq!(Params::from_json(b"").unwrap(), Params::default());
    }
}
