//! The hosted payment page, `/pay/{intent_id}`: the buyer's side of a payment, so
//! the whole journey works in a browser. Rendered on the server, complete without
//! JavaScript, readable on a phone. The markup is in the crate's `templates/` (compiled
//! in), which escape every echoed value.
//!
//! Paying confirms the intent exactly as the API does (same ledger, same events),
//! then sends the buyer to the intent's `return_url` with a 303, or shows a result
//! page when there is none. A decline shows the form again with the reason. The
//! API's latency and timeout faults do not apply here: they model the merchant's
//! connection to the provider, not the buyer's.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, context};

use crate::Error;
use crate::app::Sandbox;
use crate::cards;

use crate::ledger::Confirmation;
use crate::objects::{Currency, PaymentIntent, Status};
use crate::params::Params;

/// `(name, source)` for a template file, compiled into the binary.
macro_rules! template {
    ($name:literal) => {
        ($name, include_str!(concat!("../templates/", $name)))
    };
}

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = platform::html::templates();
    for (name, source) in [
        template!("layout.html"),
        template!("pay.html"),
        template!("paid.html"),
        template!("cancelled.html"),
        template!("not_found.html"),
    ] {
        env.add_template(name, source)
            .expect("the sandbox's templates compile");
    }
    env
});

fn render(name: &str, context: minijinja::Value) -> String {
    platform::html::render(&PAGES, name, context)
}

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
    let html = render(
        "cancelled.html",
        context! { id => intent.id, return_url => return_url(intent) },
    );
    (StatusCode::GONE, Html(html)).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(render("not_found.html", context! {})),
    )
        .into_response()
}

fn form(intent: &PaymentIntent, error: Option<&str>) -> Html<String> {
    Html(render(
        "pay.html",
        context! {
            id => intent.id,
            amount => money(intent.amount.get(), &intent.currency),
            description => intent.description,
            error,
            return_url => return_url(intent),
        },
    ))
}

fn paid(intent: &PaymentIntent) -> Html<String> {
    Html(render(
        "paid.html",
        context! {
            id => intent.id,
            amount => money(intent.amount.get(), &intent.currency),
            return_url => return_url(intent),
        },
    ))
}

fn return_url(intent: &PaymentIntent) -> Option<&str> {
    intent.return_url.as_ref().map(|u| u.as_str())
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

    async fn body(r: impl IntoResponse) -> (StatusCode, String) {
        let r = r.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn what_the_shop_sent_is_text_on_every_page() {
        let script = "<script>alert('x')</script>";
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
        let return_url =
            crate::objects::ReturnUrl::parse("https://shop.example/o?a=1&b=2").unwrap();
        let mut intent = PaymentIntent::new(
            crate::objects::Amount::parse("1500", "amount").unwrap(),
            Currency::parse("eur").unwrap(),
            Default::default(),
            Some(format!("{script} Early bird")),
            Some(return_url),
            0,
        );
        intent.id = format!("pi_{script}");
        let (status, html) = body(form(&intent, Some(script))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!html.contains("<script"), "{html}");
        // The description, the error, the id in the form's action and below it.
        assert_eq!(html.matches(escaped).count(), 4, "{html}");
        assert!(
            html.contains(r#"<a href="https://shop.example/o?a=1&amp;b=2">Cancel and return</a>"#)
        );
        assert!(html.contains("<title>Pay €15.00</title>"));

        let (status, html) = body(paid(&intent)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !html.contains("<script") && html.contains(escaped),
            "{html}"
        );
        assert!(html.contains(">Continue</a>"));

        let (status, html) = body(cancelled(&intent)).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(
            !html.contains("<script") && html.contains(escaped),
            "{html}"
        );
        assert!(html.contains(">Back to the shop</a>"));

        let (status, html) = body(not_found()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(html.contains("<h1>Payment not found</h1>"), "{html}");
    }
}
