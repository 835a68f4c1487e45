//! How fast one source may open connections: a token bucket per source address, checked after the
//! PROXY header (so the source is the real caller's) and before the TLS handshake, so that a
//! flood of new connections costs the listener an `accept` and a close each, never a handshake.

use std::collections::HashMap;
use std::net::IpAddr;

use tokio::time::Instant;

/// Buckets kept before idle ones (full again) are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// The key a source is limited by: an IPv4 address, or an IPv6 address's /64 (one host usually
/// owns a whole /64, and could otherwise rotate addresses within it).
fn key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Token buckets by source: `rate` connections per second, bursts of up to `2 × rate`.
#[derive(Debug, Default)]
pub(crate) struct SetupRate {
    buckets: HashMap<IpAddr, Bucket>,
}

impl SetupRate {
    /// Whether `source` may open one more connection now (taking a token if so). A `rate` of 0
    /// means no limit.
    pub(crate) fn admit(&mut self, source: IpAddr, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let rate = f64::from(rate);
        let burst = 2.0 * rate;
        if self.buckets.len() >= PRUNE_ABOVE {
            // A bucket that has had time to refill completely says nothing a new one would not.
            let refill = std::time::Duration::from_secs_f64(burst / rate);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.refilled) < refill);
        }
        let bucket = self.buckets.entry(key(source)).or_insert(Bucket {
            tokens: burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| rate.admit(v4(1), 10, t0)).count();
        assert_eq!(admitted, 20, "the burst is twice the rate");
        assert!(!rate.admit(v4(1), 10, t0));
        // A tenth of a second later, one more.
        assert!(rate.admit(v4(1), 10, t0 + Duration::from_millis(100)));
        assert!(!rate.admit(v4(1), 10, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn one_source_at_its_limit_does_not_limit_another() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        while rate.admit(v4(1), 5, t0) {}
        assert!(rate.admit(v4(2), 5, t0));
    }

    #[test]
    fn zero_means_no_limit() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| rate.admit(v4(1), 0, t0)));
        assert_eq!(rate.len(), 0, "nothing remembered without a limit");
    }

    #[test]
    fn an_ipv6_host_is_limited_by_its_slash_64() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        let addr = |host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host));
        let admitted = (0..100u16).filter(|h| rate.admit(addr(*h), 5, t0)).count();
        assert_eq!(admitted, 10, "100 addresses of one /64 share one bucket");
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(rate.admit(other, 5, t0), "the next /64 has its own");
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(key(mapped), v4(7));
    }

    #[test]
    fn idle_sources_are_forgotten_when_many_are_remembered() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_ABOVE as u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rate.admit(source, 1, t0));
        }
        assert_eq!(rate.len(), PRUNE_ABOVE);
        assert!(rate.admit(v4(1), 1, t0 + Duration::from_secs(3)));
        assert_eq!(rate.len(), 1, "every full bucket was dropped");
    }

    proptest! {
        /// Over any sequence of attempts, one source is admitted at most burst + rate × elapsed.
        #[test]
        fn never_more_than_the_burst_plus_the_rate(
            rate_per_sec in 1u32..200,
            gaps_ms in proptest::collection::vec(0u64..50, 1..400),
        ) {
            let mut rate = SetupRate::default();
            let t0 = Instant::now();
            let mut now = t0;
            let mut admitted = 0u64;
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                admitted += u64::from(rate.admit(v4(1), rate_per_sec, now));
            }
            let elapsed = now.duration_since(t0).as_secs_f64();
            let bound = 2.0 * f64::from(rate_per_sec) + elapsed * f64::from(rate_per_sec);
            prop_assert!(admitted as f64 <= bound + 1e-9, "{admitted} > {bound}");
        }
    }
}
