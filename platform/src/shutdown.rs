//! Stopping: ctrl-c or SIGTERM (what a service manager sends). A process makes one
//! [`Shutdown`] and hands a clone to its server and to every long-running task, so a
//! stop drains requests and ends the workers instead of cutting them mid-step; tests
//! make one with [`Shutdown::new`] and stop the service they started with its trigger.

use tokio::sync::watch;

/// Resolves on ctrl-c or SIGTERM.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// A stop every holder hears; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Stops the [`Shutdown`] it was made with (and every clone of it), when told or when
/// dropped: a test's service stops with the test.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// A shutdown stopped only by its trigger.
    pub fn new() -> (Trigger, Self) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Self(rx))
    }

    /// A shutdown stopped by ctrl-c or SIGTERM (the binaries').
    pub fn on_signal() -> Self {
        let (trigger, shutdown) = Self::new();
        tokio::spawn(async move {
            signal().await;
            trigger.stop();
        });
        shutdown
    }

    /// Resolves once stopped (at once if it already is), or once its trigger is gone.
    pub async fn stopped(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_hears_the_stop() {
        let (trigger, shutdown) = Shutdown::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(shutdown.clone().stopped()))
            .collect();
        assert!(!shutdown.is_stopped());
        trigger.stop();
        for w in waiters {
            w.await.unwrap();
        }
        assert!(shutdown.is_stopped());
        // A late listener returns at once.
        shutdown.stopped().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_stops_too() {
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        shutdown.stopped().await;
    }
}
