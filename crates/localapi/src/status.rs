//! tailscaled's status (`GET /localapi/v0/status`, Go's `ipnstate.Status`), the parts kubescribe
//! reads: the node's peers, their Tailscale addresses and tags; and the recorder addresses a set
//! of grant `recorder` tags names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::error::StatusParseError;

/// Largest status document read. A status lists every peer of the netmap (a few hundred bytes
/// each); 32 MiB is some tens of thousands of peers.
pub const MAX_STATUS_BYTES: usize = 32 << 20;

/// The port a recorder found by tag is reached on, as control resolves `recorder` tags
/// (`recorderAddrs` are `IP:80`).
pub const RECORDER_PORT: u16 = 80;

/// tailscaled's status: this node and the peers of its netmap. Unknown fields are ignored;
/// `null` lists and maps read as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// `BackendState`: `Running`, `NeedsLogin`, `Stopped`, …
    #[serde(rename = "BackendState", default)]
    pub backend_state: String,
    /// `Self`: this node.
    #[serde(rename = "Self", default)]
    pub self_node: Option<PeerStatus>,
    /// `Peer`: the netmap's peers, keyed by node public key (`nodekey:…`).
    #[serde(rename = "Peer", default, deserialize_with = "null_as_default")]
    pub peers: BTreeMap<String, PeerStatus>,
}

/// One node in a [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PeerStatus {
    /// `HostName`.
    #[serde(rename = "HostName", default)]
    pub host_name: String,
    /// `DNSName`, with its trailing dot.
    #[serde(rename = "DNSName", default)]
    pub dns_name: String,
    /// `TailscaleIPs`: the node's tailnet addresses.
    #[serde(rename = "TailscaleIPs", default, deserialize_with = "null_as_default")]
    pub tailscale_ips: Vec<IpAddr>,
    /// `Tags`: the node's ACL tags (`tag:…`); absent for user-owned nodes.
    #[serde(rename = "Tags", default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// `Online`, as control last said.
    #[serde(rename = "Online", default)]
    pub online: bool,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Status {
    /// Parses a status document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatusParseError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The recorder addresses `tags` name in this netmap, as control resolves a grant's `recorder`
    /// tags into `recorderAddrs`: every Tailscale address of every peer carrying any of the tags,
    /// on port [`RECORDER_PORT`], each once, IPv4 before IPv6, lowest address first. This node
    /// itself is never one. Empty when no peer carries any of them.
    pub fn recorders_for_tags(&self, tags: &[String]) -> Vec<SocketAddr> {
        let wanted: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        let mut ips = BTreeSet::new();
        for peer in self.peers.values() {
            if peer.tags.iter().any(|t| wanted.contains(t.as_str())) {
                ips.extend(peer.tailscale_ips.iter().copied());
            }
        }
        // `IpAddr`'s order already puts every V4 before every V6, each ascending.
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, RECORDER_PORT))
            .collect()
    }
}

/// Whether `ip` is a Tailscale address: 100.64.0.0/10 (CGNAT) or
/// fd7a:115c:a1e0::/48. Only these are reached through tailscaled; tailscaled
/// tells a client to dial any other address itself (`Dial-Self`).
pub fn is_tailnet_address(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (b & 0xc0) == 64
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shape tailscaled 1.96 answers (trimmed), with two tagged recorders, one user node.
    const STATUS: &str = r#"{
      "Version": "1.96.4-t8cf541dfd",
      "BackendState": "Running",
      "Self": {"ID": "n1", "HostName": "proxy", "DNSName": "proxy.tail1234.ts.net.",
               "TailscaleIPs": ["100.64.0.1", "fd7a:115c:a1e0::1"], "Tags": ["tag:k8s-recorder"],
               "Online": true},
      "Peer": {
        "nodekey:bb": {"HostName": "rec-b", "TailscaleIPs": ["100.64.0.9", "fd7a:115c:a1e0::9"],
                       "Tags": ["tag:k8s-recorder"], "Online": true, "Relay": "fra"},
        "nodekey:aa": {"HostName": "rec-a", "TailscaleIPs": ["100.64.0.3", "fd7a:115c:a1e0::3"],
                       "Tags": ["tag:other", "tag:k8s-recorder"], "Online": false},
        "nodekey:cc": {"HostName": "laptop", "TailscaleIPs": ["100.64.0.2"], "Online": true}
      },
      "User": {"1": {"LoginName": "alice@example.com"}}
    }"#;

    #[test]
    fn parses_tailscaleds_shape() {
        let status = Status::from_json(STATUS.as_bytes()).unwrap();
        assert_eq!(status.backend_state, "Running");
        assert_eq!(status.peers.len(), 3);
        let a = &status.peers["nodekey:aa"];
        assert_eq!(a.host_name, "rec-a");
        assert_eq!(a.tags, ["tag:other", "tag:k8s-recorder"]);
        assert!(!a.online);
        assert!(status.peers["nodekey:cc"].tags.is_empty());
        assert_eq!(status.self_node.unwrap().host_name, "proxy");
    }

    #[test]
    fn tags_resolve_to_every_address_of_every_tagged_peer_lowest_first_v4_before_v6() {
        let status = Status::from_json(STATUS.as_bytes()).unwrap();
        let got = status.recorders_for_tags(&["tag:k8s-recorder".to_owned()]);
        let want: Vec<SocketAddr> = [
            "100.64.0.3:80",
            "100.64.0.9:80",
            "[fd7a:115c:a1e0::3]:80",
            "[fd7a:115c:a1e0::9]:80",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // This node's own tag does not make it a recorder.
        assert_eq!(got, want);
        assert_eq!(
            status.recorders_for_tags(&["tag:other".to_owned(), "tag:k8s-recorder".to_owned()]),
            want
        );
        assert_eq!(
            status.recorders_for_tags(&["tag:other".to_owned()]),
            [
                "100.64.0.3:80".parse().unwrap(),
                "[fd7a:115c:a1e0::3]:80".parse().unwrap()
            ]
        );
        assert!(status
            .recorders_for_tags(&["tag:none".to_owned()])
            .is_empty());
        assert!(status.recorders_for_tags(&[]).is_empty());
    }

    #[test]
    fn a_logged_out_node_has_no_peers() {
        // tailscaled before login: `Peer` is null, `Self` has no addresses.
        let status = Status::from_json(
            br#"{"BackendState":"NeedsLogin","Self":{"TailscaleIPs":null,"Tags":null},"Peer":null}"#,
        )
        .unwrap();
        assert_eq!(status.backend_state, "NeedsLogin");
        assert!(status.peers.is_empty());
        assert!(status.recorders_for_tags(&["tag:r".to_owned()]).is_empty());
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            &b""[..],
            b"\"Running\"",
            b"{\"Peer\": []}",
            b"{\"Peer\": {\"k\": {\"TailscaleIPs\": [\"not-an-ip\"]}}}",
            b"{\"Peer\": {\"k\": {\"Tags\": \"tag:a\"}}}",
        ] {
            assert!(
                Status::from_json(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
