//! The request body as Go writes a `[]byte`: standard base64 with padding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Serialises bytes as a standard base64 string (`""` when empty).
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// Reads a base64 string; `null` (Go's nil slice) reads as an empty body.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    match text {
        None => Ok(Vec::new()),
        Some(text) => STANDARD.decode(text.as_bytes()).map_err(|e| {
            serde::de::Error::custom(format!("request.body is not valid base64: {e}"))
        }),
    }
}
