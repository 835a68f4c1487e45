//! A minimal blocking HTTP/1.1 client (one request per connection), over
//! plain TCP or over TLS trusting one test CA: enough to read a query API,
//! a metrics page or kube-apiserver's `/readyz` from any test, async or not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::Error;

/// A response: status code, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Json {
            what: "the reply body".into(),
            text: self.text().chars().take(400).collect(),
            source,
        })
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// TLS that trusts exactly one CA (a test CA), for `https://127.0.0.1:PORT`.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// Trusts the CA certificate `ca_pem` (PEM), and nothing else.
    pub fn trusting(ca_pem: &str) -> Result<Self, Error> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            Error::Tls(rustls::Error::General(format!(
                "the CA is not a PEM certificate: {e}"
            )))
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Sends `method path` with `headers` and `body` to `addr`, over TLS
/// verified with `tls` (the server name is the address's IP) or over plain
/// TCP when `tls` is `None`; reads the whole reply.
pub fn request(
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Error> {
    send(connect(addr)?, addr, tls, method, path, headers, body)
}

/// One exchange on a connected `stream` to `addr`, over TLS when `tls` is set.
fn send(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Error> {
    let Some(tls) = tls else {
        return exchange(stream, addr, method, path, headers, body);
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let connection = ClientConnection::new(tls.config.clone(), name)?;
    exchange(
        StreamOwned::new(connection, stream),
        addr,
        method,
        path,
        headers,
        body,
    )
}

/// Like [`request`], but reaches `addr` through the SOCKS5 proxy `socks5`
/// (a tailnet node's `tailscaled --socks5-server`): the way a program on
/// that node reaches another node without a TUN device.
pub fn request_via_socks5(
    socks5: SocketAddr,
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Error> {
    let stream = socks::Socks5Stream::connect(socks5, addr)
        .map_err(Error::io(format!(
            "connecting to {addr} through SOCKS5 {socks5}"
        )))?
        .into_inner();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(Error::io(format!("setting a read timeout on {addr}")))?;
    send(stream, addr, tls, method, path, headers, body)
}

/// `GET path` from `addr` over plain TCP.
pub fn get(addr: SocketAddr, path: &str) -> Result<Reply, Error> {
    request(addr, None, "GET", path, &[], b"")
}

/// The value of the Prometheus sample `name` that `addr` serves at `/metrics` (an admin
/// listener), or `None` when there is no such line. A labelled sample is named with its labels
/// as the server writes them: `kubescribe_recorder_records_received_total{kind="event"}`.
pub fn metric(addr: SocketAddr, name: &str) -> Result<Option<f64>, Error> {
    let reply = get(addr, "/metrics")?;
    Ok(reply.text().lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
    }))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(Error::io(format!("connecting to {addr}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(Error::io(format!("setting a read timeout on {addr}")))?;
    Ok(stream)
}

fn exchange(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Error> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sending = Error::io(format!("sending {method} {path} to {addr}"));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(sending)?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a whole reply.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(Error::io(format!("reading the reply from {addr}"))(e)),
    }
    parse_reply(&raw).map_err(|problem| Error::Http {
        from: addr.to_string(),
        problem,
    })
}

fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("reply has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")
    });
    // (A reply to HEAD describes a body it does not send.)
    if chunked && !body.is_empty() {
        body = dechunk(&body)?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_replies_are_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let reply = parse_reply(raw).expect("a valid chunked reply");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
        assert_eq!(reply.body, b"abcde");
    }

    #[test]
    fn a_reply_without_a_header_end_is_an_error() {
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
