//! What a buyer page says when it cannot go on: what happened, in plain words, and
//! the one thing to do next. The API keeps its error codes and messages (integrators
//! read those); a person in a browser never sees an HTTP reason phrase, an error code
//! or the word "admission" (to them it is their turn in the queue).

use serde::Serialize;
use waitroom::tokens::TokenError;

use crate::Error;

/// The page a buyer lands on instead of the one they asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadEnd {
    pub heading: &'static str,
    pub message: &'static str,
    /// The one thing to do: `(href, label)`.
    pub action: Option<(String, &'static str)>,
    /// The turn was used up: the queue's cookies are dropped with this answer, so the
    /// "join again" link takes a new place instead of finding the spent one.
    pub forget_turn: bool,
}

/// Where the buyer was when it went wrong: what the links can point at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub slug: Option<&'a str>,
    /// The checkout or order that is already in progress for this turn, when there is one.
    pub resume: Option<&'a str>,
}

impl Context<'_> {
    fn event(&self, label: &'static str) -> Option<(String, &'static str)> {
        self.slug.map(|s| (format!("/e/{s}"), label))
    }

    fn queue(&self, label: &'static str) -> Option<(String, &'static str)> {
        self.slug.map(|s| (format!("/queue/{s}"), label))
    }
}

pub fn dead_end(e: &Error, at: Context<'_>) -> DeadEnd {
    let page = |heading, message, action| DeadEnd {
        heading,
        message,
        action,
        forget_turn: false,
    };
    match e {
        Error::NotFound("event") => page(
            "We can't find this event",
            "Check the link you were given: the event may have moved or been removed.",
            None,
        ),
        Error::NotFound("hold") => page(
            "We can't find this checkout",
            "It may have ended. Choose your tickets again.",
            at.event("Choose tickets"),
        ),
        Error::NotFound("order") | Error::Forbidden("the order token is required") => page(
            "We can't find this order",
            "Open it from the link in your confirmation email: that link carries the code that shows the order to you.",
            None,
        ),
        Error::NotFound(_) => page(
            "We can't find this page",
            "Check the link you were given.",
            at.event("Go to the event"),
        ),
        Error::Admission(TokenError::Missing) => page(
            "Join the queue first",
            "Tickets for this event are sold through a queue, so that everyone gets a fair turn.",
            at.queue("Join the queue"),
        ),
        Error::Admission(TokenError::Expired) => page(
            "Your turn to buy has ended",
            "Each turn lasts a limited time and yours ran out, so it went to the next person in line. You can join the queue again.",
            at.queue("Join the queue again"),
        ),
        Error::Admission(_) => page(
            "We couldn't confirm your turn",
            "Your browser sent something we could not check. Join the queue again to get a new turn.",
            at.queue("Join the queue again"),
        ),
        Error::AdmissionUsed => DeadEnd {
            forget_turn: true,
            ..page(
                "You have already bought with this turn",
                "Each turn in the queue is for one order. To buy more, join the queue again.",
                at.queue("Join the queue again"),
            )
        },
        Error::HoldExists => page(
            "You already have seats held",
            "Finish that checkout, or release its seats to choose different ones.",
            at.resume
                .map(|u| (u.to_owned(), "Resume your checkout"))
                .or_else(|| at.event("Back to the event")),
        ),
        Error::OrderPending => page(
            "Your order is waiting for payment",
            "Finish paying for it (or release its seats) before starting another.",
            at.resume
                .map(|u| (u.to_owned(), "Finish paying"))
                .or_else(|| at.event("Back to the event")),
        ),
        Error::BuyerLimit => page(
            "You already have an order in progress",
            "An order for this email address is already being checked out for this event. Finish it or release its seats, then try again.",
            at.event("Back to the event"),
        ),
        Error::SoldOut => page(
            "Not enough seats left",
            "Someone was quicker for the last of these seats. See what is left and choose again.",
            at.event("See what is left"),
        ),
        Error::Conflict("hold_expired", _) => page(
            "Your seats were released",
            "The time to pay ran out, so the seats went back on sale. Nothing was charged.",
            at.event("Hold seats again"),
        ),
        Error::Conflict("order_cancelled", _) => page(
            "This checkout was cancelled",
            "Its seats were given up or ran out before it was paid. Nothing was charged.",
            at.event("Hold seats again"),
        ),
        Error::Conflict("hold_not_active", _) => page(
            "These seats are no longer held",
            "They were released, ran out, or have been bought already.",
            at.event("Choose tickets"),
        ),
        Error::Conflict("event_cancelled", _) => page(
            "This event was cancelled",
            "Nothing can be bought for it. If you bought tickets, your refund is on its way.",
            None,
        ),
        Error::Conflict("sales_not_open", _) => page(
            "Sales have not opened yet",
            "The event's page says when they open. Come back then.",
            at.event("See when sales open"),
        ),
        Error::Conflict("sales_closed", _) => page(
            "Sales have closed",
            "Tickets for this event can no longer be bought.",
            at.event("Back to the event"),
        ),
        Error::Conflict("not_on_sale", _) => page(
            "Tickets are not on sale",
            "Sales for this event have closed or have not started yet.",
            at.event("Back to the event"),
        ),
        Error::Conflict(..) => page(
            "That could not be done",
            "Things changed while you were on this page. Start again from the event.",
            at.event("Back to the event"),
        ),
        Error::Forbidden(_) => page(
            "This checkout belongs to another browser",
            "It was started in another browser or tab, which has its own turn. Open it there.",
            at.event("Choose tickets here"),
        ),
        Error::Invalid(_)
        | Error::BadRequest(_)
        | Error::TooLarge
        | Error::UnsupportedMediaType => page(
            "Please check the form",
            "Something in it was missing or could not be read.",
            at.event("Back to the event"),
        ),
        Error::Payment(_) => page(
            "The payment service is not answering",
            "Nothing was charged. Try again in a moment.",
            at.event("Back to the event"),
        ),
        Error::Unavailable(_) | Error::Database(_) | Error::SlugTaken | Error::BadSignature(_) => {
            page(
                "Something went wrong on our side",
                "Nothing was charged. Try again in a moment.",
                at.event("Back to the event"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<Error> {
        let mut errors = vec![
            Error::NotFound("event"),
            Error::NotFound("hold"),
            Error::NotFound("order"),
            Error::NotFound("tier"),
            Error::Forbidden("the order token is required"),
            Error::Forbidden("this hold belongs to another admission"),
            Error::Admission(TokenError::Missing),
            Error::Admission(TokenError::Expired),
            Error::Admission(TokenError::Malformed),
            Error::AdmissionUsed,
            Error::HoldExists,
            Error::OrderPending,
            Error::BuyerLimit,
            Error::SoldOut,
            Error::Invalid("quantity must be between 1 and 4".into()),
            Error::BadRequest("missing field".into()),
            Error::Payment("timeout".into()),
            Error::Unavailable("hold not decided"),
            Error::Database(sqlx::Error::PoolTimedOut),
        ];
        for code in [
            "hold_expired",
            "order_cancelled",
            "hold_not_active",
            "event_cancelled",
            "not_on_sale",
            "sales_not_open",
            "sales_closed",
            "anything_else",
        ] {
            errors.push(Error::Conflict(code, "an integrator's message"));
        }
        errors
    }

    #[test]
    fn no_buyer_reads_a_reason_phrase_a_code_or_the_word_admission() {
        let at = Context {
            slug: Some("gig"),
            resume: Some("/e/gig/holds/1"),
        };
        for e in every_error() {
            let d = dead_end(&e, at);
            let text = format!("{} {}", d.heading, d.message).to_lowercase();
            for word in ["admission", "unauthorized", "conflict", "forbidden", "_"] {
                assert!(!text.contains(word), "{e:?}: {text}");
            }
            assert!(d.message.ends_with('.'), "{e:?}: a sentence");
        }
    }

    #[test]
    fn each_dead_end_offers_the_one_thing_to_do() {
        let at = Context {
            slug: Some("gig"),
            resume: Some("/e/gig/holds/h1"),
        };
        let href = |e: Error| dead_end(&e, at).action.map(|(h, _)| h);
        assert_eq!(href(Error::HoldExists).as_deref(), Some("/e/gig/holds/h1"));
        assert_eq!(href(Error::AdmissionUsed).as_deref(), Some("/queue/gig"));
        assert!(dead_end(&Error::AdmissionUsed, at).forget_turn);
        assert_eq!(
            href(Error::Admission(TokenError::Expired)).as_deref(),
            Some("/queue/gig")
        );
        assert_eq!(
            href(Error::Conflict("hold_expired", "")).as_deref(),
            Some("/e/gig")
        );
        // Nothing to resume: back to the event rather than nowhere.
        let no_resume = Context {
            slug: Some("gig"),
            resume: None,
        };
        assert_eq!(
            dead_end(&Error::HoldExists, no_resume).action,
            Some(("/e/gig".into(), "Back to the event"))
        );
    }
}
