//! Decodes Kubernetes protobuf request bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut body = b"k8s\0".to_vec();
    body.extend_from_slice(data);
    let _ = kube_sim::protobuf::decode(&body);
    let _ = kube_sim::protobuf::decode(data);
});
