//! Event delivery against in-process fake recorders: failover, probe
//! caching, deadlines, batching, response records and the outcome matrix.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;

use http::StatusCode;
use recorder_client::{
    AttemptError, FailurePolicy, Outcome, RecorderClient, Refusal, SpoolConfig, UnrecordedReason,
};
use support::*;

fn client(cfg: recorder_client::ClientConfig) -> RecorderClient {
    RecorderClient::with_metrics(cfg, Default::default()).unwrap()
}

#[tokio::test]
async fn ordered_failover_dead_then_500_then_ok() {
    let dead = dead_addr().await;
    let failing = Fake::start(EventMode::PostStatus(500), true, SessionMode::V2Acks).await;
    let ok = Fake::ok().await;
    let c = client(test_config());
    let addrs = [dead, failing.addr, ok.addr];

    let delivered = c.send_event(&addrs, &event("a")).await.unwrap();
    assert_eq!(delivered.recorder, ok.addr);
    assert_eq!(failing.state.posts(), 1, "the 500 recorder was tried");
    assert_eq!(ok.state.stored_keys(), vec!["a"]);

    let outcome = c
        .record_event(
            &addrs,
            FailurePolicy::FailClosed,
            &event("b"),
            "/api/v1/pods",
        )
        .await;
    assert_eq!(outcome, Outcome::Forward);
    assert_eq!(ok.state.stored_keys(), vec!["a", "b"]);
    assert!(failing.state.stored_keys().is_empty());
}

#[tokio::test]
async fn first_success_stops_the_loop() {
    let first = Fake::ok().await;
    let second = Fake::ok().await;
    let c = client(test_config());
    c.send_event(&[first.addr, second.addr], &event("x"))
        .await
        .unwrap();
    assert_eq!(second.state.heads() + second.state.posts(), 0);
}

