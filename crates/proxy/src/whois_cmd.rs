//! `kubescribe-proxy whois (--localapi-socket PATH | --identity-file FILE) IP:PORT`:
//! what the proxy would decide about a caller, as JSON on stdout.

use crate::app::whois_from_config;
use crate::config::{IdentitySource, WhoisArgs};

/// Run the subcommand. Returns the process exit code; JSON goes to stdout,
/// errors to stderr.
pub async fn run(args: WhoisArgs) -> i32 {
    let source = match (args.localapi_socket, args.identity_file) {
        (Some(s), None) => IdentitySource::LocalApi(s),
        (None, Some(f)) => IdentitySource::File(f),
        (None, None) => IdentitySource::LocalApi(identity::DEFAULT_TAILSCALED_SOCKET.into()),
        (Some(_), Some(_)) => {
            eprintln!("kubescribe-proxy whois: pass either --localapi-socket or --identity-file, not both");
            return 2;
        }
    };
    let whois = match whois_from_config(&source) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("kubescribe-proxy whois: {e}");
            return 1;
        }
    };
    match identity::explain(whois.as_ref(), args.address).await {
        Ok(explanation) => {
            println!("{}", explanation.to_json_pretty());
            0
        }
        Err(e) => {
            eprintln!("kubescribe-proxy whois: {source}: {e}");
            1
        }
    }
}
