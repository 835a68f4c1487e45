//! Runs the UI's JavaScript unit tests (`tests/js/*.test.mjs`) with Node's
//! built-in test runner. Node is required: the test fails, not skips,
//! without it.

use std::path::Path;
use std::process::Command;

#[test]
fn javascript_unit_tests_pass_under_node() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let out = Command::new("node")
        .arg("--test")
        .arg(dir.join("units.test.mjs"))
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `node` ({e}): install Node.js 20 (the project's peers need it too; run `cargo xtask peers`)"
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "JavaScript unit tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# pass 8"),
        "expected 8 passing tests:\n{stdout}"
    );
}
