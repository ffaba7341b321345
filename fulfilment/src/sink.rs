//! A development SMTP sink: accepts mail on loopback and keeps it, so the demo and the
//! tests can read what was sent, and can refuse mail for a while (451, "try again
//! later") to rehearse an SMTP outage. Recipients whose local part starts with
//! `bounce` (`bounce@…`, `bounce+anything@…`) are refused permanently (550 5.1.1, no
//! such mailbox), as a real server refuses a wrong address, to rehearse bounces; those
//! starting with `greylist` are refused for now (450 4.2.0, greylisted) every time.
//! Both replies quote the address, as Postfix's do, so what fulfilment logs and keeps
//! of a refusal is tested against a server that names the recipient.
//!
//! Written here rather than taken from a crate: `mailin-embedded` 0.8 does not compile
//! without its rustls feature, which drags aws-lc-sys (minutes of C build on every clean
//! CI run) into the workspace, and `mailcrab` pulls the same. The subset of RFC 5321 a
//! sink needs (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) is
//! small, and async lets it bind port 0 in tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Messages larger than this are refused (552).
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// One received message.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub id: u64,
    pub from: String,
    pub to: Vec<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// The raw RFC 5322 message.
    pub raw: String,
}

impl Received {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<Received>>,
    refusing: AtomicBool,
    next_id: AtomicU64,
    dir: Option<PathBuf>,
}

/// A running sink.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

impl Sink {
    /// Starts on `addr` (port 0 picks one); keeps messages in memory and, when `dir`
    /// is given, as `.eml` files there too.
    pub async fn start(addr: &str, dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            dir,
            ..Shared::default()
        });
        let accept = shared.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let shared = accept.clone();
                        tokio::spawn(async move {
                            if let Err(e) = session(stream, shared).await {
                                tracing::debug!(error = %e, "smtp session ended");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "smtp accept failed"),
                }
            }
        });
        Ok(Self { shared, addr })
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.lock().expect("sink lock").clone()
    }

    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }
}

fn address(arg: &str) -> String {
    let s = arg.trim();
    let s = s.split_once(':').map_or(s, |(_, rest)| rest).trim();
    s.trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 floodgate-sink ESMTP ready\r\n")
        .await?;
    let (mut from, mut to) = (None::<String>, Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let refusal: String;
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                b"250-floodgate-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
            }
            "HELO" => b"250 floodgate-sink\r\n",
            "MAIL" if shared.refusing.load(Ordering::Relaxed) => {
                b"451 4.3.0 Temporarily refusing mail, try again later\r\n"
            }
            "MAIL" => {
                from = Some(address(&command[4..]));
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" if from.is_none() => b"503 5.5.1 MAIL first\r\n",
            "RCPT" => {
                let rcpt = address(&command[4..]);
                let local = rcpt.to_ascii_lowercase();
                if local.starts_with("bounce") {
                    refusal =
                        format!("550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n");
                    refusal.as_bytes()
                } else if local.starts_with("greylist") {
                    refusal = format!(
                        "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, try again later\r\n"
                    );
                    refusal.as_bytes()
                } else {
                    to.push(rcpt);
                    b"250 OK\r\n"
                }
            }
            "DATA" if to.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut raw = String::new();
                let mut too_big = false;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let content = line.strip_prefix('.').unwrap_or(&line);
                    if raw.len() + content.len() > MAX_MESSAGE {
                        too_big = true;
                    } else {
                        raw.push_str(content);
                    }
                }
                if too_big {
                    b"552 5.3.4 Message too big\r\n"
                } else if shared.refusing.load(Ordering::Relaxed) {
                    b"451 4.3.0 Temporarily refusing mail, try again later\r\n"
                } else {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                    let received = Received {
                        id,
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        received_at: chrono::Utc::now(),
                        raw,
                    };
                    if let Some(dir) = &shared.dir {
                        let _ = std::fs::write(dir.join(format!("{id:08}.eml")), &received.raw);
                    }
                    shared.messages.lock().expect("sink lock").push(received);
                    b"250 OK queued\r\n"
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_from_the_angle_brackets() {
        assert_eq!(address(" FROM:<a@b.c> SIZE=10"), "a@b.c");
        assert_eq!(address("TO:<x@y.z>"), "x@y.z");
    }
}
