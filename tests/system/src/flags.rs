//! Whether a rendered container (a Helm rendering, an operator's child) runs one of the project's
//! binaries with a command line it accepts.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use test_support::process::workspace_bin;

use crate::run::{output_text, with_deadline};

/// Environment variables the binaries read without naming them in `--help`: the standard AWS
/// credentials of the S3 client.
const STANDARD_ENV: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// The container's (JSON) args and environment are ones `binary` accepts: it parses them (every
/// flag known, every value valid) before printing its `--help`, and every environment variable set
/// is one its `--help` names. A value from a Secret stands in as a placeholder. Panics naming
/// `what` otherwise.
pub fn assert_real_flags(container: &Value, binary: &str, what: &str) {
    let path = workspace_bin(binary).unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no args array"))
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap_or_else(|| panic!("{what}: an arg that is no string"))
        })
        .collect();
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let mut command = Command::new(path);
    command.args(&args).arg("--help");
    for variable in &env {
        let name = variable["name"].as_str().expect("an env name");
        command.env(name, variable["value"].as_str().unwrap_or("from-a-secret"));
    }
    let parsed = with_deadline(&mut command, Duration::from_secs(60)).expect("--help runs");
    assert!(
        parsed.status.success(),
        "{what}: {binary} refuses the args {args:?}: {}",
        output_text(&parsed)
    );
    let help = String::from_utf8_lossy(&parsed.stdout);
    for variable in &env {
        let name = variable["name"].as_str().expect("an env name");
        assert!(
            STANDARD_ENV.contains(&name) || help.contains(name),
            "{what}: {binary} --help names no environment variable {name}"
        );
    }
}
