//! Tailnet caller identity for kubescribe: who is calling (WhoIs over tailscaled's LocalAPI or a
//! static identity file), what their `tailscale.com/cap/kubernetes` grants say (recorder policy,
//! impersonation groups), and which identities may upload to or read from a recorder.
//!
//! The data path, in the order the proxy uses it:
//!
//! 1. [`WhoIs::whois`] turns a peer address into a [`Caller`] (an [`Identity`] plus its [`CapMap`]).
//!    Sources: [`LocalApiWhoIs`] (tailscaled) and [`IdentityFileWhoIs`] (a static file in the
//!    same JSON shape as tailscaled's [`WhoIsResponse`]).
//! 2. [`RecorderPolicy::from_caps`] merges the grant rules into one recorder policy
//!    (addresses, fail open/closed, events on/off).
//! 3. In auth mode, [`strip_client_credentials`] and [`impersonation_headers`] +
//!    [`Impersonation::apply`] rewrite the upstream request's headers.
//!
//! Any grant that does not parse is a [`GrantError`], which the proxy turns into a refusal: this
//! crate never falls back to "no policy" or "no impersonation".
//!
//! ```
//! use identity::{impersonation_headers, Caller, RecorderPolicy, WhoIsResponse};
//!
//! let json = r#"{
//!   "Node": {"ID": 7, "StableID": "nKf3tZ7CNTRL", "Name": "alice-laptop.tail1234.ts.net.",
//!            "User": 42, "Addresses": ["100.101.102.103/32"]},
//!   "UserProfile": {"ID": 42, "LoginName": "alice@example.com", "DisplayName": "Alice"},
//!   "CapMap": {"tailscale.com/cap/kubernetes": [
//!     {"impersonate": {"groups": ["system:masters"]},
//!      "recorderAddrs": ["100.64.0.5:80"], "enforceRecorder": true}]}
//! }"#;
//! let caller = Caller::from(WhoIsResponse::from_json(json.as_bytes())?);
//! assert_eq!(caller.identity.node_name, "alice-laptop.tail1234.ts.net");
//!
//! let policy = RecorderPolicy::from_caps(&caller.caps)?;
//! assert!(!policy.fail_open);
//! assert_eq!(policy.recorder_addrs, vec!["100.64.0.5:80".parse()?]);
//!
//! let imp = impersonation_headers(&caller)?;
//! assert_eq!(imp.user(), "alice@example.com");
//! assert_eq!(imp.groups(), ["system:masters"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod allow_list;
mod cache;
mod caller;
mod explain;
mod grants;
mod identity_file;
mod impersonation;
mod localapi;
mod policy;
mod whois;
mod whois_response;

pub use allow_list::{AllowList, AllowListError};
pub use caller::{Caller, Identity};
pub use explain::{explain, Explanation, Outcome};
pub use grants::{
    parse_rules, GrantError, ImpersonateRule, KubernetesCapRule, KUBERNETES_CAP,
    LEGACY_KUBERNETES_CAP,
};
pub use identity_file::{
    IdentityFile, IdentityFileEntry, IdentityFileError, IdentityFileWhoIs, ReloadOptions,
    MAX_IDENTITY_FILE_BYTES,
};
pub use impersonation::{
    impersonation_headers, is_client_credential_header, strip_client_credentials, Impersonation,
};
pub use localapi::{LocalApiConfig, LocalApiWhoIs, DEFAULT_TAILSCALED_SOCKET};
pub use policy::RecorderPolicy;
pub use whois::{peer_from_forwarded_for, WhoIs, WhoIsError};
pub use whois_response::{CapMap, Node, UserProfile, WhoIsResponse};
