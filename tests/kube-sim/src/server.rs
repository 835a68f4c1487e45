//! The HTTP(S) server: accepts connections, authenticates, logs and routes requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::UserInfo;
use crate::clock::now_rfc3339;
use crate::http_util::{error_response, full, json_response, with_type, Body, Query};
use crate::request_log::RecordedRequest;
use crate::routes::{route, Route};
use crate::state::SimState;
use crate::status::ApiError;
use crate::tls::CertificateAuthority;
use crate::{api, discovery, openapi};

/// TLS material for the listener.
pub(crate) struct TlsSetup {
    /// The acceptor.
    pub acceptor: TlsAcceptor,
    /// The CA (to map client certificates to users).
    pub ca: Arc<CertificateAuthority>,
}

/// Accepts connections until `shutdown` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsSetup>,
    state: Arc<SimState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = tls.map(Arc::new);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tls.acceptor.accept(stream).await {
                    Ok(stream) => {
                        let cert_user = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .and_then(|cert| tls.ca.user_of(cert));
                        serve_connection(TokioIo::new(stream), remote, cert_user, state, shutdown)
                            .await;
                    }
                    Err(e) => tracing::debug!(error = %e, %remote, "TLS handshake failed"),
                },
                None => serve_connection(TokioIo::new(stream), remote, None, state, shutdown).await,
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    remote: SocketAddr,
    cert_user: Option<UserInfo>,
    state: Arc<SimState>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        let cert_user = cert_user.clone();
        async move { Ok::<_, Infallible>(handle(state, req, remote, cert_user).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

fn record(req: &Request<Incoming>, remote: SocketAddr) -> RecordedRequest {
    RecordedRequest {
        seq: 0,
        time: now_rfc3339(),
        remote_addr: remote.to_string(),
        method: req.method().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), ToString::to_string),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        authenticated_user: None,
        user: None,
        status: None,
        subprotocol: None,
    }
}

async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
    remote: SocketAddr,
    cert_user: Option<UserInfo>,
) -> Response<Body> {
    let target = route(req.uri().path());
    if target == Route::SimRequests {
        return match *req.method() {
            Method::GET => json_response(
                200,
                &serde_json::to_value(state.log.snapshot()).unwrap_or_default(),
            ),
            Method::DELETE => {
                state.log.clear();
                json_response(200, &serde_json::json!({}))
            }
            _ => error_response(&ApiError::method_not_allowed("GET or DELETE only")),
        };
    }
    let seq = state.log.push(record(&req, remote));
    let authenticated = match state.auth.authenticate(req.headers(), cert_user.as_ref()) {
        Ok(user) => user,
        Err(e) => {
            state.log.complete(seq, None, None, e.code);
            return error_response(&e);
        }
    };
    let user = match state.auth.impersonate(authenticated.clone(), req.headers()) {
        Ok(user) => user,
        Err(e) => {
            state.log.complete(seq, Some(authenticated), None, e.code);
            return error_response(&e);
        }
    };
    tracing::debug!(method = %req.method(), uri = %req.uri(), user = %user.username, "request");
    let response = dispatch(&state, req, target, &user)
        .await
        .unwrap_or_else(|e| error_response(&e));
    state.log.complete(
        seq,
        Some(authenticated),
        Some(user),
        response.status().as_u16(),
    );
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let negotiated = ["sec-websocket-protocol", "x-stream-protocol-version"]
            .iter()
            .find_map(|name| response.headers().get(*name))
            .and_then(|v| v.to_str().ok());
        if let Some(protocol) = negotiated {
            state.log.set_subprotocol(seq, protocol.to_string());
        }
    }
    response
}

async fn dispatch(
    state: &Arc<SimState>,
    req: Request<Incoming>,
    target: Route,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let is_get = req.method() == Method::GET;
    let found = |value: Option<serde_json::Value>| {
        value
            .map(|v| json_response(200, &v))
            .ok_or_else(ApiError::path_not_found)
    };
    match target {
        Route::Resource(resource) => api::handle(state, req, resource, query, user).await,
        _ if !is_get => Err(ApiError::method_not_allowed("only GET is served here")),
        Route::Version => Ok(json_response(200, &discovery::version())),
        Route::Health => Ok(with_type(200, "text/plain; charset=utf-8", full("ok"))),
        Route::CoreVersions if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(&discovery::aggregated(true)))
        }
        Route::CoreVersions => Ok(json_response(
            200,
            &discovery::api_versions(&state.server_address),
        )),
        Route::Groups if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(&discovery::aggregated(false)))
        }
        Route::Groups => Ok(json_response(200, &discovery::api_group_list())),
        Route::Group(group) => found(discovery::api_group(&group)),
        Route::ResourceList(group, version) => {
            found(discovery::api_resource_list(&group, &version))
        }
        Route::OpenApiRoot => Ok(json_response(200, &openapi::root())),
        Route::OpenApiGroupVersion(group, version) => {
            found(openapi::group_version(&group, &version))
        }
        Route::SimRequests | Route::NotFound => Err(ApiError::path_not_found()),
    }
}

fn aggregated(value: &serde_json::Value) -> Response<Body> {
    let mut response = json_response(200, value);
    if let Ok(content_type) = http::HeaderValue::from_str(discovery::AGGREGATED_MEDIA_TYPE) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
    }
    response
}
