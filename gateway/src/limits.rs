//! Per-client rate limits at the edge, and who the client is.
//!
//! The client address is the TCP peer unless that peer is a configured trusted proxy,
//! in which case the right-most `X-Forwarded-For` entry that is not itself a trusted
//! proxy is used: entries to the left of it are whatever the client chose to send.
//! Several `X-Forwarded-For` headers are one list in order (RFC 9110, 5.3), so the
//! last header, the one our proxy added, is read first; a client's own header in
//! front of it never counts.
//!
//! Each limit is kept in the gateway's memory, so with several gateways behind a
//! round-robin balancer a client gets it once per gateway. That is right for what
//! these protect — each gateway's own work — except for taking places in line: the
//! join limit is also charged in Redis, in the event's shard, as part of the join
//! itself (`crate::arrivals`), so that one holds whatever the number of gateways.
//!
//! A client is limited under its bucket: an IPv4 address, or the IPv6 network of the
//! configured prefix (a /64 by default) its address is in. An ISP hands one customer
//! a /64 or more, so keying on the whole IPv6 address would give one client 2^64
//! fresh buckets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
    /// Every request that takes a new place in line, whichever path it came by.
    pub join: Limiter,
    /// Waiting-room requests (page, join, status polls).
    pub status: Limiter,
    pub access_link: Limiter,
    /// Payment-provider webhooks.
    pub webhook: Limiter,
    /// Hold requests without an admission (they pass only while the queue is off).
    pub holds_without_admission: Limiter,
    pub allowlist: Vec<IpNet>,
    /// IPv6 clients share the bucket of their network of this prefix length.
    pub ipv6_bucket_prefix: u8,
}

impl Limits {
    pub fn from_config(cfg: &crate::config::GatewayConfig) -> Self {
        Self {
            join: Limiter::per_minute(cfg.join_per_min),
            status: Limiter::per_minute(cfg.status_per_min),
            access_link: Limiter::per_minute(cfg.access_link_per_min),
            webhook: Limiter::per_minute(cfg.webhook_per_min),
            holds_without_admission: Limiter::per_minute(cfg.holds_without_admission_per_min),
            allowlist: cfg.allowlist.clone(),
            ipv6_bucket_prefix: cfg.ipv6_bucket_prefix,
        }
    }

    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowlist.iter().any(|n| n.contains(&ip))
    }

    pub fn check(&self, limiter: &Limiter, ip: IpAddr) -> Result<(), EdgeError> {
        if self.allowed(ip) {
            return Ok(());
        }
        limiter.check(bucket(ip, self.ipv6_bucket_prefix))
    }

    /// The bucket a limit shared by every gateway (the join limit, counted in Redis)
    /// charges `ip` to; `None` for an allow-listed client.
    pub fn shared_bucket(&self, ip: IpAddr) -> Option<String> {
        (!self.allowed(ip)).then(|| bucket(ip, self.ipv6_bucket_prefix).to_string())
    }

    pub fn forget_idle(&self) {
        self.join.forget_idle();
        self.status.forget_idle();
        self.access_link.forget_idle();
        self.webhook.forget_idle();
        self.holds_without_admission.forget_idle();
    }
}

/// The key a client is limited under: an IPv4 address as it is (also when it arrives
/// IPv4-mapped), an IPv6 address cut to its network of `v6_prefix` bits.
pub fn bucket(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// The client behind `peer`. `forwarded_for` is every `X-Forwarded-For` header value
/// in the order received; they are read from the right, across headers, and only
/// while the hop is a trusted proxy. An entry that is not an address (`ip`, or
/// `ip:port` as some proxies write it) ends the walk at the hop that passed it on:
/// skipping it would let whatever the client wrote further left count.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| {
        let ip = ip.to_canonical();
        trusted.iter().any(|n| n.contains(&ip))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hop = peer;
    for value in forwarded_for.rev() {
        for entry in value.rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = address(entry) else {
                return hop;
            };
            if !is_trusted(&ip) {
                return ip;
            }
            hop = ip;
        }
    }
    hop
}

fn address(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?;
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff<'a>(headers: &'a [&'a str]) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        headers.iter().map(|h| h.as_bytes())
    }

    #[test]
    fn forwarded_for_is_honoured_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = ["6.6.6.6, 1.2.3.4, 10.0.0.7"];
        assert_eq!(client_ip(ip("10.0.0.1"), xff(&h), &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("5.5.5.5"), xff(&h), &trusted), ip("5.5.5.5"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), xff(&[]), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_trusted_proxys_own_header_counts_when_a_client_sends_another() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = ip("10.0.0.1");
        // The client's header first, the proxy's appended as a second header.
        let h = ["6.6.6.6", "1.2.3.4"];
        assert_eq!(client_ip(peer, xff(&h), &trusted), ip("1.2.3.4"));
        let h = ["6.6.6.6, 7.7.7.7", "1.2.3.4, 10.0.0.7"];
        assert_eq!(client_ip(peer, xff(&h), &trusted), ip("1.2.3.4"));
        // A port is allowed; garbage where the client should be never reaches left.
        let h = ["6.6.6.6", "1.2.3.4:5555"];
        assert_eq!(client_ip(peer, xff(&h), &trusted), ip("1.2.3.4"));
        let h = ["6.6.6.6", "unknown, 10.0.0.7"];
        assert_eq!(client_ip(peer, xff(&h), &trusted), ip("10.0.0.7"));
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_network() {
        let a = bucket(ip("2001:db8:1:2:aaaa::1"), 64);
        assert_eq!(a, bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64));
        assert_ne!(a, bucket(ip("2001:db8:1:3::1"), 64));
        assert_eq!(bucket(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(bucket(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(bucket(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(bucket(ip("1.2.3.4"), 64), ip("1.2.3.4"));
    }

    #[test]
    fn a_flood_from_one_address_is_limited_and_others_are_not() {
        let per_min = || Limiter::per_minute(NonZeroU32::new(30).unwrap());
        let limits = Limits {
            join: per_min(),
            status: per_min(),
            access_link: per_min(),
            webhook: per_min(),
            holds_without_admission: per_min(),
            allowlist: vec!["127.0.0.0/8".parse().unwrap()],
            ipv6_bucket_prefix: 64,
        };
        let flood = (0..50)
            .filter(|_| limits.check(&limits.join, ip("1.1.1.1")).is_err())
            .count();
        assert!(flood >= 40, "only {flood} of 50 refused");
        assert!(limits.check(&limits.join, ip("2.2.2.2")).is_ok());
        assert!((0..500).all(|_| limits.check(&limits.join, ip("127.0.0.1")).is_ok()));
    }
}
