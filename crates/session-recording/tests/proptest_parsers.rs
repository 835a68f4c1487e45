//! Property tests for both parsers: garbage never panics; valid sessions
//! record identically however the bytes are chunked; the recorded text is
//! exactly the output bytes, decoded as Go would decode them whole.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use session_recording::spdy::frame::{encode_data_frame, FLAG_FIN};
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::Protocol;

#[derive(Debug, Clone)]
enum Item {
    /// Output on channel 1 or 2, optionally fragmented (WS) at these points.
    Out {
        channel: u8,
        data: Vec<u8>,
        cuts: Vec<usize>,
    },
    Stdin(Vec<u8>),
    Resize(u16, u16),
    Ping,
}

fn item() -> impl Strategy<Value = Item> {
    let data = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[a-zé€𝄞\\n<&]{0,12}".prop_map(String::into_bytes),
    ];
    prop_oneof![
        4 => (1u8..=2, data, proptest::collection::vec(0usize..40, 0..3))
            .prop_map(|(channel, data, cuts)| Item::Out { channel, data, cuts }),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Item::Stdin),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(w, h)| Item::Resize(w, h)),
        1 => Just(Item::Ping),
    ]
}

fn ws_events(items: &[Item]) -> Vec<Ev> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Out {
                channel,
                data,
                cuts,
            } => {
                let mut payload = vec![*channel];
                payload.extend_from_slice(data);
                // Fragment boundaries strictly inside the payload (0 gives an
                // empty first fragment), then the final fragment.
                let mut cuts: Vec<usize> = cuts
                    .iter()
                    .copied()
                    .filter(|c| *c < payload.len())
                    .collect();
                cuts.sort_unstable();
                cuts.dedup();
                let mut frames = Vec::new();
                let mut last = 0;
                for cut in cuts.into_iter().chain([payload.len()]) {
                    let first = frames.is_empty();
                    let fin = cut == payload.len();
                    let opcode = if first {
                        Opcode::Binary
                    } else {
                        Opcode::Continuation
                    };
                    frames.extend(encode_frame(fin, opcode, None, &payload[last..cut]));
                    last = cut;
                }
                out.push(Ev::S(frames));
            }
            Item::Stdin(data) => out.push(Ev::C(ws_c(0, data))),
            Item::Resize(w, h) => {
                out.push(Ev::C(ws_c(4, &resize_json(u32::from(*w), u32::from(*h)))))
            }
            Item::Ping => out.push(Ev::S(encode_frame(true, Opcode::Ping, None, b"p"))),
        }
    }
    out
}

fn spdy_events(items: &[Item]) -> Vec<Ev> {
    let mut client = SpdyClient::new();
    let mut out = vec![Ev::C(client.open_session(&KUBECTL_IDS, false))];
    out.push(Ev::C(client.syn_stream(KUBECTL_IDS.resize, "resize")));
    for item in items {
        match item {
            Item::Out { channel, data, .. } => {
                let id = if *channel == 1 {
                    KUBECTL_IDS.stdout
                } else {
                    KUBECTL_IDS.stderr
                };
                out.push(Ev::S(spdy_data(id, data)));
            }
            Item::Stdin(data) => out.push(Ev::C(spdy_data(KUBECTL_IDS.stdin, data))),
            Item::Resize(w, h) => out.push(Ev::C(spdy_data(
                KUBECTL_IDS.resize,
                &resize_json(u32::from(*w), u32::from(*h)),
            ))),
            Item::Ping => out.push(Ev::S(spdy_ping(2))),
        }
    }
    out.push(Ev::C(encode_data_frame(KUBECTL_IDS.stdin, FLAG_FIN, b"")));
    out
}

/// Cuts every event at the given fractions of its length.
fn chunked(cuts: &[Vec<f64>]) -> impl FnMut(usize, &[u8]) -> Vec<Vec<u8>> + '_ {
    move |i, bytes| {
        let mut points: Vec<usize> = cuts
            .get(i)
            .map(|c| {
                c.iter()
                    .map(|f| (f * bytes.len() as f64) as usize)
                    .collect()
            })
            .unwrap_or_default();
        points.sort_unstable();
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            out.push(bytes[last..p.max(last)].to_vec());
            last = p.max(last);
        }
        out
    }
}

/// Go's whole-buffer decoding: one U+FFFD per invalid byte.
fn go_lossy(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match std::str::from_utf8(&bytes[pos..]) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                out.push_str(std::str::from_utf8(&bytes[pos..pos + e.valid_up_to()]).unwrap());
                pos += e.valid_up_to();
                let n = e.error_len().unwrap_or(bytes.len() - pos);
                out.extend(std::iter::repeat_n('\u{FFFD}', n));
                pos += n;
            }
        }
    }
    out
}

fn output_text(lines: &[String]) -> String {
    body(lines)
        .iter()
        .filter_map(|l| {
            let (_, code, data): (f64, String, String) = serde_json::from_str(l).unwrap();
            (code == "o").then_some(data)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ws_any_chunking_records_the_same(items in proptest::collection::vec(item(), 0..12),
                                        tty in any::<bool>(),
                                        cuts in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 0..4), 12)) {
        let events = ws_events(&items);
        let (whole, status) = record(Protocol::WebSocket, tty, &events);
        prop_assert!(status.failure().is_none());
        let (split, _) = record_with(Protocol::WebSocket, tty, &events, chunked(&cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn spdy_any_chunking_records_the_same(items in proptest::collection::vec(item(), 0..12),
                                          tty in any::<bool>(),
                                          cuts in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 0..4), 16)) {
        let events = spdy_events(&items);
        let (whole, status) = record(Protocol::Spdy, tty, &events);
        prop_assert!(status.failure().is_none());
        let (split, _) = record_with(Protocol::Spdy, tty, &events, chunked(&cuts));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn recorded_text_is_the_stdout_bytes_decoded_whole(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..10),
        protocol in prop_oneof![Just(Protocol::WebSocket), Just(Protocol::Spdy)]) {
        let items: Vec<Item> = chunks.iter().map(|d| Item::Out { channel: 1, data: d.clone(), cuts: vec![] }).collect();
        let events = match protocol { Protocol::WebSocket => ws_events(&items), Protocol::Spdy => spdy_events(&items) };
        let (lines, _) = record(protocol, false, &events);
        let all: Vec<u8> = chunks.concat();
        prop_assert_eq!(output_text(&lines), go_lossy(&all));
    }

    #[test]
    fn garbage_never_panics(c2s in proptest::collection::vec(any::<u8>(), 0..600),
                            s2c in proptest::collection::vec(any::<u8>(), 0..600),
                            tty in any::<bool>(),
                            spdy in any::<bool>(),
                            cuts in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 0..4), 2)) {
        let protocol = if spdy { Protocol::Spdy } else { Protocol::WebSocket };
        let _ = record_with(protocol, tty, &[Ev::C(c2s), Ev::S(s2c)], chunked(&cuts));
    }

    #[test]
    fn valid_prefix_then_garbage_never_panics(items in proptest::collection::vec(item(), 0..6),
                                              junk in proptest::collection::vec(any::<u8>(), 0..300),
                                              spdy in any::<bool>()) {
        let (protocol, mut events) = if spdy {
            (Protocol::Spdy, spdy_events(&items))
        } else {
            (Protocol::WebSocket, ws_events(&items))
        };
        events.push(Ev::S(junk.clone()));
        events.push(Ev::C(junk));
        let _ = record(protocol, true, &events);
    }
}
