//! The books: payment intents and refunds in memory, the operations on them, and
//! the `Idempotency-Key` record.
//!
//! Every operation is synchronous and runs under the state's one lock, together
//! with its idempotency record and the webhook events it produces, so the three
//! are one atomic step: a retry can never find a charge without its recorded
//! answer, and events leave in the order the changes happened.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;
use crate::cards::Verdict;
use crate::objects::{Amount, Charge, Currency, PaymentIntent, Refund, ReturnUrl, Status, new_id};
use crate::params::Params;
use crate::webhooks::Event;

/// A new payment intent's parameters, checked.
#[derive(Clone, Debug)]
pub struct NewIntent {
    pub amount: Amount,
    pub currency: Currency,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub return_url: Option<ReturnUrl>,
}

/// A confirm's parameters, checked. `verdict: None` leaves the outcome to the
/// decline fault.
#[derive(Clone, Debug)]
pub struct Confirmation {
    pub verdict: Option<Verdict>,
    pub return_url: Option<ReturnUrl>,
}

/// A refund's parameters, checked. `amount: None` refunds what is left.
#[derive(Clone, Debug)]
pub struct NewRefund {
    pub payment_intent: String,
    pub amount: Option<Amount>,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// An `Idempotency-Key` and the request it came with: the endpoint and the
/// flattened parameters, so form and JSON encodings of one request compare equal.
#[derive(Clone, Debug)]
pub struct Idempotent {
    pub key: String,
    pub endpoint: String,
    pub params: Params,
}

/// An answer to a money-moving request: fresh, or replayed from the idempotency
/// record (in which case it may carry the recorded 402).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub replayed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recorded {
    endpoint: String,
    params: Params,
    /// The HTTP status, as a number so the record can be journaled.
    status: u16,
    body: Value,
}

/// One change to the books, as the journal keeps it: the object as it now is.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Intent(PaymentIntent),
    Refund(Refund),
    Idempotency { key: String, record: Recorded },
}

#[derive(Default)]
pub struct Ledger {
    intents: HashMap<String, PaymentIntent>,
    refunds: HashMap<String, Refund>,
    idempotency: HashMap<String, Recorded>,
    /// Events produced by operations and not yet handed to the webhook queue.
    events: Vec<Event>,
    /// What operations changed since the last [`Ledger::take_changes`], in order.
    touched: Vec<Touched>,
}

enum Touched {
    Intent(String),
    Refund(String),
    Idempotency(String),
}

impl Ledger {
    pub fn intent(&self, id: &str) -> Result<&PaymentIntent, Error> {
        self.intents.get(id).ok_or_else(|| Error::NotFound {
            kind: "payment_intent",
            id: id.to_owned(),
        })
    }

    pub fn refund(&self, id: &str) -> Result<&Refund, Error> {
        self.refunds.get(id).ok_or_else(|| Error::NotFound {
            kind: "refund",
            id: id.to_owned(),
        })
    }

