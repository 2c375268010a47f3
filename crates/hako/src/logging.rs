//! hako's log: text lines on stderr, or JSON lines `{"level","msg","time"}` in `--log` as runc writes them
//! (containerd shows the last line's `msg` when a command fails).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

struct Sink {
    file: Option<Mutex<File>>,
    format: LogFormat,
}

impl Sink {
    fn write(&self, level: Level, msg: &str) {
        let line = match self.format {
            LogFormat::Json => {
                let level = level.as_str().to_ascii_lowercase();
                let time = hako_runtime::state::now_rfc3339();
                format!("{}\n", serde_json::json!({ "level": level, "msg": msg, "time": time }))
            }
            LogFormat::Text => format!("hako: {}{msg}\n", if level == Level::ERROR { "" } else { level_prefix(level) }),
        };
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

fn level_prefix(level: Level) -> &'static str {
    match level {
        Level::WARN => "warning: ",
        Level::INFO => "",
        _ => "debug: ",
    }
}

struct SinkLayer(Sink);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0.write(*event.metadata().level(), &m.0);
    }
}

/// Installs the logger; returns an error text if the log file cannot be opened.
pub(crate) fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> Result<(), String> {
    let file = match log {
        Some(p) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let max =
        if debug { tracing::level_filters::LevelFilter::DEBUG } else { tracing::level_filters::LevelFilter::WARN };
    let layer = SinkLayer(Sink { file, format }).with_filter(max);
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}

/// Reports a failed command: to the log (as JSON when asked) and, when the log is a file, also on stderr.
pub(crate) fn report_error(msg: &str, log_to_file: bool) {
    tracing::error!("{msg}");
    if log_to_file {
        eprintln!("hako: {msg}");
    }
}
