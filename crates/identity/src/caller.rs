//! Who is calling: the [`Identity`] kubescribe records and authorises on, and the [`Caller`] that a
//! WhoIs lookup returns (identity plus grants).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::whois_response::{CapMap, WhoIsResponse};

/// A caller's identity as kubescribe uses it, derived from a [`WhoIsResponse`].
///
/// Which fields go where (`docs/tailscale-protocol.md#event-schema`, `#cast-format`):
/// * events: `node_name`, `stable_node_id`, and either `tags` (tagged node) or
///   `login_name` + `user_id` (untagged node);
/// * cast headers: `node_user_id` (`Node.User`), not `user_id`;
/// * never recorded: `addresses`, `display_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Node FQDN **without** the trailing dot, e.g. `alice-laptop.tail1234.ts.net`.
    pub node_name: String,
    /// Stable node ID (`Node.StableID`).
    pub stable_node_id: String,
    /// Numeric node ID (`Node.ID`).
    pub node_id: i64,
    /// ACL tags of the node; non-empty means the node is tagged (see [`Identity::is_tagged`]).
    pub tags: Vec<String>,
    /// `UserProfile.ID`: the user ID written into events.
    pub user_id: i64,
    /// `Node.User`: the user ID written into cast headers.
    pub node_user_id: i64,
    /// `UserProfile.LoginName`, e.g. `alice@example.com` (`tagged-devices` for tagged nodes).
    pub login_name: String,
    /// `UserProfile.DisplayName`.
    pub display_name: String,
    /// The node's tailnet addresses (`Node.Addresses`).
    pub addresses: Vec<IpNet>,
}

impl Identity {
    /// Whether the node carries ACL tags. A tagged node has no user identity of its own: it is
    /// recorded by node and tags, and impersonated as its FQDN.
    pub fn is_tagged(&self) -> bool {
        !self.tags.is_empty()
    }

    /// Builds the identity from a WhoIs answer (drops the FQDN's trailing dot).
    pub fn from_whois(response: &WhoIsResponse) -> Self {
        let node = &response.node;
        let user = &response.user_profile;
        Identity {
            node_name: node.name.strip_suffix('.').unwrap_or(&node.name).to_owned(),
            stable_node_id: node.stable_id.clone(),
            node_id: node.id,
            tags: node.tags.clone(),
            user_id: user.id,
            node_user_id: node.user,
            login_name: user.login_name.clone(),
            display_name: user.display_name.clone(),
            addresses: node.addresses.clone(),
        }
    }

    /// The `source` of an event this caller's request produces (`docs/tailscale-protocol.md#whois`):
    /// node name and stable ID, then tags for a tagged node, or the user's profile ID and login for an
    /// untagged one.
    pub fn event_source(&self) -> event_model::Source {
        let mut source = event_model::Source {
            node: self.node_name.clone(),
            node_id: self.stable_node_id.clone(),
            ..Default::default()
        };
        if self.is_tagged() {
            source.node_tags = self.tags.clone();
        } else {
            source.node_user_id = self.user_id;
            source.node_user = self.login_name.clone();
        }
        source
    }

    /// A short human description for logs: `alice@example.com on laptop.ts.net` or
    /// `tag:k8s,tag:ci on runner.ts.net`.
    pub fn describe(&self) -> String {
        if self.is_tagged() {
            format!("{} on {}", self.tags.join(","), self.node_name)
        } else {
            format!("{} on {}", self.login_name, self.node_name)
        }
    }
}

/// The answer of a [`crate::WhoIs`] lookup: who the caller is and the raw grants it holds towards
/// this node. Interpret the grants with [`crate::RecordingRules::from_caps`] and
/// [`crate::impersonation_headers`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Caller {
    /// The caller's identity.
    pub identity: Identity,
    /// The caller's capabilities towards this node, as delivered by control (raw JSON rules).
    pub caps: CapMap,
}

impl From<WhoIsResponse> for Caller {
    fn from(response: WhoIsResponse) -> Self {
        let identity = Identity::from_whois(&response);
        Caller {
            identity,
            caps: response.cap_map,
        }
    }
}
