//! `kubescribe-recorder`: the recorder binary.
fn main() {
    eprintln!("kubescribe-recorder: not built yet");
    std::process::exit(2);
}
