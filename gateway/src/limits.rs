//! Per-IP rate limits at the edge, and who the client is.
//!
//! The client address is the TCP peer unless that peer is a configured trusted proxy,
//! in which case the right-most `X-Forwarded-For` entry that is not itself a trusted
//! proxy is used: entries to the left of it are whatever the client chose to send.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::EdgeError;

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limiter {
    /// `per_minute` sustained, with a burst of a sixth of it (at least 5) so a page
    /// load plus a few quick polls never trips it.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        let burst = NonZeroU32::new((per_minute.get() / 6).max(5)).expect("non-zero");
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), EdgeError> {
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            EdgeError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            }
        })
    }

    /// Forgets addresses that have been quiet, so the map does not grow without bound.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The per-route limiters plus the allow-list.
pub struct Limits {
    pub join: Limiter,
    pub status: Limiter,
    pub access_link: Limiter,
    pub allowlist: Vec<IpNet>,
}

impl Limits {
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.allowlist.iter().any(|n| n.contains(&ip))
    }

    pub fn check(&self, limiter: &Limiter, ip: IpAddr) -> Result<(), EdgeError> {
        if self.allowed(ip) {
            return Ok(());
        }
        limiter.check(ip)
    }

    pub fn forget_idle(&self) {
        self.join.forget_idle();
        self.status.forget_idle();
        self.access_link.forget_idle();
    }
}

pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    xff.rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = Some("6.6.6.6, 1.2.3.4, 10.0.0.7");
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("5.5.5.5"), xff, &trusted), ip("5.5.5.5"));
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn a_flood_from_one_address_is_limited_and_others_are_not() {
        let limits = Limits {
            join: Limiter::per_minute(NonZeroU32::new(30).unwrap()),
            status: Limiter::per_minute(NonZeroU32::new(30).unwrap()),
            access_link: Limiter::per_minute(NonZeroU32::new(30).unwrap()),
            allowlist: vec!["127.0.0.0/8".parse().unwrap()],
        };
        let flood = (0..50)
            .filter(|_| limits.check(&limits.join, ip("1.1.1.1")).is_err())
            .count();
        assert!(flood >= 40, "only {flood} of 50 refused");
        assert!(limits.check(&limits.join, ip("2.2.2.2")).is_ok());
        assert!((0..500).all(|_| limits.check(&limits.join, ip("127.0.0.1")).is_ok()));
    }
}
