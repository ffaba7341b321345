//! Talking to the payment provider.
//!
//! [`PaymentProvider`] is what the rest of the crate needs from a provider. The one
//! implementation, [`StripeApi`], speaks Stripe's HTTP API (form-encoded requests,
//! bearer secret key, `Idempotency-Key`); pointed at the local sandbox it is the
//! `sandbox` provider, pointed at `https://api.stripe.com` with a real key it is the
//! `stripe` provider. One code path, so what the tests exercise is what production runs.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

use crate::Error;

/// A payment intent as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Intent {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Intent {
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// The order this intent pays for, from the metadata we set at creation.
    pub fn order_id(&self) -> Option<Uuid> {
        self.metadata
            .get("order_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderRefund {
    pub id: String,
    pub status: String,
}

pub struct NewIntent<'a> {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub return_url: &'a str,
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// `sandbox` or `stripe`, recorded on each order.
    fn name(&self) -> &'static str;
    /// Creates (or, for the same order, returns again) the order's intent.
    async fn create_intent(&self, new: &NewIntent<'_>) -> Result<Intent, Error>;
    async fn intent(&self, id: &str) -> Result<Intent, Error>;
    /// Refunds `amount_cents` of an intent; `key` makes a retry of the same refund safe.
    async fn refund(
        &self,
        intent_id: &str,
        amount_cents: i64,
        key: &str,
    ) -> Result<ProviderRefund, Error>;
    /// Cancels an intent nobody may pay any more (its hold ended). An intent that was
    /// paid first cannot be cancelled: that answer is [`Cancelled::AlreadyPaid`], and the
    /// money must be settled (and, for an order that is gone, refunded).
    async fn cancel_intent(&self, intent_id: &str) -> Result<Cancelled, Error>;
    /// The hosted page where the buyer pays.
    fn pay_url(&self, intent_id: &str) -> String;
}

/// What cancelling an intent found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Cancelled now or before: its page takes no card.
    Cancelled,
    /// It had succeeded already: the buyer paid.
    AlreadyPaid(Intent),
}

/// Stripe's HTTP API at a configurable base URL.
pub struct StripeApi {
    name: &'static str,
    base_url: String,
    hosted_page_base: String,
    secret_key: String,
    http: reqwest::Client,
}

impl StripeApi {
    pub fn new(
        name: &'static str,
        base_url: &str,
        hosted_page_base: &str,
        secret_key: &str,
    ) -> Self {
        Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            hosted_page_base: hosted_page_base.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            http: reqwest::Client::builder()
                // A buyer is waiting on the other side of each call.
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let resp = req
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(|e| Error::Payment(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(Error::Payment(format!(
                "provider answered {status}: {body}"
            )));
        }
        resp.json().await.map_err(|e| Error::Payment(e.to_string()))
    }
}

#[async_trait]
impl PaymentProvider for StripeApi {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn create_intent(&self, new: &NewIntent<'_>) -> Result<Intent, Error> {
        let order_id = new.order_id.to_string();
        let form = [
            ("amount", new.amount_cents.to_string()),
            ("currency", new.currency.to_lowercase()),
            ("metadata[order_id]", order_id.clone()),
            ("return_url", new.return_url.to_owned()),
        ];
        self.send(
            self.http
                .post(format!("{}/v1/payment_intents", self.base_url))
                .header("Idempotency-Key", format!("intent-{order_id}"))
                .form(&form),
        )
        .await
    }

    async fn intent(&self, id: &str) -> Result<Intent, Error> {
        self.send(
            self.http
                .get(format!("{}/v1/payment_intents/{id}", self.base_url)),
        )
        .await
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount_cents: i64,
        key: &str,
    ) -> Result<ProviderRefund, Error> {
        let form = [
            ("payment_intent", intent_id.to_owned()),
            ("amount", amount_cents.to_string()),
        ];
        self.send(
            self.http
                .post(format!("{}/v1/refunds", self.base_url))
                .header("Idempotency-Key", key)
                .form(&form),
        )
        .await
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<Cancelled, Error> {
        let form = [("cancellation_reason", "abandoned")];
        let cancelled: Result<Intent, Error> = self
            .send(
                self.http
                    .post(format!(
                        "{}/v1/payment_intents/{intent_id}/cancel",
                        self.base_url
                    ))
                    .header("Idempotency-Key", format!("cancel-{intent_id}"))
                    .form(&form),
            )
            .await;
        match cancelled {
            Ok(_) => Ok(Cancelled::Cancelled),
            // Refused: Stripe cannot cancel an intent that succeeded (or one already
            // cancelled, on a retry without the idempotency record). Ask what it is.
            Err(refused) => {
                let intent = self.intent(intent_id).await?;
                match intent.status.as_str() {
                    "succeeded" => Ok(Cancelled::AlreadyPaid(intent)),
                    "canceled" => Ok(Cancelled::Cancelled),
                    _ => Err(refused),
                }
            }
        }
    }

    fn pay_url(&self, intent_id: &str) -> String {
        format!("{}/pay/{intent_id}", self.hosted_page_base)
    }
}

/// Intents the provider lately reported paid (or being paid), so a buyer's order page
/// refreshing itself every 3 s while the payment is confirmed — or reloaded by a script
/// — asks the provider at most once per [`RecentStates::FOR`] per intent: page loads do
/// not become provider API calls one for one (a provider rate-limits per account).
/// Only that answer is kept: it cannot go back, while "not paid" can change any moment
/// (a buyer who pays with a saved card and comes straight back must never read "not
/// paid"), so an unpaid intent is asked about on each view of its order's page.
#[derive(Clone, Default)]
pub struct RecentStates {
    answers: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
    >,
}

impl RecentStates {
    pub const FOR: Duration = Duration::from_secs(5);
    /// Beyond this many intents remembered, the memory starts over (a crowd's pending
    /// orders fit many times over).
    const MOST: usize = 50_000;

    /// The intent's status as the provider last reported it, if that was recent.
    pub fn get(&self, intent_id: &str) -> Option<String> {
        let answers = self.answers.lock().expect("recent states lock");
        answers
            .get(intent_id)
            .filter(|(at, _)| at.elapsed() < Self::FOR)
            .map(|(_, status)| status.clone())
    }

    /// Keeps a paid-or-being-paid answer; any other is not kept.
    pub fn remember(&self, intent_id: &str, status: &str) {
        if !matches!(status, "succeeded" | "processing") {
            return;
        }
        let mut answers = self.answers.lock().expect("recent states lock");
        if answers.len() >= Self::MOST {
            answers.retain(|_, (at, _)| at.elapsed() < Self::FOR);
            if answers.len() >= Self::MOST {
                answers.clear();
            }
        }
        answers.insert(
            intent_id.to_owned(),
            (std::time::Instant::now(), status.to_owned()),
        );
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn a_paid_answer_is_reused_for_a_few_seconds_and_a_not_paid_one_never() {
        let recent = RecentStates::default();
        assert_eq!(recent.get("pi_1"), None);
        recent.remember("pi_1", "processing");
        assert_eq!(recent.get("pi_1").as_deref(), Some("processing"));
        assert_eq!(recent.get("pi_2"), None);
        recent.answers.lock().unwrap().get_mut("pi_1").unwrap().0 -= RecentStates::FOR;
        assert_eq!(recent.get("pi_1"), None, "stale after FOR");
        recent.remember("pi_2", "requires_payment_method");
        assert_eq!(recent.get("pi_2"), None, "not paid can change any moment");
    }
}
