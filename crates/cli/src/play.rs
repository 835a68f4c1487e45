//! A cast (asciicast v2: a header line, then `[time, code, data]` lines) played to a terminal with
//! its timing, as `asciinema play` does: output events are written when their time comes (scaled
//! by the speed, long pauses cut to the idle limit); input, resize and marker events are skipped.
//! The cast is read as it arrives, so a long recording starts at once and memory stays bounded.

use std::io::Write;
use std::time::Duration;

use event_model::{CastEvent, CastEventCode};
use serde_json::Value;

use crate::error::CliError;

/// A line longer than this is refused: no cast line of a real session comes near it.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How to play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// Playback speed: 2.0 plays twice as fast.
    pub speed: f64,
    /// Pauses longer than this many seconds are cut to it (default: the cast header's
    /// `idle_time_limit`, if any).
    pub idle_limit: Option<f64>,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            idle_limit: None,
        }
    }
}

/// What was played.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Played {
    /// Output events written.
    pub outputs: u64,
    /// The recording's own length in seconds (its last event's time).
    pub recorded_secs: f64,
    /// The playing time it was given (after speed and idle limit).
    pub played_secs: f64,
}

/// Chunks of a cast as they arrive, or the error that ended them.
type Chunks<'a> = futures_util::stream::BoxStream<'a, Result<Vec<u8>, String>>;

/// Plays the cast arriving as `chunks` to `out`.
pub async fn play_cast(
    chunks: impl futures_util::Stream<Item = Result<Vec<u8>, String>> + Send,
    out: &mut impl Write,
    options: PlayOptions,
) -> Result<Played, CliError> {
    use futures_util::StreamExt;
    if !(options.speed.is_finite() && options.speed > 0.0) {
        return Err(CliError::Usage {
            flag: "--speed",
            reason: format!("{} is not a positive number", options.speed),
        });
    }
    let mut chunks: Chunks<'_> = Box::pin(chunks);
    let mut player = Player::new(options);
    let mut pending: Vec<u8> = Vec::new();
    let mut line_no = 0usize;
    loop {
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            line_no += 1;
            player.line(&line[..line.len() - 1], line_no, out).await?;
        }
        if pending.len() > MAX_LINE_BYTES {
            return Err(CliError::Protocol(format!(
                "cast line {} is longer than {MAX_LINE_BYTES} bytes",
                line_no + 1
            )));
        }
        match chunks.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(CliError::Protocol(format!(
                    "the cast broke off after line {line_no}: {e}"
                )))
            }
            None => break,
        }
    }
    if !pending.is_empty() {
        line_no += 1;
        player.line(&pending, line_no, out).await?;
    }
    if line_no == 0 {
        return Err(CliError::Protocol("the cast is empty".to_owned()));
    }
    Ok(player.played)
}

struct Player {
    options: PlayOptions,
    idle_limit: Option<f64>,
    started: Option<tokio::time::Instant>,
    /// The recording's time of the previous event.
    last_time: f64,
    /// Playing time so far, before speed (pauses cut to the idle limit).
    virtual_secs: f64,
    played: Played,
}

impl Player {
    fn new(options: PlayOptions) -> Self {
        Self {
            options,
            idle_limit: options.idle_limit,
            started: None,
            last_time: 0.0,
            virtual_secs: 0.0,
            played: Played::default(),
        }
    }

