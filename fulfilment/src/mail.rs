//! Composing and sending email.
//!
//! Templates are files under `fulfilment/templates/` (compiled into the binary so a
//! deployment cannot lose them) rendered with minijinja; `.html` templates escape what
//! they interpolate. Sending uses lettre's pooled SMTP transport built from `SMTP_URL`,
//! so any SMTP server works: `smtp://host:port` plain (the dev sink), `smtps://` TLS, or
//! `smtp://host:587?tls=required` STARTTLS, with credentials in the URL.
//!
//! An SMTP server's refusal often quotes the recipient (`550 5.1.1 <bob@example.com>:
//! Recipient address rejected`). Its text is logged and kept as the delivery's
//! `last_error`, which the console shows, so addresses are taken out of it here, where
//! it enters: the recipient's address becomes `recipient` (the console shows the
//! delivery's address beside it), any other address `address`.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;
use serde::Serialize;

use crate::Error;

/// A rendered email.
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub ics: Option<String>,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: Environment<'static>,
    /// Domain for Message-IDs.
    domain: String,
}

/// `(name, source)` for a template file, compiled into the binary.
macro_rules! template {
    ($name:literal) => {
        ($name, include_str!(concat!("../templates/", $name)))
    };
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    let files = [
        template!("layout.html"),
        template!("confirmation.subject.txt"),
        template!("confirmation.txt"),
        template!("confirmation.html"),
        template!("refund_notice.subject.txt"),
        template!("refund_notice.txt"),
        template!("refund_notice.html"),
        template!("reminder.subject.txt"),
        template!("reminder.txt"),
        template!("reminder.html"),
        template!("email_change.subject.txt"),
        template!("email_change.txt"),
        template!("email_change.html"),
        template!("transfer_notice.subject.txt"),
        template!("transfer_notice.txt"),
        template!("transfer_notice.html"),
        template!("reschedule_notice.subject.txt"),
        template!("reschedule_notice.txt"),
        template!("reschedule_notice.html"),
    ];
    for (name, source) in files {
        env.add_template(name, source).expect("templates compile");
    }
    env
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| Error::Config(format!("SMTP_URL: {e}")))?
            .timeout(Some(std::time::Duration::from_secs(15)))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| Error::Config(format!("MAIL_FROM: {e}")))?;
        let domain = from.email.domain().to_owned();
        Ok(Self {
            transport,
            from,
            templates: templates(),
            domain,
        })
    }

    /// Renders `{kind}.subject.txt`, `{kind}.txt` and `{kind}.html` with `context`.
    pub fn compose<C: Serialize>(
        &self,
        kind: &str,
        context: &C,
        ics: Option<String>,
    ) -> Result<Composed, Error> {
        let render = |name: String| -> Result<String, Error> {
            Ok(self.templates.get_template(&name)?.render(context)?)
        };
        Ok(Composed {
            subject: render(format!("{kind}.subject.txt"))?.trim().to_owned(),
            text: render(format!("{kind}.txt"))?,
            html: render(format!("{kind}.html"))?,
            ics,
        })
    }

    /// The Message-ID for a delivery: stable, so a retried send is recognisable.
    pub fn message_id(&self, delivery_id: uuid::Uuid) -> String {
        format!("<{delivery_id}@{}>", self.domain)
    }

    pub async fn send(&self, to: &str, mail: &Composed, message_id: &str) -> Result<(), Error> {
        let recipient = to;
        let to: Mailbox = to
            .parse()
            .map_err(|e| Error::Smtp(redact_addresses(&format!("recipient: {e}"), recipient)))?;
        let alternative = MultiPart::alternative()
            .singlepart(SinglePart::plain(mail.text.clone()))
            .singlepart(SinglePart::html(mail.html.clone()));
        let body = match &mail.ics {
            Some(ics) => MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new("invite.ics".into()).body(
                    ics.clone(),
                    ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
                        .expect("content type"),
                ),
            ),
            None => alternative,
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .multipart(body)
            .map_err(|e| Error::Smtp(redact_addresses(&e.to_string(), recipient)))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            let text = redact_addresses(&e.to_string(), recipient);
            if e.is_permanent() {
                Error::Rejected(text)
            } else {
                Error::Smtp(text)
            }
        })
    }
}

/// `text` with every email address in it replaced: `recipient`'s (compared without
/// case) by the word `recipient`, any other by `address` — so `<bob@example.com>:`
/// reads `<recipient>:`. An address is a run of local-part characters, `@`, and a domain
/// of letters, digits, `-` and `.`; a stray `@` with nothing around it stays.
pub fn redact_addresses(text: &str, recipient: &str) -> String {
    let local = |c: char| c.is_alphanumeric() || ".!#$%&'*+-/=?^_`{|}~".contains(c);
    let domain = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| local(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let end = at
            + 1
            + rest[at + 1..]
                .char_indices()
                .find(|(_, c)| !domain(*c))
                .map_or(rest.len() - at - 1, |(i, _)| i);
        // A domain does not end with a dot (the end of a sentence).
        let end = at + 1 + rest[at + 1..end].trim_end_matches('.').len();
        if start == at || end == at + 1 {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            continue;
        }
        out.push_str(&rest[..start]);
        let found = &rest[start..end];
        out.push_str(if found.eq_ignore_ascii_case(recipient.trim()) {
            "recipient"
        } else {
            "address"
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_addresses;

    #[test]
    fn addresses_are_taken_out_of_server_replies() {
        let bob = "bob.o'neil+tix@Example.COM";
        for (said, left) in [
            (
                "permanent error (550): 5.1.1 <bob.o'neil+tix@example.com>: Recipient address rejected: User unknown",
                "permanent error (550): 5.1.1 <recipient>: Recipient address rejected: User unknown",
            ),
            (
                "transient error (450): 4.2.0 bob.o'neil+tix@example.com greylisted; see postmaster@mx.example.",
                "transient error (450): 4.2.0 recipient greylisted; see address.",
            ),
            (
                "Connection error: connection refused",
                "Connection error: connection refused",
            ),
            ("@ the start, the end @", "@ the start, the end @"),
            ("user@ and @host and a@b", "user@ and @host and address"),
            ("ünïcødé@exämple.org", "address"),
        ] {
            assert_eq!(redact_addresses(said, bob), left, "{said}");
        }
    }
}
