//! Shows what the recorder does with a request path: look the asset up,
//! then send its body with the recommended headers.
//!
//! `cargo run -p kubescribe-recorder-ui --example serve_asset -- /ui/events/e-…-0`

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/ui/events".to_owned());
    match recorder_ui::asset(&path) {
        Some(asset) => {
            println!("200 OK");
            println!("content-type: {}", asset.content_type);
            println!("cache-control: {}", asset.cache_control);
            println!("etag: {}", asset.etag);
            for (name, value) in recorder_ui::SECURITY_HEADERS {
                println!("{name}: {value}");
            }
            println!("\n({} bytes)", asset.body.len());
        }
        None => println!("404 Not Found: {path} is not a UI path"),
    }
    println!(
        "\nA refused reader instead gets {} bytes of HTML with status 403.",
        recorder_ui::refused_page(403, "forbidden: 10.0.0.9:1234 may not read recordings").len()
    );
}
