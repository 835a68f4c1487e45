//! Session upload slots, shared fairly: a session upload holds one slot from
//! its request until it ends, counted in total (`--max-concurrent-uploads`),
//! against its uploader (`--max-uploads-per-uploader`) from the start, and
//! against its caller (`--max-uploads-per-caller`) from the moment its cast
//! header names the caller. So no one uploader, and no one caller behind an
//! honest uploader, can take every slot: others' sessions are still recorded.
//!
//! The uploader is who authenticated the upload (a WhoIs node, the upload
//! token, an address under `--insecure-allow-any-uploader`). The caller is who
//! the cast header says the session belongs to: that is the uploader's word,
//! so the per-caller limit shares one honest uploader (a proxy) fairly among
//! its callers, and the per-uploader limit bounds what a dishonest one can take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

/// A session upload refused over one of the limits: which limit, and whose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    /// Every slot is taken.
    #[error("too many session uploads in progress (limit {limit}, --max-concurrent-uploads); retry later")]
    Total {
        /// `--max-concurrent-uploads`.
        limit: usize,
    },
    /// The uploader holds its share.
    #[error("uploader {uploader} already has {limit} session uploads in progress (limit per uploader, --max-uploads-per-uploader)")]
    Uploader {
        /// The uploader, as logs name it.
        uploader: String,
        /// `--max-uploads-per-uploader`.
        limit: usize,
    },
    /// The caller holds its share.
    #[error("caller {caller} already has {limit} sessions being recorded (limit per caller, --max-uploads-per-caller); this session is not recorded")]
    Caller {
        /// The caller, as the cast header names it.
        caller: String,
        /// `--max-uploads-per-caller`.
        limit: usize,
    },
}

impl SlotRefusal {
    /// The `reason` label of `requests_rejected_total` (and the session outcome).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SlotRefusal::Total { .. } => "too_many_uploads",
            SlotRefusal::Uploader { .. } => "uploader_limit",
            SlotRefusal::Caller { .. } => "caller_limit",
        }
    }
}

/// Who a session belongs to, by its cast header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionCaller {
    /// What the count is kept under: `user:LOGIN` or `node:ID`.
    key: String,
    /// How refusals and logs name the caller.
    shown: String,
}

