//! The machine's share of the latencies. The simulator's own lag: how late its tasks
//! wake while it shares the machine with the stack; every latency the crowd records
//! includes that delay. And the connections the kernel dropped because an accept queue
//! was full: each costs its request a SYN retry after 1 s, 3 s or 7 s. The report puts
//! both beside the latencies, so a tail that is the machine's is not blamed on the
//! system under test (or the other way round).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinHandle;

/// How often the probe asks to be woken. Tokio's timer has millisecond resolution, so
/// up to ~1 ms of every reading is the timer itself.
const TICK: Duration = Duration::from_millis(10);

/// A task on the simulator's runtime that sleeps for [`TICK`] again and again and
/// records how much later than asked it woke.
pub struct LagProbe {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Histogram<u64>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LagFigures {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LagProbe {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut lag = super::stats::histogram();
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    tokio::time::sleep(TICK).await;
                    let late = asked.elapsed().saturating_sub(TICK);
                    let _ = lag.record((late.as_micros() as u64).max(1));
                }
                lag
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> LagFigures {
        self.stop.store(true, Ordering::Relaxed);
        let lag = self
            .task
            .await
            .unwrap_or_else(|_| super::stats::histogram());
        figures(&lag)
    }
}

/// TCP counters of the whole machine (`/proc/net/netstat`), between two readings.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TcpDrops {
    /// Connections dropped because a listener's accept queue was full.
    pub listen_overflows: u64,
    /// SYNs sent again because the first went unanswered.
    pub syn_retransmits: u64,
}

impl TcpDrops {
    /// The machine's counters now; zeros where they cannot be read (not Linux).
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/net/netstat")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Self {
        // Pairs of lines: "TcpExt: Name Name ..." then "TcpExt: 1 2 ...".
        let lines: Vec<&str> = text.lines().collect();
        let mut drops = Self::default();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            if !names.starts_with("TcpExt:") {
                continue;
            }
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                let value = value.parse().unwrap_or(0);
                match name {
                    "ListenOverflows" => drops.listen_overflows = value,
                    "TCPSynRetrans" => drops.syn_retransmits = value,
                    _ => {}
                }
            }
        }
        drops
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            syn_retransmits: self.syn_retransmits.saturating_sub(earlier.syn_retransmits),
        }
    }
}

fn figures(lag: &Histogram<u64>) -> LagFigures {
    let ms = |us: u64| us as f64 / 1000.0;
    LagFigures {
        samples: lag.len(),
        p50_ms: ms(lag.value_at_quantile(0.5)),
        p99_ms: ms(lag.value_at_quantile(0.99)),
        max_ms: ms(lag.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_drops_are_read_from_netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 3 7894 7894 6755\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        let now = TcpDrops::parse(text);
        assert_eq!(now.listen_overflows, 7894);
        assert_eq!(now.syn_retransmits, 6755);
        let earlier = TcpDrops {
            listen_overflows: 7000,
            syn_retransmits: 6755,
        };
        assert_eq!(
            now.since(&earlier),
            TcpDrops {
                listen_overflows: 894,
                syn_retransmits: 0
            }
        );
    }

    /// A runtime whose only thread is kept busy wakes the probe late, and the probe
    /// says so.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lag() {
        let probe = LagProbe::start();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Hog the only thread: the probe cannot run for 80 ms.
        std::thread::sleep(Duration::from_millis(80));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let lag = probe.finish().await;
        assert!(lag.samples >= 3, "{lag:?}");
        assert!(lag.max_ms >= 50.0, "the 80 ms block was not seen: {lag:?}");
        assert!(lag.p50_ms < 20.0, "quiet ticks should be on time: {lag:?}");
    }
}
