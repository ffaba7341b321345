//! Stripe's objects as the sandbox keeps them — payment intents, their charge,
//! refunds — the checked values inside them, and their JSON.
//!
//! Values are parsed once at the edge (`Amount::parse`, `Currency::parse`, ...), so
//! the ledger never re-validates.

use std::collections::BTreeMap;

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::cards::Decline;

/// A Stripe-style id: a prefix and 24 random letters and digits (`pi_3Px...`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_alnum(24))
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// An amount in the currency's smallest unit (cents): at least 1, at most
/// 99 999 999, Stripe's eight-digit ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    pub const MAX: i64 = 99_999_999;

    pub fn parse(raw: &str, param: &str) -> Result<Self, Error> {
        let n: i64 = raw.parse().map_err(|_| {
            Error::invalid(
                param,
                "parameter_invalid_integer",
                format!("Invalid integer: {raw}"),
            )
        })?;
        if n < 1 {
            return Err(Error::invalid(
                param,
                "amount_too_small",
                "Amount must be at least 1 in the currency's smallest unit.",
            ));
        }
        if n > Self::MAX {
            return Err(Error::invalid(
                param,
                "amount_too_large",
                format!("Amount must be no more than {}.", Self::MAX),
            ));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A three-letter ISO currency code, lowercased as Stripe returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(Error::invalid(
                "currency",
                "parameter_invalid_string",
                format!("Invalid currency: {raw}. Use a three-letter ISO code such as eur."),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point: Stripe's zero- and three-decimal currencies,
    /// two for the rest.
    pub fn exponent(&self) -> u32 {
        match self.0.as_str() {
            "bif" | "clp" | "djf" | "gnf" | "jpy" | "kmf" | "krw" | "mga" | "pyg" | "rwf"
            | "ugx" | "vnd" | "vuv" | "xaf" | "xof" | "xpf" => 0,
            "bhd" | "jod" | "kwd" | "omr" | "tnd" => 3,
            _ => 2,
        }
    }
}

/// Where the hosted page sends the buyer after paying: an absolute http(s) URL that
/// can go into a `Location` header as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReturnUrl(String);

impl ReturnUrl {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let scheme_ok = raw.starts_with("https://") || raw.starts_with("http://");
        let chars_ok = raw.bytes().all(|b| b.is_ascii_graphic());
        if scheme_ok && chars_ok && raw.len() <= 2048 {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::invalid(
                "return_url",
                "url_invalid",
                "Not a valid URL: return_url must be an absolute http(s) URL.",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500.
/// Empty values are how Stripe unsets a key, so they are dropped.
pub fn parse_metadata(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Error> {
    let bad = |message: String| Error::invalid("metadata", "parameter_invalid_string", message);
    if raw.len() > 50 {
        return Err(bad("Metadata can have at most 50 keys.".into()));
    }
    for (k, v) in &raw {
        if k.is_empty() || k.chars().count() > 40 || k.contains(['[', ']']) {
            return Err(bad(format!(
                "Invalid metadata key {k:?}: keys are 1 to 40 characters without brackets."
            )));
        }
        if v.chars().count() > 500 {
            return Err(bad(format!(
                "Metadata value for {k:?} is longer than 500 characters."
            )));
        }
    }
    Ok(raw.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    RequiresPaymentMethod,
    Succeeded,
    /// Cancelled by the merchant (Stripe spells it `canceled`): takes no card.
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::Succeeded => "succeeded",
            Status::Canceled => "canceled",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: Amount,
    pub currency: Currency,
    pub status: Status,
    pub client_secret: String,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub return_url: Option<ReturnUrl>,
    pub created: i64,
    /// Why the last attempt failed, cleared by a success.
    pub last_payment_error: Option<Decline>,
    /// The successful charge; an intent has at most one.
    pub charge: Option<Charge>,
    pub amount_refunded: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub created: i64,
}

impl PaymentIntent {
    pub fn new(
        amount: Amount,
        currency: Currency,
        metadata: BTreeMap<String, String>,
        description: Option<String>,
        return_url: Option<ReturnUrl>,
        now: i64,
    ) -> Self {
        let id = new_id("pi");
        let client_secret = format!("{id}_secret_{}", random_alnum(25));
        Self {
            id,
            amount,
            currency,
            status: Status::RequiresPaymentMethod,
            client_secret,
            metadata,
            description,
            return_url,
            created: now,
            last_payment_error: None,
            charge: None,
            amount_refunded: 0,
        }
    }

    pub fn remaining(&self) -> i64 {
        self.amount.get() - self.amount_refunded
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount.get(),
            "currency": self.currency.as_str(),
            "status": self.status.as_str(),
            "client_secret": self.client_secret,
            "description": self.description,
            "metadata": self.metadata,
            "created": self.created,
            "livemode": false,
            "last_payment_error": self.last_payment_error.map(|d| json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": d.decline_code,
                "message": d.message,
            })),
            "latest_charge": self.charge.as_ref().map(|c| c.id.as_str()),
            "amount_refunded": self.amount_refunded,
        })
    }

    /// The charge as Stripe shows it in `charge.refunded`. `None` before a success.
    pub fn charge_json(&self) -> Option<Value> {
        let charge = self.charge.as_ref()?;
        Some(json!({
            "id": charge.id,
            "object": "charge",
            "amount": self.amount.get(),
            "amount_refunded": self.amount_refunded,
            "currency": self.currency.as_str(),
            "payment_intent": self.id,
            "metadata": self.metadata,
            "paid": true,
            "refunded": self.amount_refunded == self.amount.get(),
            "status": "succeeded",
            "created": charge.created,
            "livemode": false,
        }))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: Currency,
    pub payment_intent: String,
    pub charge: String,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "currency": self.currency.as_str(),
            "payment_intent": self.payment_intent,
            "charge": self.charge,
            "reason": self.reason,
            "metadata": self.metadata,
            "status": "succeeded",
            "created": self.created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(Amount::parse("1500", "amount").unwrap().get(), 1500);
        assert_eq!(
            Amount::parse("99999999", "amount").unwrap().get(),
            99_999_999
        );
        for bad in ["0", "-5", "100000000", "12.5", "", "1e3", " 15"] {
            assert!(Amount::parse(bad, "amount").is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_and_urls() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "eur");
        assert!(Currency::parse("eu").is_err());
        assert!(Currency::parse("eu1").is_err());
        assert!(Currency::parse("€ur").is_err());
        assert!(ReturnUrl::parse("https://x.test/o/1?a=b").is_ok());
        assert!(ReturnUrl::parse("javascript:alert(1)").is_err());
        assert!(ReturnUrl::parse("https://x.test/\r\nSet-Cookie: a").is_err());
    }

    #[test]
    fn ids_look_like_stripe_ids() {
        let id = new_id("pi");
        assert_eq!(id.len(), 27);
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
