//! The agent's log: its own warnings and the `tracing` events of the hako crates it runs (hako-linux,
//! hako-cgroups) go to stderr (the guest console) and into a queue that the serve loop sends to the host as
//! [`hako_proto::Event::Log`] frames.

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{span, Level, Metadata, Subscriber};

static QUEUE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records one line: on stderr now, to the host at the next turn of the serve loop.
pub(crate) fn log(msg: impl Into<String>) {
    let msg = msg.into();
    eprintln!("hako-agent: {msg}");
    QUEUE.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
}

/// Takes every queued line.
pub(crate) fn take() -> Vec<String> {
    std::mem::take(&mut *QUEUE.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Installs the forwarding subscriber for `tracing` events (info and above).
pub(crate) fn install() {
    let _ = tracing::subscriber::set_global_default(Forward);
}

struct Forward;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        log(format!("{}: {}", event.metadata().level().as_str().to_lowercase(), fields.0));
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_events_reach_the_queue() {
        let dispatch = tracing::Dispatch::new(Forward);
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::warn!("cleanup of {} failed", "c1");
            tracing::debug!("not forwarded");
        });
        let lines = take();
        assert!(lines.iter().any(|l| l == "warn: cleanup of c1 failed"), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("not forwarded")), "{lines:?}");
    }
}
