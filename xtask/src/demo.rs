//! `cargo xtask demo`: simulator + recorder + proxy on localhost.

use crate::cmd::Result;

/// Starts the demo.
pub fn run() -> Result<()> {
    Err(
        "the demo is not built yet: it needs the simulator, recorder and proxy (issues 3, 5, 7)"
            .into(),
    )
}
