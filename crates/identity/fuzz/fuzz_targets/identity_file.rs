//! Identity files (YAML or JSON) of any content: parsing never panics, and an accepted file only
//! holds entries whose grants parse and whose policy is never looser than they say.
#![no_main]

#[path = "../../tests/support/invariants.rs"]
mod invariants;

use std::path::Path;

use identity::IdentityFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = IdentityFile::parse(data, Path::new("fuzz.yaml")) {
        invariants::check_identity_file(&file);
        for entry in &file.entries {
            for net in &entry.sources {
                let _ = file.lookup(net.addr(), entry.cert_subject.as_deref());
            }
        }
    }
});
