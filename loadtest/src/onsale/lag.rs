//! The simulator's own lag: how late its tasks wake while it shares the machine with
//! the stack. Every latency the crowd records includes that delay, so the report puts
//! it beside them: a lag tail close to a latency tail says the machine, not the
//! system under test, decides the last milliseconds.

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
