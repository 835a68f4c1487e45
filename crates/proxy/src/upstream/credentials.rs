//! How the proxy authenticates itself to the API server, from the `auth_info`
//! kube-rs loaded: basic auth, a token, a token file or an exec plugin, in
//! kube-rs's order of precedence (a client certificate is part of the TLS
//! configuration, see `super::tls_config`). Each request asks for the
//! [`Current`] credential; a 401 to it is reported back ([`Credentials::rejected`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use kube::config::AuthInfo;
use secrecy::ExposeSecret;

use super::error::{KubeconfigError, UpstreamError};
use super::exec::{ExecError, ExecPlugin, Issued};
use super::token::{self, TokenFile};

/// Where the proxy's `Authorization` comes from.
#[derive(Debug)]
pub(crate) enum Credentials {
    /// Nothing (a client certificate, or none at all).
    None,
    /// A fixed token or basic auth, and what it is.
    Static(HeaderValue, &'static str),
    /// A token file, re-read as it rotates and after a 401.
    File(TokenFile),
    /// An exec credential plugin (boxed: its configuration is large).
    Exec(Box<ExecPlugin>),
}

/// The credential for one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Current {
    /// The `Authorization` value to send, if any.
    pub(crate) authorization: Option<HeaderValue>,
    /// What an exec plugin gave (token or client certificate), if one did.
    pub(crate) issued: Option<Arc<Issued>>,
}

impl Credentials {
    /// The credential source `auth` describes (its exec plugin runs with `exec_timeout`).
    pub(crate) fn new(auth: &AuthInfo, exec_timeout: Duration) -> Result<Self, UpstreamError> {
        if let (Some(user), Some(password)) = (&auth.username, &auth.password) {
            let value = token::basic(user, password.expose_secret())
                .ok_or(KubeconfigError::BadBasicAuth)?;
            return Ok(Credentials::Static(value, "basic auth"));
        }
        if let Some(t) = &auth.token {
            let value = token::bearer(t.expose_secret()).ok_or(KubeconfigError::BadToken)?;
            return Ok(Credentials::Static(value, "static token"));
        }
        if let Some(path) = &auth.token_file {
            let file = TokenFile::new(PathBuf::from(path), token::TOKEN_REFRESH);
            file.load()?;
            return Ok(Credentials::File(file));
        }
        if let Some(exec) = &auth.exec {
            let plugin = ExecPlugin::new(exec.clone(), exec_timeout);
            return Ok(Credentials::Exec(Box::new(plugin)));
        }
        Ok(Credentials::None)
    }

    /// What the start-up log says about them.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::None => "none".into(),
            Credentials::Static(_, what) => (*what).into(),
            Credentials::File(f) => format!(
                "token file {} (re-read every {} s and after a 401)",
                f.path().display(),
                token::TOKEN_REFRESH.as_secs()
            ),
            Credentials::Exec(p) => format!(
                "exec plugin {} (run when needed, cached until its expirationTimestamp, run again after a 401)",
                p.describe()
            ),
        }
    }

    /// The credential for the next request (an exec plugin may run).
    pub(crate) async fn current(&self) -> Result<Current, ExecError> {
        Ok(match self {
            Credentials::None => Current::default(),
            Credentials::Static(value, _) => Current {
                authorization: Some(value.clone()),
                issued: None,
            },
            Credentials::File(f) => Current {
                authorization: match f.authorization() {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::error!(error = %e, "no upstream token available");
                        None
                    }
                },
                issued: None,
            },
            Credentials::Exec(plugin) => {
                let issued = plugin.credential().await?;
                Current {
                    authorization: issued.authorization.clone(),
                    issued: Some(issued),
                }
            }
        })
    }

    /// The API server answered 401 to `current`: re-read the token file, or
    /// run the exec plugin again, for the next request.
    pub(crate) fn rejected(&self, current: &Current) {
        match (self, &current.issued) {
            (Credentials::File(f), _) => f.invalidate(),
            (Credentials::Exec(plugin), Some(issued)) => plugin.rejected(issued.serial),
            _ => {}
        }
    }
}
