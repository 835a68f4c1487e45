//! The JSON that tailscaled's LocalAPI answers to `GET /localapi/v0/whois` (Go's
//! `apitype.WhoIsResponse`), reduced to the fields kubescribe uses. Unknown fields are ignored so
//! that a real, full response (or one from a newer tailscaled) parses.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

/// Peer capabilities granted to the caller: capability name → one raw JSON value per matching
/// grant rule, in the order control delivered them (Go's `tailcfg.PeerCapMap`).
///
/// Values stay raw here; [`crate::RecordingRules::from_caps`] and [`crate::impersonation_headers`]
/// interpret the `tailscale.com/cap/kubernetes` entries.
pub type CapMap = BTreeMap<String, Vec<serde_json::Value>>;

/// Upper bound on the size of a WhoIs answer or identity file this crate will parse.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// A WhoIs answer: the peer's node, the user that owns it, and the capabilities it holds towards
/// this node. Field names are tailscaled's (`Node`, `UserProfile`, `CapMap`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WhoIsResponse {
    /// The peer's node.
    #[serde(rename = "Node", default, deserialize_with = "null_default")]
    pub node: Node,
    /// The user owning the node (for tagged nodes, tailscale's "tagged-devices" pseudo-user).
    #[serde(rename = "UserProfile", default, deserialize_with = "null_default")]
    pub user_profile: UserProfile,
    /// The peer's capabilities towards this node.
    #[serde(
        rename = "CapMap",
        default,
        deserialize_with = "cap_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub cap_map: CapMap,
}

impl WhoIsResponse {
    /// Parses a WhoIs answer from JSON bytes as tailscaled sends them. Only a JSON object is
    /// accepted (serde would otherwise also read a list as a struct).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(serde::de::Error::custom(
                "a WhoIs answer must be a JSON object",
            ));
        }
        serde_json::from_slice(bytes)
    }

    /// Why this answer cannot identify anyone, if it cannot: a node without `StableID` or
    /// `Name` would produce anonymous records.
    pub fn incomplete(&self) -> Option<&'static str> {
        if self.node.stable_id.is_empty() {
            Some("Node.StableID is missing")
        } else if self.node.name.trim_end_matches('.').is_empty() {
            Some("Node.Name is missing")
        } else {
            None
        }
    }
}

/// The subset of tailscale's `tailcfg.Node` that identifies a caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Numeric node ID (`ID`).
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: i64,
    /// Stable node ID (`StableID`), e.g. `nKf3tZ7CNTRL`.
    #[serde(rename = "StableID", default, deserialize_with = "null_default")]
    pub stable_id: String,
    /// MagicDNS FQDN **with** its trailing dot (`Name`), e.g. `laptop.tail1234.ts.net.`.
    #[serde(rename = "Name", default, deserialize_with = "null_default")]
    pub name: String,
    /// The owning user's ID (`User`); used in cast headers.
    #[serde(rename = "User", default, deserialize_with = "null_default")]
    pub user: i64,
    /// ACL tags (`Tags`); a node is tagged iff this is non-empty.
    #[serde(
        rename = "Tags",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// The node's tailnet addresses (`Addresses`), e.g. `100.101.102.103/32`.
    #[serde(rename = "Addresses", default, deserialize_with = "null_default")]
    pub addresses: Vec<IpNet>,
    /// The node's short name as computed by tailscale (`ComputedName`), if sent.
    #[serde(
        rename = "ComputedName",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub computed_name: String,
}

/// The subset of tailscale's `tailcfg.UserProfile` that identifies a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Numeric user ID (`ID`); used in events.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: i64,
    /// Login name (`LoginName`), e.g. `alice@example.com`; `tagged-devices` for tagged nodes.
    #[serde(rename = "LoginName", default, deserialize_with = "null_default")]
    pub login_name: String,
    /// Display name (`DisplayName`).
    #[serde(rename = "DisplayName", default, deserialize_with = "null_default")]
    pub display_name: String,
}

/// Go writes `null` for nil slices, maps and pointers: read it as the default value.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A CapMap whose values may each be `null` (a Go nil slice).
pub(crate) fn cap_map<'de, D>(deserializer: D) -> Result<CapMap, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Option<Vec<serde_json::Value>>>> =
        Option::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(cap, rules)| (cap, rules.unwrap_or_default()))
        .collect())
}
