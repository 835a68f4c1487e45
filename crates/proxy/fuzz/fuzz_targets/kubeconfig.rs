//! Arbitrary kubeconfig bytes: a clear error or a spec, never a panic.
#![no_main]

use kubescribe_proxy::UpstreamSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = UpstreamSpec::from_kubeconfig_yaml(data, None);
});
