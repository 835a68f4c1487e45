//! Go's JSON conventions on the way in and out: `null` (a nil slice, map or
//! pointer) reads as the Rust default value, and `omitempty` leaves zero
//! numbers out.

use serde::{Deserialize, Deserializer};

/// Deserialises `null` as `T::default()`, anything else as `T`.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` for Go's `omitempty` on an integer.
pub(crate) fn is_zero(value: &i64) -> bool {
    *value == 0
}
