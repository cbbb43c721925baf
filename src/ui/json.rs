//! The JSON renderer (`--output json`): one JSON object per event per line, flushed at once,
//! so CI tools can stream it. The last line is the `finished` event with the outcome and
//! durations.
//!
//! Depends on: deploy::event, serde_json. Must not: decide anything.

use std::io::Write;

use crate::deploy::event::{Event, Reporter};

/// Renders events as JSON lines to `W`.
pub struct JsonReporter<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonReporter<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        JsonReporter { out }
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn report(&mut self, event: Event) {
        // Events are plain data: serialization cannot fail; a closed pipe must not abort the deploy.
        if serde_json::to_writer(&mut self.out, &event).is_ok() {
            let _ignored = self.out.write_all(b"\n");
        }
        let _flushed = self.out.flush();
    }
}