    /// The events produced since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The objects changed since the last call, as they now are, in the order they
    /// were changed.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.touched)
            .into_iter()
            .filter_map(|t| match t {
                Touched::Intent(id) => self.intents.get(&id).cloned().map(Change::Intent),
                Touched::Refund(id) => self.refunds.get(&id).cloned().map(Change::Refund),
                Touched::Idempotency(key) => self
                    .idempotency
                    .get(&key)
                    .cloned()
                    .map(|record| Change::Idempotency { key, record }),
            })
            .collect()
    }

    /// Puts a journaled change back (at start-up); the later of two wins.
    pub fn restore(&mut self, change: Change) {
        match change {
            Change::Intent(i) => {
                self.intents.insert(i.id.clone(), i);
            }
            Change::Refund(r) => {
                self.refunds.insert(r.id.clone(), r);
            }
            Change::Idempotency { key, record } => {
                self.idempotency.insert(key, record);
            }
        }
    }

    /// How many intents the books hold.
    pub fn intents_len(&self) -> usize {
        self.intents.len()
    }

    /// Runs `op` once per idempotency key. A repeat of the same request gets the
    /// recorded answer and changes nothing; the same key with other parameters or on
    /// another endpoint is refused. As at Stripe, only answers of requests that
    /// changed the books are recorded: a request refused before it did anything can
    /// be corrected and retried under the same key.
    pub fn idempotent(
        &mut self,
        idem: Option<&Idempotent>,
        op: impl FnOnce(&mut Self) -> Result<Value, Error>,
    ) -> Result<Reply, Error> {
        if let Some(idem) = idem
            && let Some(rec) = self.idempotency.get(&idem.key)
        {
            if rec.endpoint != idem.endpoint {
                return Err(Error::Idempotency(format!(
                    "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{}'). Try using a key other than '{}' if you meant to execute a different request.",
                    rec.endpoint, idem.endpoint, idem.key
                )));
            }
            if rec.params != idem.params {
                return Err(Error::Idempotency(format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{}' if you meant to execute a different request.",
                    idem.key
                )));
            }
            return Ok(Reply {
                status: StatusCode::from_u16(rec.status).unwrap_or(StatusCode::OK),
                body: rec.body.clone(),
                replayed: true,
            });
        }
        let result = op(self);
        if let Some(idem) = idem {
            let answer = match &result {
                Ok(body) => Some((StatusCode::OK, body.clone())),
                Err(e) if e.changed_state() => {
                    Some((e.status(), serde_json::json!({"error": e.body()})))
                }
                Err(_) => None,
            };
            if let Some((status, body)) = answer {
                self.idempotency.insert(
                    idem.key.clone(),
                    Recorded {
                        endpoint: idem.endpoint.clone(),
                        params: idem.params.clone(),
                        status: status.as_u16(),
                        body,
                    },
                );
                self.touched.push(Touched::Idempotency(idem.key.clone()));
            }
        }
        result.map(|body| Reply {
            status: StatusCode::OK,
            body,
            replayed: false,
        })
    }

    pub fn create_intent(&mut self, new: NewIntent, now: i64) -> Value {
        let intent = PaymentIntent::new(
            new.amount,
            new.currency,
            new.metadata,
            new.description,
            new.return_url,
            now,
        );
        let json = intent.to_json();
        self.touched.push(Touched::Intent(intent.id.clone()));
        self.intents.insert(intent.id.clone(), intent);
        json
    }

    /// Confirms an intent with the given outcome. A success charges it exactly once:
    /// an intent that already succeeded is refused and nothing is emitted.
    pub fn confirm(
        &mut self,
        id: &str,
        verdict: Verdict,
        return_url: Option<ReturnUrl>,
        now: i64,
    ) -> Result<Value, Error> {
        let intent = self.intents.get_mut(id).ok_or_else(|| Error::NotFound {
            kind: "payment_intent",
            id: id.to_owned(),
        })?;
        self.touched.push(Touched::Intent(id.to_owned()));
        if intent.status == Status::Succeeded {
            return Err(Error::UnexpectedState {
                code: "payment_intent_unexpected_state",
                message: "You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.".into(),
                payment_intent: Some(Box::new(intent.to_json())),
            });
        }
        if intent.status == Status::Canceled {
            return Err(Error::UnexpectedState {
                code: "payment_intent_unexpected_state",
                message:
                    "You cannot confirm this PaymentIntent because it has a status of canceled."
                        .into(),
                payment_intent: Some(Box::new(intent.to_json())),
            });
        }
        if return_url.is_some() {
            intent.return_url = return_url;
        }
        match verdict {
            Verdict::Approve => {
                intent.status = Status::Succeeded;
                intent.last_payment_error = None;
                intent.charge = Some(Charge {
                    id: new_id("ch"),
                    created: now,
                });
                let json = intent.to_json();
                self.events
                    .push(Event::new("payment_intent.succeeded", json.clone(), now));
                Ok(json)
            }
            Verdict::Decline(decline) => {
                intent.last_payment_error = Some(decline);
                let json = intent.to_json();
                self.events.push(Event::new(
                    "payment_intent.payment_failed",
                    json.clone(),
                    now,
                ));
                Err(Error::Declined {
                    decline_code: decline.decline_code,
                    message: decline.message.to_owned(),
                    payment_intent: Box::new(json),
                })
            }
        }
    }

    /// Cancels an intent that has not succeeded, as Stripe does: from then on it takes
    /// no confirmation. A succeeded intent cannot be cancelled (refund it instead);
    /// cancelling a cancelled one is refused the same way, as Stripe refuses it.
    pub fn cancel(&mut self, id: &str, now: i64) -> Result<Value, Error> {
        let intent = self.intents.get_mut(id).ok_or_else(|| Error::NotFound {
            kind: "payment_intent",
            id: id.to_owned(),
        })?;
        if intent.status != Status::RequiresPaymentMethod {
            return Err(Error::UnexpectedState {
                code: "payment_intent_unexpected_state",
                message: format!(
                    "You cannot cancel this PaymentIntent because it has a status of {}.",
                    intent.status.as_str()
                ),
                payment_intent: Some(Box::new(intent.to_json())),
            });
        }
        self.touched.push(Touched::Intent(id.to_owned()));
        intent.status = Status::Canceled;
        let json = intent.to_json();
        self.events
            .push(Event::new("payment_intent.canceled", json.clone(), now));
        Ok(json)
    }

    /// Refunds part or all of what is left of a succeeded intent's charge.
    pub fn create_refund(&mut self, new: NewRefund, now: i64) -> Result<Value, Error> {
        let intent = self.intents.get_mut(&new.payment_intent).ok_or_else(|| {
            Error::invalid(
                "payment_intent",
                "resource_missing",
                format!("No such payment_intent: '{}'", new.payment_intent),
            )
        })?;
        let Some(charge) = intent
            .charge
            .clone()
            .filter(|_| intent.status == Status::Succeeded)
        else {
            return Err(Error::UnexpectedState {
                code: "payment_intent_unexpected_state",
                message: format!(
                    "This PaymentIntent ({}) does not have a successful charge to refund.",
                    intent.id
                ),
                payment_intent: Some(Box::new(intent.to_json())),
            });
        };
        let remaining = intent.remaining();
        if remaining == 0 {
            return Err(Error::UnexpectedState {
                code: "charge_already_refunded",
                message: format!("Charge {} has already been refunded.", charge.id),
                payment_intent: Some(Box::new(intent.to_json())),
            });
        }
        let amount = new.amount.map_or(remaining, Amount::get);
        if amount > remaining {
            return Err(Error::invalid(
                "amount",
                "amount_too_large",
                format!(
                    "Refund amount ({amount}) is greater than the unrefunded amount on the charge ({remaining})."
                ),
            ));
        }
        intent.amount_refunded += amount;
        let refund = Refund {
            id: new_id("re"),
            amount,
            currency: intent.currency.clone(),
            payment_intent: intent.id.clone(),
            charge: charge.id,
            reason: new.reason,
            metadata: new.metadata,
            created: now,
        };
        if let Some(charge) = intent.charge_json() {
            self.events.push(Event::new("charge.refunded", charge, now));
        }
        let json = refund.to_json();
        self.touched
            .push(Touched::Intent(refund.payment_intent.clone()));
        self.touched.push(Touched::Refund(refund.id.clone()));
        self.refunds.insert(refund.id.clone(), refund);
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::GENERIC_DECLINE;

    fn intent(ledger: &mut Ledger) -> String {
        let json = ledger.create_intent(
            NewIntent {
                amount: Amount::parse("1500", "amount").unwrap(),
                currency: Currency::parse("eur").unwrap(),
                metadata: BTreeMap::new(),
                description: None,
                return_url: None,
            },
            1,
        );
        json["id"].as_str().unwrap().to_owned()
    }

    fn kinds(ledger: &mut Ledger) -> Vec<&'static str> {
        ledger.take_events().iter().map(|e| e.kind).collect()
    }

    #[test]
    fn confirm_charges_once() {
        let mut l = Ledger::default();
        let id = intent(&mut l);
        let err = l
            .confirm(&id, Verdict::Decline(GENERIC_DECLINE), None, 2)
            .unwrap_err();
        assert!(err.changed_state());
        assert_eq!(kinds(&mut l), ["payment_intent.payment_failed"]);
        let ok = l.confirm(&id, Verdict::Approve, None, 3).unwrap();
        assert_eq!(ok["status"], "succeeded");
        assert!(ok["last_payment_error"].is_null());
        assert_eq!(kinds(&mut l), ["payment_intent.succeeded"]);
        let again = l.confirm(&id, Verdict::Approve, None, 4).unwrap_err();
        assert!(matches!(again, Error::UnexpectedState { .. }));
        assert!(kinds(&mut l).is_empty());
    }

    #[test]
    fn refunds_stop_at_the_amount() {
        let mut l = Ledger::default();
        let id = intent(&mut l);
        let refund = |amount: Option<&str>| NewRefund {
            payment_intent: id.clone(),
            amount: amount.map(|a| Amount::parse(a, "amount").unwrap()),
            reason: None,
            metadata: BTreeMap::new(),
        };
        assert!(l.create_refund(refund(None), 2).is_err());
        l.confirm(&id, Verdict::Approve, None, 2).unwrap();
        l.take_events();
        assert_eq!(
            l.create_refund(refund(Some("500")), 3).unwrap()["amount"],
            500
        );
        assert!(l.create_refund(refund(Some("1001")), 3).is_err());
        assert_eq!(l.create_refund(refund(None), 3).unwrap()["amount"], 1000);
        let events = l.take_events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].object["refunded"], true);
        assert!(matches!(
            l.create_refund(refund(None), 4),
            Err(Error::UnexpectedState {
                code: "charge_already_refunded",
                ..
            })
        ));
    }

    #[test]
    fn idempotency_replays_and_refuses_conflicts() {
        let mut l = Ledger::default();
        let idem = |params: &[u8]| Idempotent {
            key: "k1".into(),
            endpoint: "/v1/x".into(),
            params: Params::from_form(params).unwrap(),
        };
        let new = || NewIntent {
            amount: Amount::parse("1500", "amount").unwrap(),
            currency: Currency::parse("eur").unwrap(),
            metadata: BTreeMap::new(),
            description: None,
            return_url: None,
        };
        let first = l
            .idempotent(Some(&idem(b"a=1")), |l| Ok(l.create_intent(new(), 1)))
            .unwrap();
        let second = l
            .idempotent(Some(&idem(b"a=1")), |l| Ok(l.create_intent(new(), 1)))
            .unwrap();
        assert!(!first.replayed && second.replayed);
        assert_eq!(first.body["id"], second.body["id"]);
        assert_eq!(l.intents.len(), 1);
        assert!(matches!(
            l.idempotent(Some(&idem(b"a=2")), |_| unreachable!()),
            Err(Error::Idempotency(_))
        ));
    }
}
