//! hako's Windows backend: containers through the Host Compute Service (computecore.dll).
//!
//! Every host:
//! - [`schema`]: typed HCS schema v2 documents and the schema version rules by host build;
//! - [`oci`]: the parts of an OCI bundle a Windows runtime reads;
//! - [`translate`](mod@translate): bundle to HCS documents for process isolation, Hyper-V isolation and LCOW,
//!   with every rule of the spec enforced; [`hcs_doc`] prints the result (`hako hcs-doc`);
//! - [`compat`], [`osversion`]: which image build runs on which host, and how (re-exported from
//!   `hako-platform`, the compatibility engine the image code shares);
//! - [`hresult`]: HCS error codes and their fixes;
//! - [`state`], [`supervisor`]: the state under `--root` and the supervisor's pipe protocol.
//!
//! Windows only (`cfg(windows)`, type-checked by `scripts/check-windows`): `ffi` (every
//! `unsafe` call), `hcs` (the typed API with HCS's operation model), `host` (build, UBR),
//! `backend` (the container lifecycle the CLI calls) and the supervisor's server.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// Clippy 1.63 (the Windows check) has this lint in `style`; newer clippy moved it to nursery,
// and schema types holding serde_json::Value cannot derive Eq with every serde_json version.
#![allow(clippy::derive_partial_eq_without_eq)]

#[cfg(windows)]
pub mod backend;
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
pub mod schema;
pub mod state;
pub mod supervisor;
pub mod translate;

pub use hako_platform::osversion;
pub use hako_platform::windows as compat;

pub use doc::{hcs_doc, render_text, translate_options, DocFormat, HcsDocOptions, DEFAULT_ASSUMED_HOST_BUILD};
pub use error::HcsError;
pub use translate::{translate, HcsPlan, Isolation, SpecError, TranslateOptions};
