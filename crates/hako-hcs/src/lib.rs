//! hako's Windows backend.
//!
//! - [`schema`]: typed HCS schema v2 documents (every host).
//!
//! Everything except `ffi` and the backend builds and is tested on every host; the Windows
//! parts are behind `cfg(windows)` and type-checked by `scripts/check-windows`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(windows)]
pub mod backend;
pub mod compat;
mod doc;
mod error;
#[cfg(windows)]
mod ffi;
#[cfg(windows)]
pub mod hcs;
#[cfg(windows)]
pub mod host;
pub mod hresult;
pub mod oci;
pub mod osversion;
pub mod schema;
pub mod state;
pub mod supervisor;
pub mod translate;

pub use doc::{
    hcs_doc, render_text, translate_options, DocFormat, HcsDocOptions, DEFAULT_ASSUMED_HOST_BUILD,
};
pub use error::HcsError;
pub use translate::{translate, HcsPlan, Isolation, SpecError, TranslateOptions};
