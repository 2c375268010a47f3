//! The result document HCS returns with an operation's HRESULT: `{Error, ErrorMessage,
//! ErrorEvents[]}` (hcsshim `internal/hcs/errors.go` `hcsResult`).

use serde::{Deserialize, Serialize};

use super::is_default;

/// The JSON result of a failed operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResultDocument {
    /// The HRESULT, as a signed 32-bit number.
    pub error: i32,
    /// HCS's message.
    #[serde(skip_serializing_if = "is_default")]
    pub error_message: String,
    /// The events HCS recorded on the way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_events: Vec<ErrorEvent>,
}

/// One event of a result document.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorEvent {
    /// The formatted message.
    #[serde(skip_serializing_if = "is_default")]
    pub message: String,
    /// Stack trace.
    #[serde(skip_serializing_if = "is_default")]
    pub stack_trace: String,
    /// Event provider.
    #[serde(skip_serializing_if = "is_default")]
    pub provider: String,
    /// Event id.
    #[serde(skip_serializing_if = "is_default")]
    pub event_id: u32,
    /// Flags.
    #[serde(skip_serializing_if = "is_default")]
    pub flags: u32,
    /// Source.
    #[serde(skip_serializing_if = "is_default")]
    pub source: String,
}

impl ResultDocument {
    /// Parses a result document; `None` for an empty or unparsable one (HCS sometimes returns
    /// plain text, which is then kept by the caller as is).
    pub fn parse(text: &str) -> Option<ResultDocument> {
        if text.trim().is_empty() {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// The messages of the error events, one line each.
    pub fn event_messages(&self) -> Vec<String> {
        self.error_events.iter().filter(|e| !e.message.is_empty()).map(|e| e.message.trim().to_string()).collect()
    }
}
