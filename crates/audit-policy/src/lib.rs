//! What kubescribe records of a Kubernetes API request.
//!
//! * **Redaction** ([`Redactor`]): the request body of any request to core
//!   `secrets` (any verb, subresource or content type), or to a resource
//!   the operator names ([`GroupResource`], `--redact-resource`), is never
//!   recorded; nor is any body that names an object of kind `Secret`
//!   ([`names_secret`]: JSON, YAML, protobuf, CBOR; top level or in a
//!   `List`'s `items`). The event then says why in `kubescribe.redaction`
//!   ([`Reason`]).
//!
//! * **The audit Policy** ([`Policy`]): an `audit.k8s.io/v1` Policy file,
//!   read strictly ([`PolicyError`] says the line at fault), evaluated with
//!   kube-apiserver's semantics ([`Policy::evaluate`] over [`Attributes`]
//!   gives an [`AuditConfig`]: the [`Level`], omitted [`Stage`]s,
//!   `omitManagedFields`); [`strip_managed_fields`] applies the latter.
//!
//! The proxy decides on the resource before it reads a body, and on the body
//! before it sends the event; the recorder applies the same rule to every
//! event it receives ([`Redactor::redact_event`]), so a proxy that does not
//! redact cannot get a Secret into storage.
//!
//! # Layers
//!
//! Bottom to top; a module imports only from modules listed before it.
//!
//! 1. `group_resource`: [`GroupResource`], `GROUP/RESOURCE`.
//! 2. `sniff`: [`names_secret`], the bounded-cost body sniffer.
//! 3. `redaction`: [`Redactor`] and [`Reason`].
//! 4. `error`: [`PolicyError`].
//! 5. `policy`: [`Policy`], its rules and their evaluation.
//! 6. `managed_fields`: [`strip_managed_fields`].

#![warn(unreachable_pub)]

// 1. Names.
mod group_resource;

// 2. Bodies.
mod sniff;

// 3. The redaction rule.
mod redaction;

// 4.–6. The audit Policy.
mod error;
mod managed_fields;
mod policy;

pub use error::PolicyError;
pub use group_resource::{GroupResource, GroupResourceError};
pub use managed_fields::strip_managed_fields;
pub use policy::{Attributes, AuditConfig, GroupResources, Level, Policy, PolicyRule, Stage};
pub use redaction::{Reason, Redactor};
pub use sniff::names_secret;

/// The README's examples run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
