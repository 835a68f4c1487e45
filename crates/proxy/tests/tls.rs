//! TLS on both sides: the HTTPS listener (ALPN http/1.1 only) and the upstream
//! loaded from a kubeconfig (cluster CA verification, `tls-server-name`,
//! client certificates, `insecure-skip-tls-verify` only when the kubeconfig
//! says so).
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kubescribe_proxy::Outcome;
use kubescribe_proxy::UpstreamSpec;
use kubescribe_proxy::{Mode, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    pki_for(&["127.0.0.1", "localhost"])
}

/// A CA, a server certificate for `names` and a client certificate.
fn pki_for(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["kubescribe-proxy".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn der_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn der_key(pem: &str) -> PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .unwrap()
        .unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An upstream server config; with `client_ca`, client certificates are required.
fn upstream_tls(p: &Pki, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der_certs(&p.ca_pem).remove(0)).unwrap();
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        b.with_client_cert_verifier(v)
    } else {
        b.with_no_client_auth()
    };
    Arc::new(
        b.with_single_cert(der_certs(&p.server_cert_pem), der_key(&p.server_key_pem))
            .unwrap(),
    )
}

fn kubeconfig_yaml(
    server: std::net::SocketAddr,
    ca_pem: &str,
    insecure: bool,
    client: Option<(&str, &str)>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match client {
        Some((c, k)) => format!(
            "client-certificate-data: {}\n    client-key-data: {}",
            b64(c),
            b64(k)
        ),
        None => "token: proxy-sa-token".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  cluster:\n    server: https://{server}\n    certificate-authority-data: {}\n    insecure-skip-tls-verify: {insecure}\ncontexts:\n- name: t\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    {user}\n",
        b64(ca_pem)
    )
}

async fn proxy_to(spec: UpstreamSpec, dir: &std::path::Path) -> kubescribe_proxy::RunningProxy {
    let cfg = config(identity_file(dir, "{}"), Mode::Auth);
    let components = kubescribe_proxy::Components {
        whois: cfg.identity.open().unwrap(),
        sink: Arc::new(MemorySink::new(Outcome::Forward)),
        hook: Arc::new(kubescribe_proxy::PassThrough),
        upstream: spec,
    };
    kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn upstream_tls_is_verified_against_the_kubeconfig_ca() {
    let p = pki();
    let up = FakeUpstream::start_tls(upstream_tls(&p, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = UpstreamSpec::from_kubeconfig_yaml(
        kubeconfig_yaml(up.addr, &p.ca_pem, false, None).as_bytes(),
        None,
    )
    .unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        up.seen()
            .pop()
            .unwrap()
            .headers
            .get("authorization")
            .unwrap(),
        "Bearer proxy-sa-token"
    );
    proxy.shutdown().await;

    // A different CA: the API server is not trusted → 502, nothing sent.
    let other = pki();
    let before = up.seen().len();
    let spec = UpstreamSpec::from_kubeconfig_yaml(
        kubeconfig_yaml(up.addr, &other.ca_pem, false, None).as_bytes(),
        None,
    )
    .unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let body = String::from_utf8(got.body.to_vec()).unwrap();
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    assert_eq!(up.seen().len(), before);
    proxy.shutdown().await;

    // insecure-skip-tls-verify in the kubeconfig is honoured (with a warning).
    let spec = UpstreamSpec::from_kubeconfig_yaml(
        kubeconfig_yaml(up.addr, &other.ca_pem, true, None).as_bytes(),
        None,
    )
    .unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    assert_eq!(
        send(proxy.addr, b"", get("/api/v1/pods")).await.status,
        StatusCode::OK
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_server_name_from_the_kubeconfig_is_the_name_verified() {
    // The API server's certificate names only its in-cluster DNS name.
    let p = pki_for(&["kubernetes.default.svc"]);
    let up = FakeUpstream::start_tls(upstream_tls(&p, false)).await;
    let dir = tempfile::tempdir().unwrap();
    let plain = kubeconfig_yaml(up.addr, &p.ca_pem, false, None);
    let spec = UpstreamSpec::from_kubeconfig_yaml(plain.as_bytes(), None).unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(
        got.status,
        StatusCode::BAD_GATEWAY,
        "127.0.0.1 is not in the certificate"
    );
    proxy.shutdown().await;

    let named = plain.replace(
        "    insecure-skip-tls-verify: false\n",
        "    insecure-skip-tls-verify: false\n    tls-server-name: kubernetes.default.svc\n",
    );
    assert_ne!(named, plain);
    let spec = UpstreamSpec::from_kubeconfig_yaml(named.as_bytes(), None).unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    assert_eq!(
        send(proxy.addr, b"", get("/api/v1/pods")).await.status,
        StatusCode::OK
    );
    assert_eq!(up.seen().len(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn client_certificates_from_the_kubeconfig_are_presented_upstream() {
    let p = pki();
    let up = FakeUpstream::start_tls(upstream_tls(&p, true)).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = kubeconfig_yaml(
        up.addr,
        &p.ca_pem,
        false,
        Some((&p.client_cert_pem, &p.client_key_pem)),
    );
    let spec = UpstreamSpec::from_kubeconfig_yaml(yaml.as_bytes(), None).unwrap();
    let proxy = proxy_to(spec, dir.path()).await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen().pop().unwrap();
    assert!(
        seen.headers.get("authorization").is_none(),
        "client-cert user sends no token"
    );
    assert_eq!(
        seen.headers.get("impersonate-user").unwrap(),
        "alice@example.com"
    );
    proxy.shutdown().await;

    // noauth mode drops the proxy's client certificate: the handshake fails.
    let spec = UpstreamSpec::from_kubeconfig_yaml(yaml.as_bytes(), None).unwrap();
    let mut cfg = config(identity_file(dir.path(), "{}"), Mode::Noauth);
    cfg.mode = Mode::Noauth;
    let components = kubescribe_proxy::Components {
        whois: cfg.identity.open().unwrap(),
        sink: Arc::new(MemorySink::new(Outcome::Forward)),
        hook: Arc::new(kubescribe_proxy::PassThrough),
        upstream: spec,
    };
    let proxy = kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap();
    assert_eq!(
        send(proxy.addr, b"", get("/api/v1/pods")).await.status,
        StatusCode::BAD_GATEWAY
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn https_listener_negotiates_http11_only() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, &p.server_cert_pem).unwrap();
    std::fs::write(&key, &p.server_key_pem).unwrap();
    let up = FakeUpstream::start().await;
    let mut cfg = config(identity_file(dir.path(), "{}"), Mode::Auth);
    cfg.tls = Some(TlsFiles { cert, key });
    let proxy = start_proxy(&cfg, Arc::new(MemorySink::new(Outcome::Forward)), up.addr).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der_certs(&p.ca_pem).remove(0)).unwrap();
    let mut cc = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            http::Request::get("/api/v1/pods")
                .header("host", "k")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    assert_eq!(up.seen().len(), 1);

    // Plain HTTP on a TLS port gets no HTTP answer.
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut t = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let _ = t.write_all(b"GET / HTTP/1.1\r\nHost: k\r\n\r\n").await;
        let mut out = Vec::new();
        let _ = t.read_to_end(&mut out).await;
        out
    })
    .await
    .unwrap();
    assert!(!got.starts_with(b"HTTP/1.1 200"));
    proxy.shutdown().await;
}
