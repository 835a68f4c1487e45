// Shared driver: the first input byte picks TTY and how the rest is split
// between directions and into chunks; the recorder must never panic, and
// its memory stays bounded by the crate's limits.

use session_recording::{Clock, MemorySink, Protocol, TapOptions, SessionTap};

pub fn drive(protocol: Protocol, data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut options = TapOptions::new(protocol, control & 1 == 1);
    options.clock = Clock::Fixed(0.0);
    let sink = MemorySink::with_max_lines(10_000);
    let recorder = SessionTap::new(options, event_model::CastHeader::default(), sink);
    let chunk = usize::from(control >> 2).max(1);
    for (i, piece) in rest.chunks(chunk).enumerate() {
        if (i + usize::from(control >> 1 & 1)) % 3 == 0 {
            recorder.observe_client_to_server(piece);
        } else {
            recorder.observe_server_to_client(piece);
        }
    }
    let _ = recorder.termination_frame("fuzz");
    recorder.finish();
}
