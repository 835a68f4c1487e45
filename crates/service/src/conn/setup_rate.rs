//! How fast one source may open connections: a token bucket per source address, checked after the
//! PROXY header (so the source is the real caller's) and before the TLS handshake, so that a
//! flood of new connections costs the listener an `accept` and a close each, never a handshake.
//!
//! A source a little over its rate is paced, not refused: its connection waits (at most
//! [`MAX_WAIT`]) for the token it will have, so a client that opens a connection per request keeps
//! working at the rate. Only a source further ahead than that is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets kept before idle ones (full again) are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// The longest a connection waits for its source's next token before it is refused instead.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// What a source's next connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Set up at once.
    Now,
    /// Set up after this wait (at most [`MAX_WAIT`]): its token is spoken for.
    After(Duration),
    /// Refused: the source is more than [`MAX_WAIT`] ahead of its rate.
    Refused,
}

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
    /// Whether and when `source` may set one more connection up, taking its token if it may. A
    /// `rate` of 0 means no limit. Tokens go below zero for connections told to wait, so the waits
    /// of a source's queued connections are spaced by `1 / rate`.
    pub(crate) fn admit(&mut self, source: IpAddr, rate: u32, now: Instant) -> Admission {
        if rate == 0 {
            return Admission::Now;
        }
        let rate = f64::from(rate);
        let burst = 2.0 * rate;
        if self.buckets.len() >= PRUNE_ABOVE {
            // A bucket that has had time to refill completely says nothing a new one would not.
            let refill = Duration::from_secs_f64(burst / rate + MAX_WAIT.as_secs_f64());
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
            return Admission::Now;
        }
        let wait = (1.0 - bucket.tokens) / rate;
        if wait > MAX_WAIT.as_secs_f64() {
            return Admission::Refused;
        }
        bucket.tokens -= 1.0;
        Admission::After(Duration::from_secs_f64(wait))
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

    use proptest::prelude::*;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn now_count(
        rate: &mut SetupRate,
        source: IpAddr,
        per_sec: u32,
        at: Instant,
        n: usize,
    ) -> usize {
        (0..n)
            .filter(|_| rate.admit(source, per_sec, at) == Admission::Now)
            .count()
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_a_second_of_paced_waits_then_refusals() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        assert_eq!(
            now_count(&mut rate, v4(1), 10, t0, 20),
            20,
            "the burst is twice the rate"
        );
        // The next ten wait 0.1 s, 0.2 s, … 1 s: one token each, at the rate.
        for n in 1..=10u64 {
            let Admission::After(wait) = rate.admit(v4(1), 10, t0) else {
                panic!("connection {n} past the burst is paced");
            };
            assert!(
                wait.abs_diff(Duration::from_millis(100 * n)) < Duration::from_micros(1),
                "{n}: {wait:?}"
            );
        }
        assert_eq!(
            rate.admit(v4(1), 10, t0),
            Admission::Refused,
            "more than a second ahead"
        );
        // Refusals take no token: a second later the queue has drained, and then one more may wait.
        assert!(matches!(
            rate.admit(v4(1), 10, t0 + Duration::from_secs(1)),
            Admission::After(w) if w <= Duration::from_millis(101)
        ));
    }

    #[test]
    fn one_source_at_its_limit_does_not_limit_another() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        while rate.admit(v4(1), 5, t0) != Admission::Refused {}
        assert_eq!(rate.admit(v4(2), 5, t0), Admission::Now);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        assert_eq!(now_count(&mut rate, v4(1), 0, t0, 10_000), 10_000);
        assert_eq!(rate.len(), 0, "nothing remembered without a limit");
    }

    #[test]
    fn an_ipv6_host_is_limited_by_its_slash_64() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        let addr = |host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host));
        let admitted = (0..100u16)
            .filter(|h| rate.admit(addr(*h), 5, t0) == Admission::Now)
            .count();
        assert_eq!(admitted, 10, "100 addresses of one /64 share one bucket");
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(
            rate.admit(other, 5, t0),
            Admission::Now,
            "the next /64 has its own"
        );
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(key(mapped), v4(7));
    }

    #[test]
    fn idle_sources_are_forgotten_when_many_are_remembered() {
        let mut rate = SetupRate::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_ABOVE as u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(rate.admit(source, 1, t0), Admission::Now);
        }
        assert_eq!(rate.len(), PRUNE_ABOVE);
        assert_eq!(
            rate.admit(v4(1), 1, t0 + Duration::from_secs(4)),
            Admission::Now
        );
        assert_eq!(rate.len(), 1, "every full bucket was dropped");
    }

    proptest! {
        /// Over any sequence of attempts, the connections of one source that start their
        /// handshakes by any time T number at most burst + rate × (T − first attempt), and none
        /// waits longer than MAX_WAIT.
        #[test]
        fn handshakes_never_start_faster_than_the_burst_plus_the_rate(
            rate_per_sec in 1u32..200,
            gaps_ms in proptest::collection::vec(0u64..50, 1..600),
        ) {
            let mut rate = SetupRate::default();
            let t0 = Instant::now();
            let mut now = t0;
            let mut starts = Vec::new();
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                match rate.admit(v4(1), rate_per_sec, now) {
                    Admission::Now => starts.push(now),
                    Admission::After(wait) => {
                        prop_assert!(wait <= MAX_WAIT);
                        starts.push(now + wait);
                    }
                    Admission::Refused => {}
                }
            }
            starts.sort();
            let per_sec = f64::from(rate_per_sec);
            for (i, start) in starts.iter().enumerate() {
                let bound = 2.0 * per_sec + start.duration_since(t0).as_secs_f64() * per_sec;
                prop_assert!((i + 1) as f64 <= bound + 1e-6, "{} > {bound}", i + 1);
            }
        }
    }
}
