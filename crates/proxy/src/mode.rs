//! The one switch several layers read: whether the proxy authenticates to
//! the API server itself, impersonating the caller, or passes the caller's
//! own credentials through.

/// How the proxy authenticates to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Drop the caller's credentials, impersonate the caller, use the proxy's own credentials.
    Auth,
    /// Send no proxy credentials; the caller's own `Authorization` passes through.
    Noauth,
}

impl Mode {
    /// The mode's name as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auth => "auth",
            Mode::Noauth => "noauth",
        }
    }
}