impl SessionCaller {
    /// The caller a cast header names: the user (`srcNodeUser`) for a user's
    /// nodes, so that one person's devices share one limit; the node
    /// (`srcNodeID`, else `srcNode`) for a tagged node, whose tags are shown.
    /// `None` when the header names nobody (such sessions count against their
    /// uploader only).
    pub(crate) fn from_header(header: &Value) -> Option<Self> {
        let text = |field: &str| {
            header
                .get(field)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        if let Some(user) = text("srcNodeUser") {
            return Some(Self {
                key: format!("user:{user}"),
                shown: format!("user {user}"),
            });
        }
        let node = text("srcNode");
        let id = text("srcNodeID").or(node)?;
        let tags: Vec<&str> = header
            .get("srcNodeTags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let name = node.unwrap_or(id);
        let shown = if tags.is_empty() {
            format!("node {name}")
        } else {
            format!("node {name} ({})", tags.join(","))
        };
        Some(Self {
            key: format!("node:{id}"),
            shown,
        })
    }

    /// How refusals and logs name the caller.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

/// The limits the slots enforce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLimits {
    /// `--max-concurrent-uploads`.
    pub(crate) total: usize,
    /// `--max-uploads-per-uploader`.
    pub(crate) per_uploader: usize,
    /// `--max-uploads-per-caller`.
    pub(crate) per_caller: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    uploaders: HashMap<String, usize>,
    callers: HashMap<String, usize>,
}

/// The session upload slots of one recorder.
pub(crate) struct UploadSlots {
    limits: SlotLimits,
    counts: Mutex<Counts>,
}

impl UploadSlots {
    /// Slots within `limits`.
    pub(crate) fn new(limits: SlotLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new upload by `uploader` (counted under `key`, named
    /// `shown`), or which limit is full. The uploader's own limit is checked
    /// first: its refusal says more than "the recorder is full".
    pub(crate) fn acquire(
        self: &Arc<Self>,
        key: &str,
        shown: &str,
    ) -> Result<UploadSlot, SlotRefusal> {
        let mut counts = self.counts();
        let held = counts.uploaders.get(key).copied().unwrap_or(0);
        if held >= self.limits.per_uploader {
            return Err(SlotRefusal::Uploader {
                uploader: shown.to_owned(),
                limit: self.limits.per_uploader,
            });
        }
        if counts.total >= self.limits.total {
            return Err(SlotRefusal::Total {
                limit: self.limits.total,
            });
        }
        counts.total += 1;
        *counts.uploaders.entry(key.to_owned()).or_insert(0) += 1;
        Ok(UploadSlot {
            slots: self.clone(),
            uploader: key.to_owned(),
            caller: None,
        })
    }

    /// Session uploads in progress: in total, and of the busiest caller.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let counts = self.counts();
        let busiest = counts.callers.values().copied().max().unwrap_or(0);
        (counts.total, busiest)
    }
}

/// One session upload's slot, released when dropped.
pub(crate) struct UploadSlot {
    slots: Arc<UploadSlots>,
    uploader: String,
    caller: Option<String>,
}

impl std::fmt::Debug for UploadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSlot")
            .field("uploader", &self.uploader)
            .field("caller", &self.caller)
            .finish()
    }
}

impl UploadSlot {
    /// Counts this upload against `caller` too, or refuses it when the caller
    /// already holds its limit. Once per upload; later calls change nothing.
    pub(crate) fn claim_caller(&mut self, caller: &SessionCaller) -> Result<(), SlotRefusal> {
        if self.caller.is_some() {
            return Ok(());
        }
        let mut counts = self.slots.counts();
        let held = counts.callers.get(&caller.key).copied().unwrap_or(0);
        if held >= self.slots.limits.per_caller {
            return Err(SlotRefusal::Caller {
                caller: caller.shown.clone(),
                limit: self.slots.limits.per_caller,
            });
        }
        *counts.callers.entry(caller.key.clone()).or_insert(0) += 1;
        drop(counts);
        self.caller = Some(caller.key.clone());
        Ok(())
    }
}

/// Takes one from `key`'s count, forgetting the key at zero (the maps hold
/// only identities with uploads in progress).
fn release(map: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        counts.total = counts.total.saturating_sub(1);
        release(&mut counts.uploaders, &self.uploader);
        if let Some(caller) = &self.caller {
            release(&mut counts.callers, caller);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slots(total: usize, per_uploader: usize, per_caller: usize) -> Arc<UploadSlots> {
        UploadSlots::new(SlotLimits {
            total,
            per_uploader,
            per_caller,
        })
    }

    #[test]
    fn callers_are_users_or_nodes() {
        let alice = SessionCaller::from_header(&json!({
            "version": 2, "srcNode": "laptop.ts.net", "srcNodeID": "nA", "srcNodeUser": "alice@example.com"
        }))
        .unwrap();
        assert_eq!(alice.key, "user:alice@example.com");
        assert_eq!(alice.shown(), "user alice@example.com");
        let ci = SessionCaller::from_header(&json!({
            "version": 2, "srcNode": "ci.ts.net", "srcNodeID": "nCI", "srcNodeUser": "",
            "srcNodeTags": ["tag:ci", "tag:build"]
        }))
        .unwrap();
        assert_eq!(ci.key, "node:nCI");
        assert_eq!(ci.shown(), "node ci.ts.net (tag:ci,tag:build)");
        let by_name = SessionCaller::from_header(&json!({"version": 2, "srcNode": "n.ts.net"}));
        assert_eq!(by_name.map(|c| c.key), Some("node:n.ts.net".to_owned()));
        assert_eq!(
            SessionCaller::from_header(&json!({"version": 2, "srcNode": " ", "srcNodeUser": ""})),
            None
        );
    }

    #[test]
    fn one_uploader_cannot_take_every_slot() {
        let slots = slots(4, 2, 10);
        let a1 = slots.acquire("a", "node a").unwrap();
        let _a2 = slots.acquire("a", "node a").unwrap();
        assert_eq!(
            slots.acquire("a", "node a").unwrap_err(),
            SlotRefusal::Uploader {
                uploader: "node a".into(),
                limit: 2
            }
        );
        let _b1 = slots.acquire("b", "node b").unwrap();
        let _b2 = slots.acquire("b", "node b").unwrap();
        // Full: a third uploader hears that the recorder is full.
        assert_eq!(
            slots.acquire("c", "node c").unwrap_err(),
            SlotRefusal::Total { limit: 4 }
        );
        drop(a1);
        let _c = slots.acquire("c", "node c").unwrap();
    }

    #[test]
    fn one_caller_cannot_take_an_uploaders_slots() {
        let slots = slots(10, 10, 2);
        let alice =
            SessionCaller::from_header(&json!({"srcNodeUser": "alice@example.com"})).unwrap();
        let bob = SessionCaller::from_header(&json!({"srcNodeUser": "bob@example.com"})).unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut slot = slots.acquire("proxy", "node proxy").unwrap();
            slot.claim_caller(&alice).unwrap();
            held.push(slot);
        }
        let mut third = slots.acquire("proxy", "node proxy").unwrap();
        let refusal = third.claim_caller(&alice).unwrap_err();
        assert_eq!(refusal.reason(), "caller_limit");
        assert!(
            refusal.to_string().contains("user alice@example.com")
                && refusal.to_string().contains("--max-uploads-per-caller"),
            "{refusal}"
        );
        drop(third);
        let mut other = slots.acquire("proxy", "node proxy").unwrap();
        other.claim_caller(&bob).unwrap();
        // Claiming twice counts once.
        other.claim_caller(&bob).unwrap();
        assert_eq!(slots.held(), (3, 2));
        drop(other);
        held.clear();
        assert_eq!(slots.held(), (0, 0));
        assert!(slots.counts().uploaders.is_empty() && slots.counts().callers.is_empty());
    }
}
