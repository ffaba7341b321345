//! Composing and sending email.
//!
//! Templates are files under `fulfilment/templates/` (compiled into the binary so a
//! deployment cannot lose them) rendered with minijinja; `.html` templates escape what
//! they interpolate. Sending uses lettre's pooled SMTP transport built from `SMTP_URL`,
//! so any SMTP server works: `smtp://host:port` plain (the dev sink), `smtps://` TLS, or
//! `smtp://host:587?tls=required` STARTTLS, with credentials in the URL.

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

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    let files: [(&str, &str); 13] = [
        ("layout.html", include_str!("../templates/layout.html")),
        (
            "confirmation.subject.txt",
            include_str!("../templates/confirmation.subject.txt"),
        ),
        (
            "confirmation.txt",
            include_str!("../templates/confirmation.txt"),
        ),
        (
            "confirmation.html",
            include_str!("../templates/confirmation.html"),
        ),
        (
            "refund_notice.subject.txt",
            include_str!("../templates/refund_notice.subject.txt"),
        ),
        (
            "refund_notice.txt",
            include_str!("../templates/refund_notice.txt"),
        ),
        (
            "refund_notice.html",
            include_str!("../templates/refund_notice.html"),
        ),
        (
            "reminder.subject.txt",
            include_str!("../templates/reminder.subject.txt"),
        ),
        ("reminder.txt", include_str!("../templates/reminder.txt")),
        ("reminder.html", include_str!("../templates/reminder.html")),
        (
            "email_change.subject.txt",
            include_str!("../templates/email_change.subject.txt"),
        ),
        (
            "email_change.txt",
            include_str!("../templates/email_change.txt"),
        ),
        (
            "email_change.html",
            include_str!("../templates/email_change.html"),
        ),
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
        let to: Mailbox = to
            .parse()
            .map_err(|e| Error::Smtp(format!("recipient: {e}")))?;
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
            .map_err(|e| Error::Smtp(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| Error::Smtp(e.to_string()))
    }
}
