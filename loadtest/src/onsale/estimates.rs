//! How well the wait the waiting room showed at the join matched the wait (issue 19.1):
//! the share of buyers whose actual wait fell within ±30 % of the estimate.
//!
//! A buyer learns of its admission only at its next poll, so the actual admission lies
//! between the last poll that said "waiting" and the first that said "admitted"; the
//! estimate counts as met when that bracket meets the ±30 % band (widened by a second
//! for the admitter's step and the rounding of the estimate to whole seconds).

use serde::Serialize;

use super::crowd::Record;

/// Tolerance around the estimate.
const SHARE: f64 = 0.3;
const SLACK_MS: f64 = 1_000.0;

#[derive(Debug, Clone, Serialize)]
pub struct EtaAccuracy {
    /// Buyers told to wait at the join (with an estimate) and later admitted in place.
    pub buyers: u64,
    pub within: u64,
    /// `within / buyers`.
    pub share: f64,
    /// Median of actual wait ÷ estimate (1.0 = exact; above 1, the estimate was short).
    pub median_ratio: f64,
}

pub fn accuracy(records: &[Record]) -> Option<EtaAccuracy> {
    let mut within = 0;
    let mut ratios = Vec::new();
    for r in records {
        let (Some(eta), Some(joined), Some(admitted), Some(last_waiting)) = (
            r.join_eta_ms,
            r.joined_ms,
            r.admitted_ms,
            r.last_waiting_sent_ms,
        ) else {
            continue;
        };
        if r.requeued || eta == 0 || admitted <= joined {
            continue;
        }
        let earliest = last_waiting.saturating_sub(joined) as f64;
        let latest = (admitted - joined) as f64;
        let eta = eta as f64;
        let (low, high) = (
            eta * (1.0 - SHARE) - SLACK_MS,
            eta * (1.0 + SHARE) + SLACK_MS,
        );
        if latest >= low && earliest <= high {
            within += 1;
        }
        ratios.push((earliest + latest) / 2.0 / eta);
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let buyers = ratios.len() as u64;
    Some(EtaAccuracy {
        buyers,
        within,
        share: within as f64 / buyers as f64,
        median_ratio: ratios[ratios.len() / 2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onsale::crowd::{Plan, Record};

    fn waited(eta_ms: u64, last_waiting: u64, admitted: u64) -> Record {
        let mut r = Record::arriving(Plan::default(), String::new());
        r.joined_ms = Some(1_000);
        r.join_eta_ms = Some(eta_ms);
        r.last_waiting_sent_ms = Some(1_000 + last_waiting);
        r.admitted_ms = Some(1_000 + admitted);
        r
    }

    #[test]
    fn an_estimate_is_met_when_the_admission_could_have_fallen_in_its_band() {
        let records = [
            waited(20_000, 18_000, 21_000), // inside
            waited(20_000, 26_000, 27_000), // just inside the +30 % and slack
            waited(20_000, 40_000, 41_000), // twice as long
            waited(60_000, 5_000, 6_000),   // ten times shorter
        ];
        let a = accuracy(&records).unwrap();
        assert_eq!((a.buyers, a.within), (4, 2));
        assert!((a.share - 0.5).abs() < 1e-9);
        let mut requeued = waited(20_000, 18_000, 21_000);
        requeued.requeued = true;
        assert!(
            accuracy(&[requeued]).is_none(),
            "a new place is another wait"
        );
    }
}
