//! How long a visitor will wait: a range, from what the admitter will do, not only
//! from what it did.
//!
//! The admitter lets people in at the configured rate while checkout slots are free
//! (`max_active − active`); once they are all in use it can only admit as slots free
//! up, which is then exactly the rate it is observed admitting at. So the places that
//! fit in the free slots move at the configured rate, and the rest at the configured
//! rate while slots are free, or at the observed rate once the slots are full (never
//! slower than every slot lasting its whole TTL, never faster than the configured
//! rate). The observed rate alone — what the estimate used to be — is near zero at the
//! start of a sale, when its minute still holds the time before the first admission:
//! place 40 at 120/min was told 20 minutes and got in after 20 seconds.
//!
//! The range is the estimate −20 %/+25 %, but never faster than the configured rate
//! can admit: the queue cannot meet a promise faster than that.

use crate::queue::Snapshot;

/// Waits in seconds: the estimate and the range shown around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eta {
    pub seconds: u64,
    pub min_seconds: u64,
    pub max_seconds: u64,
}

/// Share of `max_active` in use from which the observed rate is the completion rate.
const SATURATED: f64 = 0.9;

impl Snapshot {
    /// The wait of the visitor at `position` (1 = next), or `None` while nobody can be
    /// admitted (a rate of zero).
    pub fn eta(&self, position: u64) -> Option<Eta> {
        let rate = f64::from(self.settings.rate_per_minute);
        if rate <= 0.0 {
            return None;
        }
        let max_active = f64::from(self.settings.max_active);
        let active = self.active as f64;
        // Every slot ends within its TTL (used or lapsed), so slots free up at least
        // this fast even when nobody finishes a checkout.
        let slowest =
            (max_active * 60.0 / f64::from(self.settings.admission_ttl_seconds.max(1))).min(rate);
        let later_rate = if active >= SATURATED * max_active {
            self.observed_per_min.clamp(slowest, rate)
        } else {
            rate
        };
        let position = position as f64;
        let now = position.min((max_active - active).max(0.0));
        let minutes = now / rate + (position - now) / later_rate;
        let seconds = minutes * 60.0;
        let fastest = position * 60.0 / rate;
        Some(Eta {
            seconds: seconds.ceil() as u64,
            min_seconds: (seconds * 0.8).max(fastest).ceil() as u64,
            max_seconds: (seconds * 1.25).ceil() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::settings::{AdmissionSettings, Mode};

    fn snap(rate: u32, max_active: u32, active: u64, observed: f64) -> Snapshot {
        Snapshot {
            settings: AdmissionSettings {
                mode: Mode::On,
                rate_per_minute: rate,
                max_active,
                admission_ttl_seconds: 600,
                opens_at: None,
            },
            head: 0,
            tail: 100_000,
            observed_per_min: observed,
            active,
            claimed: 0,
            title: None,
            at: Utc::now(),
        }
    }

    #[test]
    fn at_the_start_of_a_sale_the_configured_rate_counts_not_the_empty_minute() {
        // The case: place 40 at 120/min, next to nothing observed yet.
        let e = snap(120, 500, 0, 4.0).eta(40).unwrap();
        assert_eq!(e.seconds, 20);
        assert!(e.min_seconds <= 20 && e.max_seconds >= 20 && e.max_seconds <= 25);
    }

    #[test]
    fn full_checkout_slots_move_at_the_rate_they_free_up() {
        // All 100 slots in use, 30/min finishing: 60 people take two minutes.
        let e = snap(600, 100, 100, 30.0).eta(60).unwrap();
        assert_eq!(e.seconds, 120);
        // Nothing seen finishing yet: every slot ends within its 600 s TTL at worst.
        assert_eq!(snap(600, 100, 100, 0.0).eta(10).unwrap().seconds, 60);
    }

    #[test]
    fn free_slots_go_at_the_configured_rate_then_the_rest_as_slots_free() {
        // 8 free slots at 600/min (0.8 s), then 52 more at the observed 60/min (52 s).
        let e = snap(600, 100, 92, 60.0).eta(60).unwrap();
        assert_eq!(e.seconds, 53);
        // Most slots free: the observed rate says nothing about finishing yet.
        assert_eq!(snap(600, 100, 40, 60.0).eta(60).unwrap().seconds, 6);
    }

    #[test]
    fn the_range_never_promises_more_than_the_configured_rate_can_do() {
        for (rate, max, active, observed, position) in [
            (120, 500, 0, 0.0, 1),
            (120, 500, 0, 500.0, 40),
            (600, 100, 100, 5_000.0, 1_000),
            (60, 10, 10, 1.0, 3),
        ] {
            let e = snap(rate, max, active, observed).eta(position).unwrap();
            let fastest = (position as f64 * 60.0 / f64::from(rate)).ceil() as u64;
            assert!(e.min_seconds >= fastest, "{e:?} vs {fastest}");
            assert!(
                e.min_seconds <= e.seconds && e.seconds <= e.max_seconds,
                "{e:?}"
            );
        }
        assert_eq!(snap(0, 100, 0, 50.0).eta(5), None, "nobody is being let in");
    }
}
