//! `kube-sim`: the Kubernetes API server simulator binary.
fn main() {
    eprintln!("kube-sim: not built yet");
    std::process::exit(2);
}