    async fn line(
        &mut self,
        line: &[u8],
        line_no: usize,
        out: &mut impl Write,
    ) -> Result<(), CliError> {
        let bad = |what: String| CliError::Protocol(format!("cast line {line_no}: {what}"));
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if line_no == 1 {
            let header: Value =
                serde_json::from_slice(line).map_err(|e| bad(format!("not a cast header: {e}")))?;
            if header["version"] != 2 {
                return Err(bad("not an asciicast v2 header".to_owned()));
            }
            if self.idle_limit.is_none() {
                self.idle_limit = header["idle_time_limit"].as_f64().filter(|l| *l > 0.0);
            }
            self.started = Some(tokio::time::Instant::now());
            return Ok(());
        }
        let event: CastEvent =
            serde_json::from_slice(line).map_err(|e| bad(format!("not a cast event: {e}")))?;
        if !event.time.is_finite() || event.time < 0.0 {
            return Err(bad(format!("time {} is not a time", event.time)));
        }
        let gap = (event.time - self.last_time).max(0.0);
        self.virtual_secs += self.idle_limit.map_or(gap, |limit| gap.min(limit));
        self.last_time = self.last_time.max(event.time);
        self.played.recorded_secs = self.last_time;
        self.played.played_secs = self.virtual_secs / self.options.speed;
        if event.code != CastEventCode::Output {
            return Ok(());
        }
        let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
        let due = started + Duration::from_secs_f64(self.played.played_secs.min(1e9));
        tokio::time::sleep_until(due).await;
        out.write_all(event.data.as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::Output)?;
        self.played.outputs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use proptest::prelude::*;

    use super::*;

    const CAST: &str = "{\"version\":2,\"width\":80,\"height\":24}\n\
        [0.5,\"o\",\"$ ls\\r\\n\"]\n\
        [0.6,\"i\",\"secret typed\"]\n\
        [1.0,\"r\",\"100x30\"]\n\
        [10.5,\"o\",\"a  b\\r\\n\"]\n";

    fn chunked(text: &str, size: usize) -> Vec<Result<Vec<u8>, String>> {
        text.as_bytes()
            .chunks(size)
            .map(|c| Ok(c.to_vec()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn output_is_written_in_time_and_input_is_not() {
        let mut out = Vec::new();
        let started = tokio::time::Instant::now();
        let played = play_cast(
            stream::iter(chunked(CAST, 7)),
            &mut out,
            PlayOptions::default(),
        )
        .await
        .expect("played");
        assert_eq!(String::from_utf8_lossy(&out), "$ ls\r\na  b\r\n");
        assert_eq!(played.outputs, 2);
        assert!((played.played_secs - 10.5).abs() < 1e-9);
        assert!(started.elapsed() >= Duration::from_millis(10_500));
    }

    #[tokio::test(start_paused = true)]
    async fn speed_and_idle_limit_shorten_the_playing_time() {
        let mut out = Vec::new();
        let options = PlayOptions {
            speed: 2.0,
            idle_limit: Some(1.0),
        };
        let played = play_cast(stream::iter(chunked(CAST, 64)), &mut out, options)
            .await
            .expect("played");
        // 0.5 s to the first output, then pauses of 0.1, 0.4 and 9.5 (cut to 1.0): 2.0 s, halved.
        assert!((played.played_secs - 1.0).abs() < 1e-9, "{played:?}");
        assert!((played.recorded_secs - 10.5).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_casts_are_refused_with_the_line() {
        for (cast, needle) in [
            ("", "empty"),
            ("{\"version\":1}\n", "line 1"),
            ("{\"version\":2}\n[1,\"o\"]\n", "line 2"),
            ("{\"version\":2}\n[-1,\"o\",\"x\"]\n", "line 2"),
            ("not json\n", "line 1"),
        ] {
            let mut out = Vec::new();
            let err = play_cast(
                stream::iter(chunked(cast, 3)),
                &mut out,
                PlayOptions::default(),
            )
            .await
            .expect_err(cast);
            assert!(err.to_string().contains(needle), "{cast:?}: {err}");
        }
        let mut out = Vec::new();
        let broken = vec![Ok(b"{\"version\":2}\n".to_vec()), Err("reset".to_owned())];
        let err = play_cast(stream::iter(broken), &mut out, PlayOptions::default())
            .await
            .expect_err("broken");
        assert!(err.to_string().contains("broke off after line 1"), "{err}");
    }

    proptest! {
        /// Any bytes, in any chunks: an answer (played or a clear error), never a panic.
        #[test]
        fn any_input_ends_in_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..512), size in 1usize..64) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            let chunks: Vec<Result<Vec<u8>, String>> =
                bytes.chunks(size).map(|c| Ok(c.to_vec())).collect();
            let mut out = Vec::new();
            let _ = runtime.block_on(play_cast(stream::iter(chunks), &mut out, PlayOptions {
                speed: 1000.0,
                idle_limit: Some(0.01),
            }));
        }
    }
}
