//! A blocking HTTP/1.1 client with a deadline on every request, that says
//! exactly how a reply ended: whole, cut short, or not at all. One request
//! per connection (`Connection: close`), plain HTTP to a caller's forwarder,
//! with the caller token of [`crate::stack`] (which auth mode strips).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A reply whose status line and headers arrived.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every header, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked), as much of it as arrived.
    pub body: Vec<u8>,
    /// Whether the body arrived whole (its length, or the last chunk).
    pub complete: bool,
}

impl Reply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no reply at all.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The forwarder did not accept the connection.
    Connect(String),
    /// The request could not be written.
    Write(String),
    /// The connection ended (or broke) before a status line.
    NoReply(String),
    /// The deadline passed: the request hung.
    Deadline {
        /// How long the request had run.
        after: Duration,
        /// The status, if the head had arrived.
        status: Option<u16>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Write(e) => write!(f, "write: {e}"),
            Failure::NoReply(e) => write!(f, "no reply: {e}"),
            Failure::Deadline { after, status } => {
                write!(f, "deadline passed after {after:.1?} (status {status:?})")
            }
        }
    }
}

/// One request, ended by `deadline` at the latest.
pub struct Call<'a> {
    /// Where to connect (a caller's forwarder).
    pub addr: SocketAddr,
    /// The HTTP method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// The `User-Agent` (tests make it unique per request, to join records by it).
    pub user_agent: &'a str,
    /// The body (`Content-Type: application/json` when there is one).
    pub body: &'a [u8],
    /// When the request counts as hung.
    pub deadline: Duration,
}

impl Call<'_> {
    fn head(&self) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\nUser-Agent: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n",
            self.method,
            self.path,
            self.user_agent,
            crate::stack::CALLER_TOKEN,
        );
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                self.body.len()
            ));
        }
        head.push_str("\r\n");
        head
    }

    fn connect(&self) -> Result<TcpStream, Failure> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let mut request = self.head().into_bytes();
        request.extend_from_slice(self.body);
        (&tcp)
            .write_all(&request)
            .map_err(|e| Failure::Write(e.to_string()))?;
        Ok(tcp)
    }

    /// Sends the request and reads the whole reply (until the server closes).
    pub fn send(&self) -> Result<Reply, Failure> {
        let started = Instant::now();
        let mut tcp = self.connect()?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let left = self.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Failure::Deadline {
                    after: started.elapsed(),
                    status: parse(&raw).map(|r| r.status),
                });
            }
            let _ = tcp.set_read_timeout(Some(left.min(Duration::from_millis(500))));
            match tcp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
                // A reset after (part of) a reply: what arrived is judged below.
                Err(e) if !raw.is_empty() => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(Failure::NoReply(e.to_string())),
            }
        }
        parse(&raw).ok_or_else(|| {
            Failure::NoReply(format!(
                "connection closed after {} bytes without a status line",
                raw.len()
            ))
        })
    }

    /// Opens a stream (a watch) and reads it until it ends or `deadline`
    /// passes, counting the JSON lines it carries. `stop` ends it from this
    /// side (then the end is [`StreamEnd::ClosedByUs`]).
    pub fn stream(&self, stop: &std::sync::atomic::AtomicBool) -> Streamed {
        let started = Instant::now();
        let mut tcp = match self.connect() {
            Ok(tcp) => tcp,
            Err(f) => {
                return Streamed {
                    status: None,
                    lines: 0,
                    end: StreamEnd::Failed(f.to_string()),
                    ended_at: Instant::now(),
                    first_line: String::new(),
                }
            }
        };
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let end = loop {
            if started.elapsed() > self.deadline {
                break StreamEnd::Deadline;
            }
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break StreamEnd::ClosedByUs;
            }
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
            match tcp.read(&mut buf) {
                Ok(0) => break StreamEnd::Closed,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if parse(&raw).is_some_and(|r| r.complete) {
                        break StreamEnd::Ended;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted) => {}
                Err(e) => break StreamEnd::Reset(e.to_string()),
            }
        };
        let ended_at = Instant::now();
        let reply = parse(&raw);
        let text = reply.as_ref().map(Reply::text).unwrap_or_default();
        Streamed {
            status: reply.as_ref().map(|r| r.status),
            lines: text.lines().filter(|l| !l.trim().is_empty()).count(),
            first_line: text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
            end,
            ended_at,
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The response ended properly (the last chunk, or its whole length).
    Ended,
    /// The server closed the connection without ending the response.
    Closed,
    /// The connection broke (reset).
    Reset(String),
    /// It was still open when the deadline passed: it hung.
    Deadline,
    /// The test closed it.
    ClosedByUs,
    /// It never got going.
    Failed(String),
}

/// What a stream carried and how it ended.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// The status, if the head arrived.
    pub status: Option<u16>,
    /// Non-empty lines of the body.
    pub lines: usize,
    /// The body's first line (up to 300 characters).
    pub first_line: String,
    /// How it ended.
    pub end: StreamEnd,
    /// When it ended.
    pub ended_at: Instant,
}

/// Parses a reply as far as it goes; `None` before the end of the head.
fn parse(raw: &[u8]) -> Option<Reply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, complete) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        (rest[..rest.len().min(len)].to_vec(), rest.len() >= len)
    } else {
        // Read until close: whole by definition once the server closed.
        (rest.to_vec(), true)
    };
    Some(Reply {
        status,
        headers,
        body,
        complete,
    })
}

/// De-chunks as far as the data goes; `true` once the last chunk arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else {
            return (body, false);
        };
        let data = &rest[line_end + 2..];
        if size == 0 {
            return (body, data.starts_with(b"\r\n"));
        }
        if data.len() < size + 2 {
            body.extend_from_slice(&data[..data.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}
