//! `kubescribe-proxy whois (--localapi-socket PATH | --identity-file FILE) IP:PORT`:
//! what the proxy would decide about a caller, as JSON on stdout.

use std::process::ExitCode;

use crate::config::WhoisArgs;
use identity::IdentitySource;

/// Runs the `whois` subcommand: JSON on stdout, errors on stderr; exit code
/// 0, 1 (the caller or the source cannot be looked up) or 2 (bad flags).
pub async fn whois(args: WhoisArgs) -> ExitCode {
    let source = match (&args.localapi_socket, &args.identity_file) {
        (None, None) => IdentitySource::LocalApi(identity::DEFAULT_TAILSCALED_SOCKET.into()),
        _ => match IdentitySource::from_flags(args.localapi_socket, args.identity_file) {
            Some(source) => source,
            None => {
                eprintln!("kubescribe-proxy whois: pass either --localapi-socket or --identity-file, not both");
                return ExitCode::from(2);
            }
        },
    };
    let whois = match source.open() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("kubescribe-proxy whois: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Recorder tags are resolved in the netmap of the tailscaled asked, as the proxy would.
    let netmap = match &source {
        IdentitySource::LocalApi(socket) => Some(localapi::StatusCache::new(
            localapi::LocalApi::new(socket.clone()),
            std::time::Duration::ZERO,
        )),
        IdentitySource::File(_) => None,
    };
    match identity::explain(whois.as_ref(), args.address, netmap.as_ref()).await {
        Ok(explanation) => {
            println!("{}", explanation.to_json_pretty());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubescribe-proxy whois: {source}: {e}");
            ExitCode::FAILURE
        }
    }
}
