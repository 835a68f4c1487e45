//! Kubernetes request info from an HTTP method and request-target, exactly as
//! kube-apiserver's `RequestInfoFactory` derives it (API prefixes `api` and
//! `apis`, groupless prefix `api`): verb, API group and version, namespace,
//! resource, subresource, name and the raw field/label selectors.
//!
//! * [`request_info`] is the entry point; [`RequestInfo`] is the result,
//!   serialised with the Go field names Tailscale's events use.
//! * [`query`] parses query strings with Go's `url.ParseQuery` rules.
//! * [`cli`] is the line protocol of the `requestinfo` example binary.
//!
//! ```
//! let info = k8s_request_parse::request_info("DELETE", "/apis/apps/v1/namespaces/dev/deployments")?;
//! assert_eq!(info.verb, "deletecollection");
//! assert_eq!((info.api_group.as_str(), info.namespace.as_str()), ("apps", "dev"));
//! # Ok::<(), k8s_request_parse::RequestInfoError>(())
//! ```

pub mod cli;
mod error;
mod escape;
mod factory;
mod field_selector;
mod go_text;
mod label_selector;
mod list_options;
mod path;
pub mod query;
mod request_info;
mod request_target;
mod validation;

pub use error::{PathVerb, RequestInfoError};
pub use factory::request_info;
pub use request_info::RequestInfo;
pub use request_target::TargetError;

/// The README's examples compile and pass as doc-tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
