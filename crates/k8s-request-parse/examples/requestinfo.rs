//! `requestinfo`: Kubernetes request info for JSON lines on stdin.
//!
//! ```text
//! $ echo '{"method":"GET","url":"/api/v1/pods?watch=1"}' | cargo run -q -p kubescribe-k8s-request-parse --example requestinfo
//! {"IsResourceRequest":true,"Path":"/api/v1/pods","Verb":"watch",...,"Parts":["pods"],"FieldSelector":"","LabelSelector":"","error":null}
//! ```
//!
//! One output line per input line, flushed as it is written; see
//! `k8s_request_parse::cli` for the contract.

use std::io::{BufRead, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(err) => {
                eprintln!("requestinfo: cannot read stdin: {err}");
                return ExitCode::FAILURE;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let answer = k8s_request_parse::cli::process_line_bytes(&line);
        if let Err(err) = writeln!(output, "{answer}").and_then(|()| output.flush()) {
            eprintln!("requestinfo: cannot write stdout: {err}");
            return ExitCode::FAILURE;
        }
    }
}
