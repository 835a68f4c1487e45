//! Reading Go's `null` (a nil slice, map or pointer) as the Rust default value.

use serde::{Deserialize, Deserializer};

/// Deserialises `null` as `T::default()`, anything else as `T`.
pub(crate) fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
