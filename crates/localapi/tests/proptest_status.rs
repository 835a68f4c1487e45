//! tailscaled's status document, generated: what parses is what was written, and the recorders a
//! set of tags names are exactly the model's (every address of every peer carrying one of them,
//! once, port 80, IPv4 before IPv6, ascending); arbitrary bytes and arbitrary JSON never panic.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use localapi::{Status, RECORDER_PORT};
use proptest::prelude::*;
use serde_json::{json, Value};

const TAGS: [&str; 4] = ["tag:k8s-recorder", "tag:rec2", "tag:web", "tag:ci"];

#[derive(Debug, Clone)]
struct Peer {
    ips: Vec<IpAddr>,
    tags: Vec<String>,
    tags_null: bool,
    online: bool,
}

fn tailnet_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..(1 << 22)).prop_map(|n| IpAddr::V4(Ipv4Addr::from(0x6440_0000 | n))),
        any::<u64>()
            .prop_map(|n| IpAddr::V6(Ipv6Addr::from((0xfd7a_115c_a1e0u128 << 80) | u128::from(n)))),
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    (
        prop::collection::vec(tailnet_ip(), 0..4),
        prop::collection::vec(prop::sample::select(&TAGS[..]), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ips, tags, tags_null, online)| Peer {
            ips,
            tags_null: tags_null && tags.is_empty(),
            tags: tags.into_iter().map(str::to_owned).collect(),
            online,
        })
}

fn document(peers: &[Peer], extra: &Value) -> Value {
    let mut map = serde_json::Map::new();
    for (i, p) in peers.iter().enumerate() {
        let mut peer = json!({
            "ID": format!("n{i}"),
            "HostName": format!("host-{i}"),
            "DNSName": format!("host-{i}.tail1234.ts.net."),
            "TailscaleIPs": p.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "Online": p.online,
            "Unknown": extra,
        });
        if p.tags_null {
            peer["Tags"] = Value::Null;
        } else if !p.tags.is_empty() {
            peer["Tags"] = json!(p.tags);
        }
        map.insert(format!("nodekey:{i:04}"), peer);
    }
    json!({"Version": "1.96.4", "BackendState": "Running", "Peer": map, "Extra": extra})
}

fn model(peers: &[Peer], tags: &[String]) -> Vec<SocketAddr> {
    let ips: BTreeSet<IpAddr> = peers
        .iter()
        .filter(|p| p.tags.iter().any(|t| tags.contains(t)))
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    let (v4, v6): (Vec<_>, Vec<_>) = ips.into_iter().partition(IpAddr::is_ipv4);
    v4.into_iter()
        .chain(v6)
        .map(|ip| SocketAddr::new(ip, RECORDER_PORT))
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &["Peer", "Tags", "TailscaleIPs", "Self", "BackendState", "x"][..]
                )
                .prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn written_statuses_parse_and_resolve_like_the_model(
        peers in prop::collection::vec(peer(), 0..8),
        tags in prop::collection::vec(prop::sample::select(&TAGS[..]), 0..3),
        extra in json_value(),
    ) {
        let doc = serde_json::to_vec(&document(&peers, &extra)).unwrap();
        let status = Status::from_json(&doc).unwrap();
        prop_assert_eq!(status.peers.len(), peers.len());
        for (i, p) in peers.iter().enumerate() {
            let parsed = &status.peers[&format!("nodekey:{i:04}")];
            prop_assert_eq!(&parsed.tailscale_ips, &p.ips);
            prop_assert_eq!(&parsed.tags, &p.tags);
            prop_assert_eq!(parsed.online, p.online);
        }
        let tags: Vec<String> = tags.into_iter().map(str::to_owned).collect();
        prop_assert_eq!(status.recorders_for_tags(&tags), model(&peers, &tags));
    }

    #[test]
    fn arbitrary_json_never_panics_and_resolution_stays_ordered(value in json_value()) {
        let doc = serde_json::to_vec(&value).unwrap();
        if let Ok(status) = Status::from_json(&doc) {
            let found = status.recorders_for_tags(&TAGS.map(str::to_owned));
            prop_assert!(found.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(found.iter().all(|a| a.port() == RECORDER_PORT));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Status::from_json(&bytes);
    }
}
