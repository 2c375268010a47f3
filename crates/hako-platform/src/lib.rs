//! hako's one platform compatibility engine, shared by the Windows backend (`hako-hcs`) and the image code
//! (`hako-image`, `hako compat`, `--isolation auto`): given a host and an image's platform, can process
//! isolation run the image, can VM isolation, which does `auto` choose, and why.
//!
//! - [`osversion`]: Windows version numbers and the build constants;
//! - [`windows`]: the Windows version rules (LTSC portability, Annual Channel, Windows 11's exceptions,
//!   ltsc2016 revisions, old clients);
//! - [`arch`]: architectures and variants;
//! - [`table`]: the data tables (Windows releases and lifecycle, base images with win32k and sizes),
//!   versioned JSON files under `data/` that cite their sources;
//! - [`policy`]: the isolation policy of `/etc/hako/config.json` (trusted registries);
//! - [`date`]: dates for the lifecycle checks;
//! - [`decide`](fn@decide): the verdict for one host and one image.
//!
//! Builds with rustc 1.63 (the Windows backend's check, `scripts/check-windows`).

#![warn(missing_docs)]
// Clippy 1.63 (the Windows check) has this lint in `style`; newer clippy moved it to nursery.
#![allow(clippy::derive_partial_eq_without_eq)]

pub mod arch;
pub mod date;
mod decide;
pub mod osversion;
pub mod policy;
pub mod table;
pub mod windows;

pub use date::Date;
pub use decide::{decide, Decision, Edition, Host, ImagePlatform, Isolation, Mode, Reason, ReleaseInfo};
pub use osversion::OsVersion;
pub use policy::{Policy, PolicyError, Trust, Untrusted};
