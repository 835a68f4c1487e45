//! `cargo xtask bench`: every benchmark, briefly.

use crate::cmd::{cargo, exec, Result};

/// Runs the criterion benchmarks of every crate that has them.
pub fn run() -> Result<()> {
    exec(cargo().args(["bench", "--workspace", "--"]).args([
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ]))
}
