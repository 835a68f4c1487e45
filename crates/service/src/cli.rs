//! Command-line pieces both binaries share: durations (`500ms`, `30s`, `5m`, `2h`) and the
//! connection-limit flags of their listeners.

use std::time::Duration;

use crate::conn::ConnectionLimits;

/// Parses a duration: a whole number with a unit `ms`, `s`, `m` or `h` (a bare number is seconds).
/// Zero is refused: every duration these binaries take bounds a wait that must end.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| text.split_at(i))
        .unwrap_or((text, "s"));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 5m or 2h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(duration)
}

/// The connection limits of a binary's main listener, as flags (see [`ConnectionLimits`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectionArgs {
    /// Most connections serving requests at once; one more is answered 503 and closed.
    #[arg(
        long,
        env = "KUBESCRIBE_MAX_CONNECTIONS",
        default_value_t = ConnectionLimits::default().max_connections,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Most connections serving requests at once from one source address (the PROXY header's
    /// source with --proxy-protocol); one more is answered 429 and closed.
    #[arg(
        long,
        env = "KUBESCRIBE_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = ConnectionLimits::default().max_connections_per_source,
        value_name = "N"
    )]
    pub max_connections_per_source: usize,

    /// Most connections still being set up (no complete request yet); when full, the oldest from
    /// the source address with the most is closed to make room.
    #[arg(
        long,
        env = "KUBESCRIBE_MAX_PENDING_CONNECTIONS",
        default_value_t = ConnectionLimits::default().max_pending,
        value_name = "N"
    )]
    pub max_pending_connections: usize,

    /// New connections one source address may open per second (bursts of twice as many; an IPv6
    /// source by its /64); past that a connection waits its turn (up to a second), and more are
    /// closed at once, before any TLS handshake. 0: no limit.
    #[arg(
        long,
        env = "KUBESCRIBE_MAX_CONNECTION_RATE_PER_SOURCE",
        default_value_t = ConnectionLimits::default().max_connection_rate_per_source,
        value_name = "N"
    )]
    pub max_connection_rate_per_source: u32,

    /// Time for a new connection's PROXY header, TLS handshake and first request head.
    #[arg(
        long,
        env = "KUBESCRIBE_HANDSHAKE_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub handshake_timeout: Duration,

    /// A connection with no request in flight for this long is closed (streaming responses and
    /// uploads count as in flight).
    #[arg(
        long,
        env = "KUBESCRIBE_IDLE_TIMEOUT",
        default_value = "2m",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub idle_timeout: Duration,
}

impl ConnectionArgs {
    /// The limits these flags set; an error names the flag at fault.
    pub fn limits(&self) -> Result<ConnectionLimits, (&'static str, &'static str)> {
        for (flag, value) in [
            ("--max-connections", self.max_connections),
            (
                "--max-connections-per-source",
                self.max_connections_per_source,
            ),
            ("--max-pending-connections", self.max_pending_connections),
        ] {
            if value == 0 {
                return Err((flag, "must be at least 1"));
            }
        }
        Ok(ConnectionLimits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_pending: self.max_pending_connections,
            max_connection_rate_per_source: self.max_connection_rate_per_source,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
        })
    }
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        Self {
            max_connections: limits.max_connections,
            max_connections_per_source: limits.max_connections_per_source,
            max_pending_connections: limits.max_pending,
            max_connection_rate_per_source: limits.max_connection_rate_per_source,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        connections: ConnectionArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_match_the_library_and_zero_is_refused() {
        let cli = Cli::try_parse_from(["x"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.connections, ConnectionArgs::default());
        assert_eq!(cli.connections.limits(), Ok(ConnectionLimits::default()));
        let cli = Cli::try_parse_from(["x", "--max-connections-per-source", "0"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cli.connections.limits(),
            Err(("--max-connections-per-source", "must be at least 1"))
        );
        assert!(Cli::try_parse_from(["x", "--idle-timeout", "0s"]).is_err());
    }
}
