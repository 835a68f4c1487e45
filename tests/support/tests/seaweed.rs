//! The SeaweedFS launcher: a real S3 server whose bucket takes signed
//! writes as soon as `start` returns, listed back through `list`, and
//! refuses a request signed with another secret.
//!
//! Needs the peers (`cargo xtask peers`); without them it fails, naming that command.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use test_support::seaweed::{ACCESS_KEY, REGION};
use test_support::Seaweed;

#[test]
fn seaweedfs_takes_signed_writes_and_refuses_a_wrong_secret() {
    let weed = Seaweed::start("support-test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(weed.bucket(), "support-test");
    assert!(weed.list("").expect("listing").is_empty());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = weed.store().expect("S3 client");
    runtime
        .block_on(store.put(
            &Path::from("events/2026/one.ndjson"),
            PutPayload::from_static(b"{}\n"),
        ))
        .expect("signed put");
    assert_eq!(
        weed.list("events/").expect("listing"),
        ["events/2026/one.ndjson"]
    );

    let forged = AmazonS3Builder::new()
        .with_endpoint(weed.url())
        .with_bucket_name(weed.bucket())
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key("not-the-secret")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("S3 client");
    let refused = runtime.block_on(forged.put(
        &Path::from("events/2026/two.ndjson"),
        PutPayload::from_static(b"{}\n"),
    ));
    let err = refused
        .expect_err("a wrong secret was accepted")
        .to_string();
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
}
