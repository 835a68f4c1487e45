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
//! The algorithm is kube-apiserver's, described in `docs/request-info.md`
//! (`#algorithm`, `#url-handling`, `#list-options`, `#field-selectors`).
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `go_text`, `escape`, `validation`: Go's text rules (lossy UTF-8,
//!    `ToLower`, bool and int parsing), percent-unescaping, and Kubernetes
//!    name validation.
//! 2. `request_target`: the request-target as Go's server parses it
//!    ([`TargetError`]).
//! 3. `path`, [`query`]: the path's segments and the query's pairs.
//! 4. `label_selector`, `field_selector`: `labels.Parse` and
//!    `fields.ParseSelector`.
//! 5. `list_options`: the part of the `ListOptions` decode that request
//!    info depends on.
//! 6. `request_info`: [`RequestInfo`], the result, with Go's field names.
//! 7. `error`: [`RequestInfoError`], kube-apiserver's refusals.
//! 8. `factory`: [`request_info`], `NewRequestInfo` itself.
//! 9. [`cli`]: the `requestinfo` line protocol.
//!
//! ```
//! let info = k8s_request_parse::request_info("DELETE", "/apis/apps/v1/namespaces/dev/deployments")?;
//! assert_eq!(info.verb, "deletecollection");
//! assert_eq!((info.api_group.as_str(), info.namespace.as_str()), ("apps", "dev"));
//! # Ok::<(), k8s_request_parse::RequestInfoError>(())
//! ```

#![warn(unreachable_pub)]

// 1. Go's text rules.
mod escape;
mod go_text;
mod validation;

// 2. The request-target.
mod request_target;

// 3. Path and query.
mod path;
pub mod query;

// 4. Selectors.
mod field_selector;
mod label_selector;

// 5. List options.
mod list_options;

// 6. The result.
mod request_info;

// 7. Refusals.
mod error;

// 8. NewRequestInfo.
mod factory;

// 9. The line protocol.
pub mod cli;

pub use error::{PathVerb, RequestInfoError};
pub use factory::request_info;
pub use request_info::RequestInfo;
pub use request_target::TargetError;

/// The README's examples run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
