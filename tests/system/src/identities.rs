//! Real `WhoIsResponse` JSON, as tailscaled's LocalAPI returns it.

use serde_json::{json, Value};

/// The Kubernetes capability name the proxy reads from the `CapMap`.
pub const KUBERNETES_CAP: &str = "tailscale.com/cap/kubernetes";

/// A tailnet node and its owner, as a test describes them.
#[derive(Debug, Clone)]
pub struct TestIdentity {
    /// The node's FQDN, with the trailing dot tailscaled writes.
    pub node_name: String,
    /// The node's stable ID.
    pub stable_id: String,
    /// The node's tailnet address.
    pub address: std::net::IpAddr,
    /// Tags (a tagged node) or empty (a user's node).
    pub tags: Vec<String>,
    /// The user's ID (`UserProfile.ID`; for tagged nodes, the tagged-devices user).
    pub user_id: i64,
    /// The user's login name.
    pub login_name: String,
    /// The Kubernetes grant rules, each one JSON object as control sends it.
    pub grants: Vec<Value>,
}

impl TestIdentity {
    /// A user's laptop, `<host>.tail1234.ts.net.`, owned by `login_name` (user `user_id`), at
    /// tailnet address `address`, with `grants`.
    pub fn user(
        host: &str,
        login_name: &str,
        user_id: i64,
        address: std::net::IpAddr,
        grants: Vec<Value>,
    ) -> Self {
        Self {
            node_name: format!("{host}.tail1234.ts.net."),
            stable_id: stable_id(host),
            address,
            tags: vec![],
            user_id,
            login_name: login_name.to_owned(),
            grants,
        }
    }

    /// A tagged node, `<host>.tail1234.ts.net.` with `tags`, at tailnet address `address`, with
    /// `grants`.
    pub fn tagged(
        host: &str,
        tags: &[&str],
        address: std::net::IpAddr,
        grants: Vec<Value>,
    ) -> Self {
        Self {
            node_name: format!("{host}.tail1234.ts.net."),
            stable_id: stable_id(host),
            address,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            user_id: 7,
            login_name: String::new(),
            grants,
        }
    }

    /// The user the proxy impersonates in auth mode: the login name, or for a tagged node its
    /// FQDN without the trailing dot.
    pub fn impersonated_user(&self) -> String {
        if self.tags.is_empty() {
            self.login_name.clone()
        } else {
            self.node_name.trim_end_matches('.').to_owned()
        }
    }

    /// The `WhoIsResponse` tailscaled would answer for this node.
    pub fn whois_response(&self) -> Value {
        let tagged = !self.tags.is_empty();
        let mut cap_map = serde_json::Map::new();
        if !self.grants.is_empty() {
            cap_map.insert(KUBERNETES_CAP.to_owned(), Value::Array(self.grants.clone()));
        }
        json!({
            "Node": {
                "ID": 1234567,
                "StableID": self.stable_id,
                "Name": self.node_name,
                "User": self.user_id,
                "Sharer": 0,
                "Key": "nodekey:5d1ea5cbd4b2d0c7a1a8a2d9e1f8c3b6a0f7e2d4c5b9a8e7f6d5c4b3a2910f0e",
                "KeyExpiry": "2027-05-27T10:00:00Z",
                "Machine": "mkey:1e8c3a5b7d9f0e2c4a6b8d0f1e3c5a7b9d1f3e5c7a9b0d2f4e6c8a0b2d4f6e8a",
                "DiscoKey": "discokey:0a2c4e6a8c0e2a4c6e8a0c2e4a6c8e0a2c4e6a8c0e2a4c6e8a0c2e4a6c8e0a2c",
                "Addresses": [format!("{}/32", self.address)],
                "AllowedIPs": [format!("{}/32", self.address)],
                "Endpoints": ["192.0.2.10:41641"],
                "HomeDERP": 1,
                "Hostinfo": {"OS": "linux", "Hostname": self.node_name.split('.').next().unwrap_or("node")},
                "Created": "2026-01-02T03:04:05Z",
                "Cap": 115,
                "Tags": if tagged { json!(self.tags) } else { Value::Null },
                "Online": true,
                "MachineAuthorized": true,
                "ComputedName": self.node_name.split('.').next().unwrap_or("node"),
                "ComputedNameWithHost": self.node_name.split('.').next().unwrap_or("node")
            },
            "UserProfile": {
                "ID": self.user_id,
                "LoginName": if tagged { "tagged-devices".to_owned() } else { self.login_name.clone() },
                "DisplayName": if tagged { "tagged-devices".to_owned() } else { "Alice Example".to_owned() },
                "ProfilePicURL": ""
            },
            "CapMap": cap_map
        })
    }
}

/// A stable node ID like control's: `n`, the host's letters and digits upper-cased, `CNTRL`.
fn stable_id(host: &str) -> String {
    let core: String = host
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!("n{core}CNTRL")
}
