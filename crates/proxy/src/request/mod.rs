//! One proxied request: its context (id, caller address, target, timing) and
//! the capture of its body for the event.

pub(crate) mod body_capture;
pub(crate) mod context;
