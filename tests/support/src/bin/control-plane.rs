//! `cargo xtask apiserver`: one real control plane (etcd and kube-apiserver)
//! started by hand; prints where it listens, the kubeconfigs and the users'
//! tokens, and stops everything on Ctrl-C. The `kubescribe-proxy` user may
//! impersonate (what a proxy in auth mode needs).
//!
//! `control-plane --out DIR` also copies every user's kubeconfig to
//! `DIR/<user>.kubeconfig` and then writes `DIR/ready` (the URL), for a
//! launcher that waits for it (`cargo xtask demo --upstream apiserver`).

use std::path::PathBuf;
use std::process::ExitCode;

use test_support::apiserver::{ControlPlane, ADMIN, PROXY, USERS};
use test_support::{peers, Error};

fn main() -> ExitCode {
    let out = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, dir] if flag == "--out" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("usage: control-plane [--out DIR]");
            return ExitCode::from(2);
        }
    };
    let plane = match ControlPlane::start() {
        Ok(plane) => plane,
        Err(err) => {
            eprintln!("control-plane: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = plane.allow_impersonation(&PROXY) {
        eprintln!("control-plane: {err}");
        return ExitCode::FAILURE;
    }
    if let Some(dir) = &out {
        if let Err(err) = publish(&plane, dir) {
            eprintln!("control-plane: writing to {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    println!("kube-apiserver  {}", plane.url());
    println!("etcd            {}", plane.etcd_url());
    println!("CA              {}", plane.ca_path().display());
    println!("audit log       {}", plane.audit_log_path().display());
    println!(
        "started in      {:.1?} (etcd {} KiB, kube-apiserver {} KiB resident)",
        plane.started_in(),
        plane.etcd().rss_kib().unwrap_or(0),
        plane.apiserver().rss_kib().unwrap_or(0),
    );
    println!();
    println!("user    groups                    token                          kubeconfig");
    for user in USERS {
        println!(
            "{:<7} {:<25} {:<30} {}",
            user.name,
            user.groups.join(","),
            user.token,
            plane.kubeconfig(user).display()
        );
    }
    println!();
    let kubectl = peers::kubectl()
        .and_then(|path| std::fs::canonicalize(&path).map_err(|_| Error::PeerMissing { path }))
        .unwrap_or_else(|_| "kubectl".into());
    println!(
        "try: {} --kubeconfig {} get namespaces",
        kubectl.display(),
        plane.kubeconfig(&ADMIN).display()
    );
    println!("Ctrl-C (or SIGTERM) stops etcd and kube-apiserver and removes their files.");
    // Ctrl-C or SIGTERM (what `cargo xtask demo` sends): stop etcd and kube-apiserver on either.
    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    interrupted = tokio::signal::ctrl_c() => interrupted,
                    _ = term.recv() => Ok(()),
                }
            })
        });
    if let Err(err) = waited {
        eprintln!("control-plane: cannot wait for Ctrl-C or SIGTERM: {err}");
    }
    drop(plane);
    ExitCode::SUCCESS
}

/// Copies each user's kubeconfig into `dir`, then writes `dir/ready`.
fn publish(plane: &ControlPlane, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for user in USERS {
        std::fs::copy(
            plane.kubeconfig(user),
            dir.join(format!("{}.kubeconfig", user.name)),
        )?;
    }
    std::fs::write(dir.join("ready"), plane.url())
}
