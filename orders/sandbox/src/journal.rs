//! The books on disk: every change appended as one JSON line, read back at start-up,
//! so a sandbox that is killed and started again still knows every intent, charge,
//! refund and idempotency record — as a real provider never forgets a charge. Without
//! it a crash between "charged" and the webhook would leave a buyer charged with no
//! record anywhere, which is a fault of the test double, not of the code under test.
//!
//! Lines are written under the ledger's lock, in the order the changes happened, one
//! `write` per line; a line cut short by a crash is skipped when reading back. The
//! file survives the process, not the machine (no fsync): that is the fault model.
//! Webhooks still waiting for delivery are not kept; the merchant's reconciliation
//! is what finds those payments.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ledger::{Change, Ledger};

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creating) the journal and replays it into a fresh ledger.
    pub fn open(path: &Path) -> std::io::Result<(Self, Ledger)> {
        let mut ledger = Ledger::default();
        let mut skipped = 0;
        if path.exists() {
            for line in BufReader::new(File::open(path)?).lines() {
                match serde_json::from_str::<Change>(&line?) {
                    Ok(change) => ledger.restore(change),
                    Err(_) => skipped += 1,
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(skipped, "journal lines that could not be read were skipped");
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok((
            Self {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
            ledger,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the changes. A failure is logged, not returned: the operation has
    /// happened and its answer must still go out.
    pub fn append(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        for c in changes {
            if serde_json::to_writer(&mut buf, c).is_ok() {
                buf.push(b'\n');
            }
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(&buf) {
            tracing::error!(error = %e, "journal write failed");
        }
    }
}
