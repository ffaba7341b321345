//! The hosted payment page, `/pay/{intent_id}`: the buyer's side of a payment, so
//! the whole journey works in a browser. Rendered on the server, complete without
//! JavaScript, readable on a phone; every echoed value is escaped.
//!
//! Paying confirms the intent exactly as the API does (same ledger, same events),
//! then sends the buyer to the intent's `return_url` with a 303, or shows a result
//! page when there is none. A decline shows the form again with the reason. The
//! API's latency and timeout faults do not apply here: they model the merchant's
//! connection to the provider, not the buyer's.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::Error;
use crate::app::Sandbox;
use crate::cards;
use platform::html::escape;

use crate::ledger::Confirmation;
use crate::objects::{Currency, PaymentIntent, Status};
use crate::params::Params;

pub fn router() -> Router<Sandbox> {
    Router::new().route("/pay/{id}", get(show).post(pay))
}

async fn show(State(s): State<Sandbox>, Path(id): Path<String>) -> Response {
    match s.payment_intent(&id) {
        Ok(intent) if intent.status == Status::Succeeded => paid(&intent).into_response(),
        Ok(intent) if intent.status == Status::Canceled => cancelled(&intent),
        Ok(intent) => form(&intent, None).into_response(),
        Err(_) => not_found(),
    }
}

#[tracing::instrument(skip_all, fields(payment_intent = %id))]
async fn pay(
    State(s): State<Sandbox>,
    Path(id): Path<String>,
    params: Result<Params, Error>,
) -> Response {
    let Ok(intent) = s.payment_intent(&id) else {
        return not_found();
    };
    // Paid already (a double-clicked button, a back-and-resubmit): no second
    // charge, just where a paid buyer goes.
    if intent.status == Status::Succeeded {
        return done(&intent);
    }
    // Cancelled by the shop (the seats were given up or lapsed): no card is taken.
    if intent.status == Status::Canceled {
        return cancelled(&intent);
    }
    let number = params
        .ok()
        .and_then(|mut p| p.take("card_number"))
        .unwrap_or_default();
    if number.trim().is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            form(&intent, Some("Enter your card number.")),
        )
            .into_response();
    }
    let verdict = match cards::card_verdict(&number) {
        Ok(v) => v,
        Err(e) => return (e.status(), form(&intent, Some(&e.to_string()))).into_response(),
    };
    let confirmation = Confirmation {
        verdict: Some(verdict),
        return_url: None,
    };
    match s.confirm(&id, confirmation, None) {
        Ok(_) | Err(Error::UnexpectedState { .. }) => match s.payment_intent(&id) {
            // Cancelled while the buyer typed: nothing was charged.
            Ok(intent) if intent.status == Status::Canceled => cancelled(&intent),
            Ok(intent) => done(&intent),
            Err(_) => not_found(),
        },
        // A decline (or anything else refused) shows the form again with the reason.
        Err(e) => (e.status(), form(&intent, Some(&e.to_string()))).into_response(),
    }
}

/// Where a buyer goes once the intent has succeeded.
fn done(intent: &PaymentIntent) -> Response {
    match &intent.return_url {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => paid(intent).into_response(),
    }
}

