// Shared driver. Input: a control byte (bit 0: TTY), then chunks, each a header byte (bit 7: the
// direction, set for client to server; bits 0-6: the length) and that many bytes (the last chunk
// may be shorter). So the fuzzer decides both directions' bytes and where each read ends, and the
// seeds are real sessions (`corpus/`). The recorder must never panic, and its memory stays bounded
// by the crate's limits.

use session_recording::{Clock, MemorySink, Protocol, SessionTap, TapOptions};

pub fn drive(protocol: Protocol, data: &[u8]) {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let mut options = TapOptions::new(protocol, control & 1 == 1);
    options.clock = Clock::Fixed(0.0);
    let sink = MemorySink::with_max_lines(10_000);
    let recorder = SessionTap::new(options, event_model::CastHeader::default(), sink);
    while let Some((&head, tail)) = rest.split_first() {
        let len = usize::from(head & 0x7f).min(tail.len());
        let (piece, after) = tail.split_at(len);
        if head & 0x80 != 0 {
            recorder.observe_client_to_server(piece);
        } else {
            recorder.observe_server_to_client(piece);
        }
        rest = after;
    }
    let _ = recorder.status();
    let _ = recorder.termination_frame("fuzz");
    recorder.finish();
}
