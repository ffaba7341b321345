//! Test payment methods and card numbers, and what each one does: the sandbox's
//! version of Stripe's test cards.
//!
//! | payment_method / card_number | outcome |
//! | --- | --- |
//! | `pm_card_visa`, `pm_card_mastercard`, `4242 4242 4242 4242`, `5555 5555 5555 4444` | succeeds |
//! | `pm_card_chargeDeclined`, `4000 0000 0000 0002` | declined (`generic_decline`) |
//! | `pm_card_chargeDeclinedInsufficientFunds`, `4000 0000 0000 9995` | declined (`insufficient_funds`) |
//! | any other number that passes the Luhn check | declined: not a test card |
//! | anything else | `incorrect_number`, nothing attempted |
//! | neither given | succeeds unless the `decline_rate` fault fires |

use crate::Error;

/// What a confirm does with the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Decline(Decline),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decline {
    pub decline_code: &'static str,
    pub message: &'static str,
}

impl Decline {
    /// The decline a code names (as journaled); an unknown code is a generic decline.
    pub fn from_code(code: &str) -> Self {
        [GENERIC_DECLINE, INSUFFICIENT_FUNDS, NOT_A_TEST_CARD]
            .into_iter()
            .find(|d| d.decline_code == code)
            .unwrap_or(GENERIC_DECLINE)
    }
}

// Journaled as its code: the messages are the sandbox's own constants.
impl serde::Serialize for Decline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.decline_code)
    }
}

impl<'de> serde::Deserialize<'de> for Decline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(Self::from_code(&code))
    }
}

pub const GENERIC_DECLINE: Decline = Decline {
    decline_code: "generic_decline",
    message: "Your card was declined.",
};

const INSUFFICIENT_FUNDS: Decline = Decline {
    decline_code: "insufficient_funds",
    message: "Your card has insufficient funds.",
};

const NOT_A_TEST_CARD: Decline = Decline {
    decline_code: "test_mode_live_card",
    message: "Your card was declined. This is a test payment page: use a test card such as 4242 4242 4242 4242.",
};

/// What the confirm's `payment_method` or `card_number` decides. `Ok(None)`: neither
/// was given, so the decline fault decides.
pub fn verdict(
    payment_method: Option<&str>,
    card_number: Option<&str>,
) -> Result<Option<Verdict>, Error> {
    match (payment_method, card_number) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "card_number",
            "parameter_unknown",
            "Pass either payment_method or card_number, not both.",
        )),
        (Some(pm), None) => payment_method_verdict(pm).map(Some),
        (None, Some(number)) => card_verdict(number).map(Some),
        (None, None) => Ok(None),
    }
}

fn payment_method_verdict(pm: &str) -> Result<Verdict, Error> {
    match pm {
        "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" => Ok(Verdict::Approve),
        "pm_card_chargeDeclined" | "pm_card_visa_chargeDeclined" => {
            Ok(Verdict::Decline(GENERIC_DECLINE))
        }
        "pm_card_chargeDeclinedInsufficientFunds"
        | "pm_card_visa_chargeDeclinedInsufficientFunds" => {
            Ok(Verdict::Decline(INSUFFICIENT_FUNDS))
        }
        other => Err(Error::invalid(
            "payment_method",
            "resource_missing",
            format!("No such PaymentMethod: '{other}'"),
        )),
    }
}

/// A card number as a buyer types it: spaces and dashes allowed.
pub fn card_verdict(raw: &str) -> Result<Verdict, Error> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let well_formed = (12..=19).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && luhn(&digits);
    if !well_formed {
        return Err(Error::IncorrectNumber);
    }
    Ok(match digits.as_str() {
        "4242424242424242" | "5555555555554444" => Verdict::Approve,
        "4000000000000002" => Verdict::Decline(GENERIC_DECLINE),
        "4000000000009995" => Verdict::Decline(INSUFFICIENT_FUNDS),
        _ => Verdict::Decline(NOT_A_TEST_CARD),
    })
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards() {
        assert_eq!(
            card_verdict("4242 4242 4242 4242").unwrap(),
            Verdict::Approve
        );
        assert_eq!(
            card_verdict("4242-4242-4242-4242").unwrap(),
            Verdict::Approve
        );
        assert_eq!(
            card_verdict("4000000000000002").unwrap(),
            Verdict::Decline(GENERIC_DECLINE)
        );
        assert_eq!(
            card_verdict("4000 0000 0000 9995").unwrap(),
            Verdict::Decline(INSUFFICIENT_FUNDS)
        );
        // A Luhn-valid number that is not a test card.
        assert_eq!(
            card_verdict("4111 1111 1111 1111").unwrap(),
            Verdict::Decline(NOT_A_TEST_CARD)
        );
        for bad in ["4242 4242 4242 4241", "abcd", "", "4242"] {
            assert!(
                matches!(card_verdict(bad), Err(Error::IncorrectNumber)),
                "{bad}"
            );
        }
    }

    #[test]
    fn payment_methods() {
        assert_eq!(verdict(None, None).unwrap(), None);
        assert_eq!(
            verdict(Some("pm_card_visa"), None).unwrap(),
            Some(Verdict::Approve)
        );
        assert_eq!(
            verdict(Some("pm_card_chargeDeclined"), None).unwrap(),
            Some(Verdict::Decline(GENERIC_DECLINE))
        );
        assert!(verdict(Some("pm_nope"), None).is_err());
        assert!(verdict(Some("pm_card_visa"), Some("4242424242424242")).is_err());
    }
}
