//! tailscaled's status document, any bytes: parsing never panics, and the recorders any tags
//! name are addresses of tagged peers, on port 80, each once, in order (IPv4 before IPv6).
#![no_main]

use libfuzzer_sys::fuzz_target;
use localapi::{Status, RECORDER_PORT};

fuzz_target!(|data: &[u8]| {
    let Ok(status) = Status::from_json(data) else {
        return;
    };
    let mut tags: Vec<String> = status
        .peers
        .values()
        .flat_map(|p| p.tags.iter().cloned())
        .take(4)
        .collect();
    tags.push("tag:k8s-recorder".to_owned());
    let found = status.recorders_for_tags(&tags);
    assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}");
    for addr in &found {
        assert_eq!(addr.port(), RECORDER_PORT);
        assert!(status.peers.values().any(
            |p| p.tailscale_ips.contains(&addr.ip()) && p.tags.iter().any(|t| tags.contains(t))
        ));
    }
});
