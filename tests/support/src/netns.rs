//! A network namespace of the test's own, sealed from the outside world: the
//! test re-runs itself inside `unshare --net`, where the only interfaces are
//! loopback and a veth pair whose both ends stay inside the namespace.
//!
//! The pair exists only because tailscaled pauses its control client on a
//! host without a non-loopback address ("no network"); its address
//! (192.0.2.1/32, a documentation address) has no route beyond itself and
//! there is no default route, so no packet can leave the machine: tailscaled
//! and everything else in the namespace can only reach loopback.
//!
//! ```no_run
//! #[test]
//! fn on_the_tailnet() {
//!     // In the parent: runs this very test in a namespace and checks it passed.
//!     if !test_support::netns::run_isolated("on_the_tailnet").unwrap() {
//!         return;
//!     }
//!     // Here: inside the namespace.
//! }
//! ```

use std::process::Command;

use crate::Error;

/// Set (to `1`) in the environment of the test re-run inside the namespace.
pub const INSIDE_ENV: &str = "KUBESCRIBE_PRIVATE_NETNS";

/// The address of the namespace's one non-loopback interface.
pub const SINK_ADDRESS: &str = "192.0.2.1";

/// Runs the test `test` (its path inside the test binary, e.g.
/// `tailnet::events`) in a fresh network namespace and returns `Ok(false)`
/// once it passed there; inside that namespace, seals it and returns
/// `Ok(true)`: the caller then runs the test's body.
pub fn run_isolated(test: &str) -> Result<bool, Error> {
    if std::env::var_os(INSIDE_ENV).is_some() {
        seal()?;
        return Ok(true);
    }
    let exe = std::env::current_exe().map_err(Error::io("locating the test executable"))?;
    let output = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--include-ignored"])
        .args(["--test-threads", "1"])
        .env(INSIDE_ENV, "1")
        .output()
        .map_err(Error::io(format!(
            "running `unshare --net {}`",
            exe.display()
        )))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by the test harness with the parent's own output.
    print!("{stdout}");
    eprint!("{stderr}");
    if !output.status.success() {
        return Err(Error::Command {
            what: format!("the test {test} in its own network namespace"),
            status: output.status.to_string(),
            output: last_lines(&format!("{stdout}\n{stderr}"), 15),
        });
    }
    if !stdout.contains("1 passed") {
        return Err(Error::Namespace(format!(
            "the re-run did not run exactly the test {test:?} (is that its full path in the test binary?)"
        )));
    }
    Ok(false)
}

/// Brings loopback up, adds the veth sink, and checks that nothing else is
/// there: no other interface, no default route. For a program started with
/// `unshare --net` and [`INSIDE_ENV`] set (`cargo xtask tailnet`);
/// [`run_isolated`] does this for tests.
pub fn seal() -> Result<(), Error> {
    if std::env::var_os(INSIDE_ENV).is_none() {
        return Err(Error::Namespace(format!(
            "refusing to reconfigure this network namespace: {INSIDE_ENV} is not set \
             (run under `unshare --net`)"
        )));
    }
    ip(&["link", "set", "lo", "up"])?;
    // /sys/class/net shows the namespace sysfs was mounted in: ask `ip`.
    let mut names = interface_names()?;
    if !names.iter().any(|name| name == "ks0") {
        ip(&["link", "add", "ks0", "type", "veth", "peer", "name", "ks1"])?;
        ip(&["addr", "add", &format!("{SINK_ADDRESS}/32"), "dev", "ks0"])?;
        ip(&["link", "set", "ks0", "up"])?;
        ip(&["link", "set", "ks1", "up"])?;
        names = interface_names()?;
    }
    if names != ["ks0", "ks1", "lo"] {
        return Err(Error::Namespace(format!(
            "expected only lo and the ks0/ks1 pair, found {names:?}"
        )));
    }
    let routes = ip(&["-4", "route", "show", "default"])?;
    let routes6 = ip(&["-6", "route", "show", "default"])?;
    if !routes.trim().is_empty() || !routes6.trim().is_empty() {
        return Err(Error::Namespace(format!(
            "a default route exists: {routes}{routes6}"
        )));
    }
    Ok(())
}

/// The namespace's interface names, sorted (`ip -o link show`: "1: lo: <…").
fn interface_names() -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn ip(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(Error::io(format!("running `ip {}`", args.join(" "))))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            what: format!("ip {}", args.join(" ")),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
