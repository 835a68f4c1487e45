//! Tailnet caller identity for kubescribe: who is calling (WhoIs over tailscaled's LocalAPI or a
//! static identity file), what their `tailscale.com/cap/kubernetes` grants say (recording rules,
//! impersonation groups), and which identities may upload to or read from a recorder.
//!
//! The data path, in the order the proxy uses it:
//!
//! 1. [`WhoIs::whois`] turns a peer address into a [`Caller`] (an [`Identity`] plus its [`CapMap`]).
//!    Sources: [`LocalApiWhoIs`] (tailscaled) and [`IdentityFileWhoIs`] (a static file in the
//!    same JSON shape as tailscaled's [`WhoIsResponse`]).
//! 2. [`RecordingRules::from_caps`] merges the grant rules into one recording rules
//!    (addresses, fail open/closed, events on/off). When the rules name `recorder` tags but no
//!    addresses (control did not resolve them), [`RecordingRules::resolve_tags`] finds the
//!    recorders among the peers of the proxy node's netmap (tailscaled's status, through the
//!    `localapi` crate).
//! 3. In auth mode, [`strip_client_credentials`] and [`impersonation_headers`] +
//!    [`Impersonation::apply`] rewrite the upstream request's headers.
//!
//! Any grant that does not parse is a [`GrantError`], which the proxy turns into a refusal: this
//! crate never falls back to "no policy" or "no impersonation".
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `whois_response`: [`WhoIsResponse`], tailscaled's WhoIs JSON, and [`CapMap`].
//! 2. `caller`: [`Identity`] and [`Caller`], what kubescribe records and authorises on.
//! 3. `grants`: the `tailscale.com/cap/kubernetes` rules, parsed strictly ([`GrantError`]).
//! 4. `recording_rules`, `impersonation`, `allow_list`: what the grants and identity mean
//!    ([`RecordingRules`], [`Impersonation`], [`AllowList`]).
//! 5. `whois`: the [`WhoIs`] seam and [`WhoIsError`].
//! 6. `cache`: the short-lived cache of WhoIs answers.
//! 7. `localapi`, `identity_file`: the two WhoIs sources ([`LocalApiWhoIs`],
//!    [`IdentityFileWhoIs`]). The LocalAPI's HTTP plumbing itself is the `localapi` crate's,
//!    shared with the recorder client's dialer.
//! 8. `source`: [`IdentitySource`], the source a binary's flags name, opened as a [`WhoIs`].
//! 9. `explain`: everything the proxy would decide about one peer ([`explain`]).
//!
//! ```
//! use identity::{impersonation_headers, Caller, RecordingRules, WhoIsResponse};
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
//! let rules = RecordingRules::from_caps(&caller.caps)?;
//! assert!(!rules.fail_open);
//! assert_eq!(rules.recorder_addrs, vec!["100.64.0.5:80".parse()?]);
//!
//! let imp = impersonation_headers(&caller)?;
//! assert_eq!(imp.user(), "alice@example.com");
//! assert_eq!(imp.groups(), ["system:masters"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(unreachable_pub)]

// 1. WhoIs answers.
mod whois_response;

// 2. Identities.
mod caller;

// 3. Grants.
mod grants;

// 4. What the grants and identity mean.
mod allow_list;
mod impersonation;
mod recording_rules;

// 5. The WhoIs seam.
mod whois;

// 6. The WhoIs cache.
mod cache;

// 7. WhoIs sources.
mod identity_file;
mod localapi;

// 8. Identity sources named by flags.
mod source;

// 9. Explaining a decision.
mod explain;

pub use allow_list::{AllowList, AllowListError};
pub use caller::{Caller, Identity};
pub use explain::{explain, Explanation, Outcome};
pub use grants::{GrantError, KUBERNETES_CAP, LEGACY_KUBERNETES_CAP};
pub use identity_file::{
    IdentityFile, IdentityFileEntry, IdentityFileError, IdentityFileSyntaxError, IdentityFileWhoIs,
    ReloadOptions, MAX_IDENTITY_FILE_BYTES,
};
pub use impersonation::{impersonation_headers, strip_client_credentials, Impersonation};
pub use localapi::{LocalApiConfig, LocalApiWhoIs, DEFAULT_TAILSCALED_SOCKET};
pub use recording_rules::RecordingRules;
pub use source::IdentitySource;
pub use whois::{peer_from_forwarded_for, WhoIs, WhoIsError};
pub use whois_response::{CapMap, Node, UserProfile, WhoIsResponse};

/// The README's example runs as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
