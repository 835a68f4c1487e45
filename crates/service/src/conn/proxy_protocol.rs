//! PROXY protocol (v2, and v1) on accepted connections: the header's source
//! address is the caller's address.
//!
//! Parsing is done by the maintained `ppp` crate; this module only reads the
//! exact header bytes off the socket (never more, so nothing needs to be pushed
//! back), bounds time and memory, and maps the result to a caller address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bound on reading a PROXY protocol header (Tailscale uses 10 s too).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The 12-byte signature that starts every v2 header.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest possible v1 header, CRLF included (HAProxy spec).
pub(crate) const V1_MAX_LEN: usize = 107;

/// Why a connection's PROXY header was rejected. The connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// No complete header within the timeout.
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The peer closed or the read failed before a full header arrived.
    #[error("connection ended before a complete PROXY protocol header: {0}")]
    Io(#[source] std::io::Error),
    /// The first bytes are neither a v2 signature nor `PROXY `.
    #[error("connection does not start with a PROXY protocol header (is the sender configured with ProxyProtocol: 2?)")]
    Missing,
    /// A v1 line longer than 107 bytes.
    #[error("PROXY v1 header longer than 107 bytes")]
    V1TooLong,
    /// The v1 header did not parse.
    #[error("malformed PROXY protocol header: {0}")]
    MalformedV1(#[source] ppp::v1::BinaryParseError),
    /// The v2 header did not parse.
    #[error("malformed PROXY protocol header: {0}")]
    MalformedV2(#[source] ppp::v2::ParseError),
    /// A PROXY (not LOCAL) header whose address family cannot name a caller.
    #[error("PROXY protocol header carries no IP source address ({0})")]
    NoSourceAddress(&'static str),
}

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxiedPeer {
    /// The real caller's address.
    Address(SocketAddr),
    /// A `LOCAL` command (health checks from the forwarder itself): use the TCP peer.
    Local,
}

/// Parse a complete header (v2 or v1) from `bytes`, which must hold exactly one
/// header. Never panics, for any input.
pub fn parse_header(bytes: &[u8]) -> Result<ProxiedPeer, ProxyHeaderError> {
    let source = |ip: IpAddr, port: u16| Ok(ProxiedPeer::Address(SocketAddr::new(ip, port)));
    match ppp::HeaderResult::parse(bytes) {
        ppp::HeaderResult::V2(Ok(h)) if h.command == ppp::v2::Command::Local => {
            Ok(ProxiedPeer::Local)
        }
        ppp::HeaderResult::V2(Ok(h)) => match h.addresses {
            ppp::v2::Addresses::IPv4(a) => source(a.source_address.into(), a.source_port),
            ppp::v2::Addresses::IPv6(a) => source(a.source_address.into(), a.source_port),
            ppp::v2::Addresses::Unix(_) => Err(ProxyHeaderError::NoSourceAddress("AF_UNIX")),
            ppp::v2::Addresses::Unspecified => Err(ProxyHeaderError::NoSourceAddress("AF_UNSPEC")),
        },
        ppp::HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::MalformedV2(e)),
        ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => source(a.source_address.into(), a.source_port),
            ppp::v1::Addresses::Tcp6(a) => source(a.source_address.into(), a.source_port),
            ppp::v1::Addresses::Unknown => Ok(ProxiedPeer::Local),
        },
        ppp::HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::MalformedV1(e)),
    }
}

