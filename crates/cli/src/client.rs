//! GETs against a recorder's query API (docs/api.md "Query API"), with its reader credentials.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::error::CliError;

/// How to reach and authenticate to a recorder.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The recorder's base URL (`http://recorder.tail1234.ts.net`, `https://…`).
    pub recorder: String,
    /// A read token (`--read-token-file` on the recorder), sent as a bearer token.
    pub token: Option<String>,
    /// Trust this CA (PEM) for an `https` recorder, besides the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Bound on connecting, and on each wait for more of an answer.
    pub timeout: Duration,
}

/// A recorder's query API.
#[derive(Debug, Clone)]
pub struct RecorderClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl RecorderClient {
    /// A client for `options.recorder`; fails on a URL that is not `http`/`https` or a CA that
    /// does not parse.
    pub fn new(options: &ClientOptions) -> Result<Self, CliError> {
        let usage = |reason: String| CliError::Usage {
            flag: "--recorder",
            reason,
        };
        let base = Url::parse(options.recorder.trim_end_matches('/'))
            .map_err(|e| usage(format!("{:?} is not a URL: {e}", options.recorder)))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(usage(format!(
                "{:?} is not an http:// or https:// URL of a recorder",
                options.recorder
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .user_agent(concat!("kubescribe/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem).map_err(|e| CliError::Usage {
                flag: "--ca-file",
                reason: format!("not a PEM certificate: {e}"),
            })?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().map_err(|e| CliError::Unreachable {
            url: base.to_string(),
            source: e,
        })?;
        Ok(Self {
            base,
            http,
            token: options.token.clone(),
        })
    }

    /// The URL of `path` (absolute, e.g. `/api/v1/events`).
    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// `GET path?query`, answered `200`: the response, body not yet read.
    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<reqwest::Response, CliError> {
        let url = self.url(path);
        let mut request = self.http.get(url.clone()).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: url.to_string(),
            source: e,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Refused {
                status: status.as_u16(),
                message,
            },
            StatusCode::NOT_FOUND => CliError::NotFound(format!("{path} ({message})")),
            _ => CliError::Status {
                status: status.as_u16(),
                message,
            },
        })
    }

    /// `GET path?query` as JSON.
    pub async fn get_json(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Value, CliError> {
        let response = self.get(path, query).await?;
        let url = response.url().to_string();
        response
            .json::<Value>()
            .await
            .map_err(|e| CliError::Unreachable { url, source: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> ClientOptions {
        ClientOptions {
            recorder: url.to_owned(),
            token: None,
            ca_pem: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn paths_join_a_base_with_or_without_a_prefix() {
        let client = RecorderClient::new(&options("http://rec:8080/")).expect("client");
        assert_eq!(
            client.url("/api/v1/events").as_str(),
            "http://rec:8080/api/v1/events"
        );
        let behind = RecorderClient::new(&options("https://host/recorder")).expect("client");
        assert_eq!(
            behind.url("/api/v1/sessions").as_str(),
            "https://host/recorder/api/v1/sessions"
        );
    }

    #[test]
    fn only_http_urls_of_a_host() {
        for bad in ["ftp://x", "recorder:80", "not a url", "http://"] {
            let err = RecorderClient::new(&options(bad)).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
    }
}
