//! The recorder asks its identity source (here a fake of tailscaled's LocalAPI, counting its
//! questions) about the uploading proxy once per upload connection, not once per upload nor once
//! per few seconds: the proxy's events and response records come over pooled keep-alive
//! connections, and a LocalAPI asked again and again slows uploads down and, under load, refuses
//! them. (The LocalAPI client's own cache keeps an address's answer for 5 s, so the requests here
//! are spread over 13 s: with that cache alone, each connection would be asked about 3 times.)

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kubescribe_system_tests::client::Call;
use kubescribe_system_tests::stack::{Stack, Storage};

/// Requests sent one a second; each is two uploads (its event and its response record).
const REQUESTS: usize = 13;

#[test]
fn the_recorder_asks_whois_once_per_upload_connection_not_per_upload() {
    let stack = Stack::start(Storage::Disk).unwrap_or_else(|e| panic!("starting the system: {e}"));
    let alice = stack.caller("alice").unwrap_or_else(|e| panic!("{e}"));
    let proxy_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let before = stack.whois_asked(proxy_ip);
    for i in 0..REQUESTS {
        let user_agent = format!("whois-per-connection/{i}");
        let reply = Call {
            addr: alice.addr(),
            method: "GET",
            path: "/api/v1/namespaces/default/pods/whois-probe",
            user_agent: &user_agent,
            body: b"",
            deadline: Duration::from_secs(10),
        }
        .send()
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        // The simulator has no such pod: 404, recorded like any answer (alice fails closed, so
        // each event was stored before the request went on).
        assert_eq!(reply.status, 404, "request {i}: {}", reply.text());
        std::thread::sleep(Duration::from_secs(1));
    }
    let events = stack
        .wait_for_events(
            "verb=get&name=whois-probe",
            REQUESTS,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), REQUESTS, "every request's event is stored");
    let asked = stack.whois_asked(proxy_ip) - before;
    // One question per connection the proxy opened to the recorder. It keeps at most two in use
    // here (one for the live events of this fail-closed caller, one for the queued response
    // records); one per upload would be 26 questions, one per 5 s at least 3 per connection.
    assert!(
        (1..=2).contains(&asked),
        "the recorder asked WhoIs about the proxy {asked} times for {} uploads",
        2 * REQUESTS
    );
}