/// Read exactly one PROXY header from `io` within `timeout` and parse it.
/// Reads no byte past the header, so the stream can be handed on as is.
/// Memory is bounded by the v2 length field (at most 16 + 65535 bytes).
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
    timeout: Duration,
) -> Result<ProxiedPeer, ProxyHeaderError> {
    match tokio::time::timeout(timeout, read_header_bytes(io)).await {
        Err(_) => Err(ProxyHeaderError::Timeout(timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(bytes)) => parse_header(&bytes),
    }
}

async fn read_header_bytes<R: AsyncRead + Unpin>(io: &mut R) -> Result<Vec<u8>, ProxyHeaderError> {
    let io_err = ProxyHeaderError::Io;
    // v1's shortest header ("PROXY UNKNOWN\r\n") is 15 bytes, so read 6 first,
    // then decide how much more to take.
    let mut buf = vec![0u8; 6];
    io.read_exact(&mut buf).await.map_err(io_err)?;
    if buf[..] == V2_SIGNATURE[..6] {
        buf.resize(16, 0);
        io.read_exact(&mut buf[6..]).await.map_err(io_err)?;
        if buf[..12] != V2_SIGNATURE {
            return Err(ProxyHeaderError::Missing);
        }
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        buf.resize(16 + len, 0);
        io.read_exact(&mut buf[16..]).await.map_err(io_err)?;
        Ok(buf)
    } else if &buf[..] == b"PROXY " {
        // v1: one line, CRLF-terminated, at most 107 bytes. Read byte by byte so
        // nothing past the CRLF is consumed (v1 is optional and rare).
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX_LEN {
                return Err(ProxyHeaderError::V1TooLong);
            }
            io.read_exact(&mut byte).await.map_err(io_err)?;
            buf.push(byte[0]);
        }
        Ok(buf)
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap_or_default()
    }

    #[tokio::test]
    async fn v2_ipv4_and_ipv6_source_is_the_caller_and_nothing_more_is_read() {
        for (src, dst) in [
            ("100.64.0.7:51234", "127.0.0.1:80"),
            ("[fd7a:115c:a1e0::5]:40000", "[::1]:80"),
        ] {
            let src: SocketAddr = src.parse().unwrap_or_else(|e| panic!("{e}"));
            let dst: SocketAddr = dst.parse().unwrap_or_else(|e| panic!("{e}"));
            let mut wire = v2(src, dst);
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let mut cursor = std::io::Cursor::new(wire);
            let peer = read_header(&mut cursor, Duration::from_secs(1)).await;
            assert_eq!(
                peer.map_err(|e| e.to_string()),
                Ok(ProxiedPeer::Address(src))
            );
            let mut rest = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut cursor, &mut rest).await;
            assert_eq!(rest, "GET / HTTP/1.1\r\n");
        }
    }

    #[tokio::test]
    async fn v1_is_accepted() {
        let mut c =
            std::io::Cursor::new(b"PROXY TCP4 100.64.0.9 127.0.0.1 4444 80\r\nGET".to_vec());
        let peer = read_header(&mut c, Duration::from_secs(1)).await;
        assert_eq!(
            peer.map_err(|e| e.to_string()),
            Ok(ProxiedPeer::Address(SocketAddr::from((
                [100, 64, 0, 9],
                4444
            ))))
        );
    }

    #[tokio::test]
    async fn missing_or_truncated_or_slow_headers_are_rejected() {
        let mut c = std::io::Cursor::new(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        assert!(matches!(
            read_header(&mut c, Duration::from_secs(1)).await,
            Err(ProxyHeaderError::Missing)
        ));
        let full = v2(
            SocketAddr::from(([1, 2, 3, 4], 5)),
            SocketAddr::from(([5, 6, 7, 8], 9)),
        );
        let mut c = std::io::Cursor::new(full[..20].to_vec());
        assert!(matches!(
            read_header(&mut c, Duration::from_secs(1)).await,
            Err(ProxyHeaderError::Io(_))
        ));
        let (mut client, mut server) = tokio::io::duplex(64);
        let _ = tokio::io::AsyncWriteExt::write_all(&mut client, &full[..10]).await;
        assert!(matches!(
            read_header(&mut server, Duration::from_millis(50)).await,
            Err(ProxyHeaderError::Timeout(d)) if d == Duration::from_millis(50)
        ));
        let mut long = b"PROXY ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        let mut c = std::io::Cursor::new(long);
        assert!(matches!(
            read_header(&mut c, Duration::from_secs(1)).await,
            Err(ProxyHeaderError::V1TooLong)
        ));
    }

    #[test]
    fn local_command_means_use_the_tcp_peer() {
        let h = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap_or_default();
        assert_eq!(
            parse_header(&h).map_err(|e| e.to_string()),
            Ok(ProxiedPeer::Local)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_header(&bytes);
        }

        #[test]
        fn corrupted_v2_headers_never_panic(
            pos in 0usize..28, val in any::<u8>(), extra in proptest::collection::vec(any::<u8>(), 0..40)
        ) {
            let mut h = v2(SocketAddr::from(([100, 64, 1, 2], 1000)), SocketAddr::from(([127, 0, 0, 1], 80)));
            if pos < h.len() { h[pos] = val; }
            h.extend_from_slice(&extra);
            let _ = parse_header(&h);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build();
            if let Ok(rt) = rt {
                let mut c = std::io::Cursor::new(h);
                let _ = rt.block_on(read_header(&mut c, Duration::from_secs(1)));
            }
        }

        #[test]
        fn any_v4_source_round_trips(a in any::<[u8; 4]>(), port in any::<u16>()) {
            let src = SocketAddr::from((a, port));
            let h = v2(src, SocketAddr::from(([127, 0, 0, 1], 80)));
            prop_assert_eq!(parse_header(&h).map_err(|e| e.to_string()), Ok(ProxiedPeer::Address(src)));
        }
    }
}
