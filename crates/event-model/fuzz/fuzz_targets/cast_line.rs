//! Cast lines of any content, as a recorder receives a session: the header and event lines parse
//! or fail without panicking, what parses writes back and reads back unchanged, and resize data
//! that parses formats back to the same size in either order.
#![no_main]

use event_model::{to_go_json, CastEvent, CastEventCode, CastHeader, ResizeOrder, TerminalSize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(header) = serde_json::from_slice::<CastHeader>(line) {
            let _ = header.resize_order();
            let wire = to_go_json(&header).expect("a parsed header serialises");
            let again: CastHeader =
                serde_json::from_slice(&wire).expect("a written header reads back");
            assert_eq!(to_go_json(&again).expect("serialises"), wire);
        }
        if let Ok(event) = serde_json::from_slice::<CastEvent>(line) {
            let wire = event.to_line();
            let again: CastEvent =
                serde_json::from_slice(&wire).expect("a written line reads back");
            assert_eq!(again.code, event.code);
            assert_eq!(again.data, event.data);
            assert_eq!(again.time.to_bits(), event.time.to_bits());
            if event.code == CastEventCode::Resize {
                for order in [ResizeOrder::HeightFirst, ResizeOrder::WidthFirst] {
                    if let Ok(size) = TerminalSize::from_resize_data(&event.data, order) {
                        let text = size.to_resize_data(order);
                        assert_eq!(TerminalSize::from_resize_data(&text, order), Ok(size));
                    }
                }
            }
        }
    }
});