/// An intent the shop cancelled: the page says so and takes no card.
fn cancelled(intent: &PaymentIntent) -> Response {
    let back = intent
        .return_url
        .as_ref()
        .map(|u| {
            format!(
                "<p><a href=\"{}\">Back to the shop</a></p>",
                escape(u.as_str())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>This payment was cancelled</h1>\
         <p>The shop cancelled this payment, usually because the reservation it was for \
         was given up or ran out. Nothing was charged.</p>{back}\
         <p class=\"ref\">Payment {}</p>",
        escape(&intent.id)
    );
    (StatusCode::GONE, Html(layout("Payment cancelled", &body))).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(layout(
            "Payment not found",
            "<h1>Payment not found</h1><p class=\"muted\">This payment link is not valid. Go back to the shop and start again.</p>",
        )),
    )
        .into_response()
}

fn form(intent: &PaymentIntent, error: Option<&str>) -> Html<String> {
    let amount = escape(&money(intent.amount.get(), &intent.currency));
    let description = intent
        .description
        .as_deref()
        .map(|d| format!("<p class=\"muted\">{}</p>", escape(d)))
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let back = intent
        .return_url
        .as_ref()
        .map(|u| {
            format!(
                "<p class=\"back\"><a href=\"{}\">Cancel and return</a></p>",
                escape(u.as_str())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p class=\"muted\">Test payment</p>\
         <h1>{amount}</h1>{description}{error}\
         <form method=\"post\" action=\"/pay/{id}\">\
         <label for=\"card_number\">Card number</label>\
         <input id=\"card_number\" name=\"card_number\" type=\"text\" inputmode=\"numeric\" \
         autocomplete=\"cc-number\" placeholder=\"1234 1234 1234 1234\" maxlength=\"23\" value=\"\" required autofocus>\
         <button type=\"submit\">Pay</button>\
         </form>\
         <div class=\"help\"><p>This is a sandbox: no money moves. Test cards:</p><ul>\
         <li><code>4242 4242 4242 4242</code> — payment succeeds</li>\
         <li><code>4000 0000 0000 0002</code> — card declined</li></ul></div>\
         {back}<p class=\"ref\">Payment {id}</p>",
        id = escape(&intent.id),
    );
    Html(layout(
        &format!("Pay {}", money(intent.amount.get(), &intent.currency)),
        &body,
    ))
}

fn paid(intent: &PaymentIntent) -> Html<String> {
    let amount = escape(&money(intent.amount.get(), &intent.currency));
    let back = intent
        .return_url
        .as_ref()
        .map(|u| format!("<p><a href=\"{}\">Continue</a></p>", escape(u.as_str())))
        .unwrap_or_default();
    let body = format!(
        "<h1>Payment received</h1><p>{amount} paid. You can close this page.</p>{back}\
         <p class=\"ref\">Payment {}</p>",
        escape(&intent.id)
    );
    Html(layout("Payment received", &body))
}

/// An amount in minor units as a buyer reads it: `€1,234.50`, `¥1,500`,
/// `12.000 KWD`.
pub fn money(minor: i64, currency: &Currency) -> String {
    let exponent = currency.exponent();
    let scale = 10_i64.pow(exponent);
    let whole = group_thousands(minor / scale);
    let number = if exponent == 0 {
        whole
    } else {
        format!(
            "{whole}.{:0width$}",
            minor % scale,
            width = exponent as usize
        )
    };
    match currency.as_str() {
        "eur" => format!("€{number}"),
        "usd" => format!("${number}"),
        "gbp" => format!("£{number}"),
        "jpy" => format!("¥{number}"),
        other => format!("{number} {}", other.to_ascii_uppercase()),
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --muted: #6b7280; --accent: #2f6fed; --bad: #b91c1c; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 26rem; margin: 0 auto; padding: 2rem 1.25rem; }
h1 { font-size: 2rem; margin: .25rem 0 1rem; font-variant-numeric: tabular-nums; }
.muted, .ref { color: var(--muted); }
.ref { font-size: .8rem; margin-top: 2rem; word-break: break-all; }
label { display: block; font-weight: 600; margin: 1rem 0 .35rem; }
input { box-sizing: border-box; width: 100%; font: inherit; font-size: 1.15rem; padding: .7rem .8rem;
  border: 1px solid color-mix(in srgb, CanvasText 30%, transparent); border-radius: .5rem;
  letter-spacing: .05em; font-variant-numeric: tabular-nums; }
button { width: 100%; margin-top: 1rem; padding: .8rem; font: inherit; font-weight: 600; color: #fff;
  background: var(--accent); border: 0; border-radius: .5rem; cursor: pointer; }
.error { color: var(--bad); font-weight: 600; }
.help { margin-top: 1.5rem; padding: .75rem 1rem; border-radius: .5rem;
  background: color-mix(in srgb, CanvasText 6%, transparent); font-size: .95rem; }
.help p { margin: 0 0 .25rem; } .help ul { margin: 0; padding-left: 1.2rem; }
code { font-size: 1rem; white-space: nowrap; }
"#;

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_naturally() {
        let c = |s| Currency::parse(s).unwrap();
        assert_eq!(money(1500, &c("eur")), "€15.00");
        assert_eq!(money(12_345_678, &c("usd")), "$123,456.78");
        assert_eq!(money(1500, &c("jpy")), "¥1,500");
        assert_eq!(money(12_000, &c("kwd")), "12.000 KWD");
        assert_eq!(money(5, &c("chf")), "0.05 CHF");
    }
}