#[tokio::test]
async fn probe_is_cached_and_refreshed_after_an_error() {
    let fake = Fake::ok().await;
    let c = client(test_config());
    for i in 0..20 {
        c.send_event(&[fake.addr], &event(&format!("k{i}")))
            .await
            .unwrap();
    }
    assert_eq!(fake.state.heads(), 1, "one probe for twenty events");
    assert_eq!(fake.state.stored_keys().len(), 20);

    fake.state.set_mode(EventMode::PostStatus(503));
    let err = c
        .send_event(&[fake.addr], &event("fail"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.attempts[0].1, AttemptError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    fake.state.set_mode(EventMode::Ok);
    c.send_event(&[fake.addr], &event("again")).await.unwrap();
    assert_eq!(fake.state.heads(), 2, "the error dropped the cached probe");
}

#[tokio::test]
async fn a_hung_recorder_costs_one_deadline() {
    let hung = Fake::start(EventMode::Hang, true, SessionMode::V2Acks).await;
    let ok = Fake::ok().await;
    let c = client(short_deadline_config());
    let d = c
        .send_event(&[hung.addr, ok.addr], &event("h"))
        .await
        .unwrap();
    assert_eq!(d.recorder, ok.addr);

    let err = c.send_event(&[hung.addr], &event("h2")).await.unwrap_err();
    assert!(
        matches!(err.attempts[0].1, AttemptError::Timeout(_)),
        "{err}"
    );
    let out = c
        .record_event(
            &[hung.addr],
            FailurePolicy::FailClosed,
            &event("h3"),
            "/api",
        )
        .await;
    match out {
        Outcome::Refuse(Refusal { status, message }) => {
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert!(message.contains("did not answer within"), "{message}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dead_recorder_opens_its_breaker_and_every_policy_skips_it() {
    let dead = dead_addr().await;
    let ok = Fake::ok().await;
    let c = client(breaker_config());
    c.send_event(&[dead, ok.addr], &event("1")).await.unwrap();
    assert_eq!(c.metrics().breaker_transitions(dead, "open"), 1);
    // Skipped without a round trip; the next address is tried.
    let other_dead = dead_addr().await;
    let err = c
        .send_event(&[dead, other_dead], &event("2"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.attempts[0].1, AttemptError::Unavailable { .. }),
        "{err}"
    );
    assert!(
        matches!(err.attempts[1].1, AttemptError::Connect(_)),
        "{err}"
    );
    // Fail closed with no other address: refused at once, saying why.
    match c
        .record_event(&[dead], FailurePolicy::FailClosed, &event("3"), "/api")
        .await
    {
        Outcome::Refuse(Refusal { status, message }) => {
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert!(
                message.starts_with("error recording Kubernetes API request: ")
                    && message.contains("recorder unavailable (circuit open since a failure"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Fail open: skipped, straight to the spool (here: dropped, no spool).
    match c
        .record_event(&[dead], FailurePolicy::FailOpen, &event("4"), "/")
        .await
    {
        Outcome::ForwardUnrecorded {
            reason: UnrecordedReason::Dropped { error, .. },
        } => {
            assert!(
                matches!(error.attempts[0].1, AttemptError::Unavailable { .. }),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Still one opening: an open breaker does not reopen.
    assert_eq!(c.metrics().breaker_transitions(dead, "open"), 1);
    c.shutdown().await;
}

#[tokio::test]
async fn a_hung_recorder_is_refused_at_once_after_one_deadline_until_a_probe_answers() {
    let fake = Fake::ok().await;
    let c = client(recorder_client::ClientConfig {
        attempt_timeout: std::time::Duration::from_millis(1500),
        ..breaker_config()
    });
    let addr = fake.addr;
    async fn closed_as(c: &RecorderClient, addr: std::net::SocketAddr, n: String) -> Outcome {
        c.record_event(&[addr], FailurePolicy::FailClosed, &event(&n), "/api")
            .await
    }
    let closed = |n: String| closed_as(&c, addr, n);
    assert_eq!(closed("before".into()).await, Outcome::Forward);

    fake.state.set_mode(EventMode::Hang);
    match closed("deadline".into()).await {
        Outcome::Refuse(r) => assert!(r.message.contains("did not answer within"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.metrics().breaker_transitions(fake.addr, "open"), 1);
    let posts = fake.state.posts();
    for i in 0..20 {
        match closed(format!("open-{i}")).await {
            Outcome::Refuse(r) => {
                assert_eq!(r.status, StatusCode::BAD_GATEWAY);
                assert!(r.message.contains("recorder unavailable"), "{r}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        fake.state.posts(),
        posts,
        "no request reaches a recorder whose breaker is open"
    );

    // The recorder answers again: the background probe gets an answer, the
    // breaker turns half-open, and the next request (the trial) closes it.
    fake.state.set_mode(EventMode::Ok);
    eventually("the probe gets an answer", || {
        c.metrics().breaker_transitions(fake.addr, "half_open") == 1
    })
    .await;
    assert_eq!(closed("after".into()).await, Outcome::Forward);
    assert_eq!(c.metrics().breaker_transitions(fake.addr, "closed"), 1);
    assert!(fake.state.stored_keys().contains(&"after".to_owned()));
    assert_eq!(closed("after-2".into()).await, Outcome::Forward);
    c.shutdown().await;
}

#[tokio::test]
async fn ordered_failover_skips_a_stalled_recorder_after_its_first_deadline() {
    let hung = Fake::start(EventMode::Hang, true, SessionMode::V2Acks).await;
    let ok = Fake::ok().await;
    let c = client(recorder_client::ClientConfig {
        attempt_timeout: std::time::Duration::from_millis(1500),
        ..breaker_config()
    });
    let d = c
        .send_event(&[hung.addr, ok.addr], &event("first"))
        .await
        .unwrap();
    assert_eq!(d.recorder, ok.addr);
    let hung_posts = hung.state.posts();
    for i in 0..10 {
        let d = c
            .send_event(&[hung.addr, ok.addr], &event(&format!("n{i}")))
            .await
            .unwrap();
        assert_eq!(d.recorder, ok.addr);
    }
    assert_eq!(hung.state.posts(), hung_posts);
    assert_eq!(ok.state.stored_keys().len(), 11);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_waiting_on_a_recorder_are_cut_short_when_its_breaker_opens() {
    let hung = Fake::start(EventMode::Hang, true, SessionMode::V2Acks).await;
    let mut cfg = recorder_client::ClientConfig {
        attempt_timeout: std::time::Duration::from_millis(1500),
        ..breaker_config()
    };
    cfg.batch.enabled = false;
    let c = client(cfg);
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.send_event(&[hung.addr], &event("a")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = {
        let c = c.clone();
        tokio::spawn(async move { c.send_event(&[hung.addr], &event("b")).await })
    };
    let first = first.await.unwrap().unwrap_err();
    assert!(
        matches!(first.attempts[0].1, AttemptError::Timeout(_)),
        "{first}"
    );
    // Started 500 ms later, it ends when the first one opens the breaker,
    // not at its own deadline.
    let second = second.await.unwrap().unwrap_err();
    assert!(
        matches!(second.attempts[0].1, AttemptError::Unavailable { .. }),
        "{second}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn not_supported_is_cached_too() {
    let old = Fake::start(EventMode::NotSupported, false, SessionMode::V2Acks).await;
    let c = client(test_config());
    for i in 0..5 {
        let err = c
            .send_event(&[old.addr], &event(&format!("n{i}")))
            .await
            .unwrap_err();
        assert!(err.all_not_supported());
    }
    assert_eq!(old.state.heads(), 1);
    assert_eq!(old.state.posts(), 0);
}

/// The scenarios of the outcome matrix.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    Ok,
    NotSupported,
    ServerError,
    Timeout,
    Refused,
    Mixed,
}

async fn scenario_addrs(s: Scenario) -> (Vec<std::net::SocketAddr>, Vec<Fake>) {
    let fakes = match s {
        Scenario::Ok => vec![Fake::ok().await],
        Scenario::NotSupported => {
            vec![Fake::start(EventMode::NotSupported, false, SessionMode::V2Acks).await]
        }
        Scenario::ServerError => {
            vec![Fake::start(EventMode::PostStatus(500), true, SessionMode::V2Acks).await]
        }
        Scenario::Timeout => vec![Fake::start(EventMode::Hang, true, SessionMode::V2Acks).await],
        Scenario::Refused => vec![],
        Scenario::Mixed => vec![
            Fake::start(EventMode::NotSupported, false, SessionMode::V2Acks).await,
            Fake::start(EventMode::PostStatus(500), true, SessionMode::V2Acks).await,
        ],
    };
    let mut addrs: Vec<_> = fakes.iter().map(|f| f.addr).collect();
    if matches!(s, Scenario::Refused | Scenario::Mixed) {
        addrs.push(dead_addr().await);
    }
    (addrs, fakes)
}

#[tokio::test]
async fn outcome_matrix() {
    let spool_dir = tempfile::tempdir().unwrap();
    let mut cfg = short_deadline_config();
    let mut sc = SpoolConfig::new(spool_dir.path());
    sc.fsync = recorder_client::FsyncPolicy::Never;
    cfg.spool = Some(sc);
    let c = client(cfg);
    let scenarios = [
        Scenario::Ok,
        Scenario::NotSupported,
        Scenario::ServerError,
        Scenario::Timeout,
        Scenario::Refused,
        Scenario::Mixed,
    ];
    for policy in [FailurePolicy::FailOpen, FailurePolicy::FailClosed] {
        for s in scenarios {
            let (addrs, fakes) = scenario_addrs(s).await;
            let key = format!("{policy:?}-{s:?}");
            let out = c
                .record_event(&addrs, policy, &event(&key), "/api/v1/pods?x=1")
                .await;
            match (policy, s) {
                (_, Scenario::Ok) => {
                    assert_eq!(out, Outcome::Forward, "{key}");
                    assert_eq!(fakes[0].state.stored_keys(), vec![key.clone()]);
                }
                (FailurePolicy::FailOpen, _) => match &out {
                    Outcome::ForwardUnrecorded {
                        reason: UnrecordedReason::Spooled(err),
                    } => {
                        assert_eq!(
                            err.attempts.len(),
                            addrs.len(),
                            "{key}: every address tried"
                        );
                    }
                    other => panic!("{key}: expected forward-unrecorded (spooled), got {other:?}"),
                },
                (FailurePolicy::FailClosed, _) => match &out {
                    Outcome::Refuse(Refusal { status, message }) => {
                        assert_eq!(*status, StatusCode::BAD_GATEWAY, "{key}");
                        assert!(
                            message
                                .starts_with("error recording Kubernetes API request: recorder \""),
                            "{key}: {message}"
                        );
                        if matches!(s, Scenario::NotSupported) {
                            assert!(
                                message.contains("does not support \"/v2/event\" endpoint"),
                                "{message}"
                            );
                        }
                    }
                    other => panic!("{key}: expected 502 refusal, got {other:?}"),
                },
            }
        }
    }
    // Fail-open failures were spooled (five scenarios), fail-closed ones not.
    assert_eq!(c.metrics().spooled_count("event"), 5);

    // No recorder addresses at all.
    assert_eq!(
        c.record_event(&[], FailurePolicy::FailClosed, &event("n"), "/api/v1/pods?x=1").await,
        Outcome::Refuse(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "forbidden: api request \"/api/v1/pods?x=1\" must be recorded, but no recorders are available.".into()
        })
    );
    assert_eq!(
        c.record_event(&[], FailurePolicy::FailOpen, &event("n"), "/api")
            .await,
        Outcome::ForwardUnrecorded {
            reason: UnrecordedReason::NoRecorders
        }
    );
    c.shutdown().await;
}

#[tokio::test]
async fn fail_open_without_a_spool_counts_the_drop() {
    let dead = dead_addr().await;
    let c = client(test_config());
    let out = c
        .record_event(&[dead], FailurePolicy::FailOpen, &event("d"), "/api")
        .await;
    assert!(matches!(
        out,
        Outcome::ForwardUnrecorded {
            reason: UnrecordedReason::Dropped { .. }
        }
    ));
    assert_eq!(c.metrics().dropped_count("event", "no_spool"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_are_batched_to_a_kubescribe_recorder_only() {
    let ks = Fake::ok().await;
    let ts = Fake::start(EventMode::Ok, false, SessionMode::V2Acks).await;
    let c = client(test_config());
    for fake in [&ks, &ts] {
        let mut tasks = Vec::new();
        for i in 0..300 {
            let c = c.clone();
            let addr = fake.addr;
            tasks.push(tokio::spawn(async move {
                c.record_event(
                    &[addr],
                    FailurePolicy::FailClosed,
                    &event(&format!("b{i}")),
                    "/",
                )
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Outcome::Forward);
        }
        let mut keys = fake.state.stored_keys();
        keys.sort();
        let mut want: Vec<_> = (0..300).map(|i| format!("b{i}")).collect();
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(fake.state.duplicates.load(Ordering::SeqCst), 0);
    }
    assert!(
        ks.state.batches.load(Ordering::SeqCst) > 0,
        "concurrent events were coalesced"
    );
    assert!(ks.state.posts() < 300, "fewer requests than events");
    assert_eq!(
        ts.state.batches.load(Ordering::SeqCst),
        0,
        "never a batch to a Tailscale recorder"
    );
    assert_eq!(ts.state.posts(), 300);
}

#[tokio::test]
async fn response_records_go_only_to_kubescribe_recorders() {
    let ts = Fake::start(EventMode::Ok, false, SessionMode::V2Acks).await;
    let ks = Fake::ok().await;
    let c = client(test_config());
    let record = event_model::ResponseRecord {
        key: "r1".into(),
        status: 201,
        ..Default::default()
    };
    c.send_response_record(&[ts.addr, ks.addr], &record);
    eventually("response record stored", || {
        ks.state.stored_keys() == vec!["r1"]
    })
    .await;
    assert!(ts.state.stored_keys().is_empty());
    let line = ks.state.stored.lock().unwrap()[0].1.clone();
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(v["type"], "kubescribe-api-response");
    assert_eq!(v["status"], 201);

    c.send_response_record(&[ts.addr], &record);
    eventually("dropped as not kubescribe", || {
        c.metrics().dropped_count("response", "not_kubescribe") == 1
    })
    .await;
}

#[tokio::test]
async fn the_event_arrives_exactly_as_go_would_encode_it() {
    let fake = Fake::ok().await;
    let c = client(test_config());
    let mut e = event("enc");
    e.request.path = "/api/v1/pods?labelSelector=a%3Db&x=<y>".into();
    c.send_event(&[fake.addr], &e).await.unwrap();
    let line = fake.state.stored.lock().unwrap()[0].1.clone();
    let mut want = event_model::to_go_json(&e).unwrap();
    want.pop(); // the fake stores lines without the newline
    assert_eq!(line, want);
}

#[tokio::test]
async fn shutdown_waits_for_background_response_records() {
    let ks = Fake::ok().await;
    let c = client(test_config());
    for i in 0..20 {
        let record = event_model::ResponseRecord {
            key: format!("s{i}"),
            status: 200,
            ..Default::default()
        };
        c.send_response_record(&[ks.addr], &record);
    }
    c.shutdown().await;
    assert_eq!(ks.state.stored_keys().len(), 20);
}
