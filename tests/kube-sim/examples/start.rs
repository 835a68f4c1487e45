//! Starts a simulator, writes a kubeconfig, waits for Ctrl-C, then prints what it saw.
//!
//! `cargo run -p kubescribe-kube-sim --example start` then, in another shell,
//! `kubectl --kubeconfig /tmp/kube-sim-example.kubeconfig get pods`.

use kube_sim::{Credentials, KubeSim, SimConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = KubeSim::start(SimConfig::default()).await?;
    let path = std::env::temp_dir().join("kube-sim-example.kubeconfig");
    sim.write_kubeconfig(&path, &Credentials::None)?;
    println!(
        "kube-sim at {}; export KUBECONFIG={}",
        sim.url(),
        path.display()
    );
    tokio::signal::ctrl_c().await?;
    for request in sim.requests() {
        println!(
            "{} {} -> {:?} as {:?}",
            request.method,
            request.uri,
            request.status,
            request.user.map(|u| u.username)
        );
    }
    sim.shutdown().await;
    Ok(())
}
