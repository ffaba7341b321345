//! How long a visitor will wait: a range, from what the admitter will do, not only
//! from what it did.
//!
//! The admitter lets people in at the configured rate while checkout slots are free
//! (`max_active − active`); once they are all in use it can only admit as slots free
//! up. So the places that fit in the free slots move at the configured rate, and the
//! rest at the rate the slots can turn over: by Little's law a slot lasts
//! `active ÷ finished_per_min` minutes, so `max_active` slots serve
//! `max_active × finished_per_min ÷ active` people a minute — never more than the
//! configured rate, never fewer than if every slot lasted its whole TTL. Until the
//! slots have been seen turning over once, that figure is blended with the configured
//! rate in proportion (the first slots to finish are the quickest checkouts, and a
//! rate measured over a handful of them is noise).
//!
//! The observed admission rate alone — what the estimate used to be — is near zero at
//! the start of a sale, when its minute still holds the time before the first
//! admission: place 40 at 120/min was told 20 minutes and got in after 20 seconds.
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

impl Snapshot {
    /// People a minute the checkout slots can take once the free ones are filled.
    fn turnover_per_min(&self, rate: f64) -> f64 {
        let max_active = f64::from(self.settings.max_active);
        // Every slot ends within its TTL (used or lapsed).
        let slowest =
            (max_active * 60.0 / f64::from(self.settings.admission_ttl_seconds.max(1))).min(rate);
        if self.active == 0 || self.finished_per_min <= 0.0 {
            return rate;
        }
        let measured =
            (max_active * self.finished_per_min / self.active as f64).clamp(slowest, rate);
        // At the start of a sale the first slots are still in use, so what has finished
        // says little yet: trust it in step with how much of one full turnover of the
        // slots it was measured over, and the configured rate for the rest.
        let trust = (self.finished_in_window as f64 / max_active).min(1.0);
        trust * measured + (1.0 - trust) * rate
    }

    /// The wait of the visitor at `position` (1 = next), or `None` while nobody can be
    /// admitted (a rate of zero).
    pub fn eta(&self, position: u64) -> Option<Eta> {
        let rate = f64::from(self.settings.rate_per_minute);
        if rate <= 0.0 {
            return None;
        }
        let free = u64::from(self.settings.max_active).saturating_sub(self.active);
        let now = position.min(free) as f64;
        let later = (position as f64) - now;
        let minutes = now / rate + later / self.turnover_per_min(rate);
        let seconds = minutes * 60.0;
        let fastest = position as f64 * 60.0 / rate;
        Some(Eta {
            seconds: seconds.ceil() as u64,
            min_seconds: (seconds * 0.8).max(fastest).ceil() as u64,
            max_seconds: (seconds * 1.25).ceil() as u64,
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::settings::{AdmissionSettings, Mode};

    fn snap(rate: u32, max_active: u32, active: u64, finished: f64) -> Snapshot {
        let settings = AdmissionSettings {
            mode: Mode::On,
            rate_per_minute: rate,
            max_active,
            admission_ttl_seconds: 600,
            opens_at: None,
        };
        Snapshot {
            finished_per_min: finished,
            finished_in_window: u64::from(max_active),
            active,
            ..Snapshot::at_rest(settings, 0, 100_000)
        }
    }

    #[test]
    fn at_the_start_of_a_sale_the_configured_rate_counts_not_the_empty_minute() {
        // The case: place 40 at 120/min, nothing seen yet.
        let e = snap(120, 500, 0, 0.0).eta(40).unwrap();
        assert_eq!(e.seconds, 20);
        assert!(e.min_seconds <= 20 && e.max_seconds >= 20 && e.max_seconds <= 25);
    }

    #[test]
    fn full_checkout_slots_move_at_the_rate_they_free_up() {
        // All 100 slots in use, 30/min finishing: 60 people take two minutes.
        let e = snap(600, 100, 100, 30.0).eta(60).unwrap();
        assert_eq!(e.seconds, 120);
        // Hardly anything finishing: every slot still ends within its 600 s TTL.
        assert_eq!(snap(600, 100, 100, 0.1).eta(10).unwrap().seconds, 60);
    }

    #[test]
    fn free_slots_go_at_the_configured_rate_then_the_rest_as_slots_turn_over() {
        // 20 free slots at 600/min (2 s); 80 in use with 40/min finishing is a slot
        // lasting 2 min, so 100 slots take 50/min: 40 more people take 48 s.
        let e = snap(600, 100, 80, 40.0).eta(60).unwrap();
        assert_eq!(e.seconds, 50);
        // Only a tenth of the slots seen finishing: mostly the configured rate still.
        let early = Snapshot {
            finished_in_window: 10,
            ..snap(600, 100, 100, 30.0)
        };
        assert_eq!(early.eta(60).unwrap().seconds, 7);
        // Slots turning over faster than the rate: the rate is the limit.
        assert_eq!(snap(600, 100, 100, 5_000.0).eta(600).unwrap().seconds, 60);
    }

    #[test]
    fn the_range_never_promises_more_than_the_configured_rate_can_do() {
        for (rate, max, active, finished, position) in [
            (120, 500, 0, 0.0, 1),
            (120, 500, 0, 500.0, 40),
            (600, 100, 100, 5_000.0, 1_000),
            (60, 10, 10, 1.0, 3),
        ] {
            let e = snap(rate, max, active, finished).eta(position).unwrap();
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
