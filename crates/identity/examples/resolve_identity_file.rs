//! Resolves a peer address against an identity file and prints what kubescribe-proxy would do,
//! exactly as `kubescribe-proxy whois --identity-file FILE IP:PORT` does.
//!
//! ```text
//! cargo run -p kubescribe-identity --example resolve_identity_file -- \
//!     crates/identity/examples/identities.yaml 100.101.102.103:51234
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use identity::{explain, IdentityFileWhoIs};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(peer)) = (args.next(), args.next()) else {
        eprintln!("usage: resolve_identity_file IDENTITY_FILE IP:PORT");
        return ExitCode::from(2);
    };
    let peer: SocketAddr = match peer.parse() {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!("{peer:?} is not IP:PORT: {e}");
            return ExitCode::from(2);
        }
    };
    let whois = match IdentityFileWhoIs::load(file) {
        Ok(whois) => whois,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match explain(&whois, peer, None).await {
        Ok(explanation) => {
            println!("{}", explanation.to_json_pretty());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
