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
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                Error::Rejected(e.to_string())
            } else {
                Error::Smtp(e.to_string())
            }
        })
    }
}
