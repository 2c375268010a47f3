//! hako's images: a client of the OCI Distribution API ([`registry`]), credentials ([`auth`]), platform
//! selection ([`platform`]), the platform of an image without pulling it and its compatibility verdict
//! ([`compat`]), the refusal of other OSes' images ([`foreign`]), a content-addressed store ([`store`]),
//! pulling ([`pull`]), loading an OCI layout archive ([`load`]), unpacking layers into a root filesystem
//! ([`unpack`]), layer snapshots and the overlayfs root filesystems of containers ([`snapshot`]) and what a
//! container of an image runs ([`bundle`]). See docs/images.md, docs/image-run.md and docs/compat.md.

pub mod auth;
pub mod bundle;
pub mod compat;
pub mod digest;
pub mod foreign;
pub mod load;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use platform::Platform;
pub use pull::{pull, PullError, PullOptions};
pub use reference::Reference;
pub use store::{ImageRecord, Store, StoreError};

/// What a pull reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A download starts (at `offset` when it resumes a partial file).
    Start {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Bytes already held.
        offset: u64,
    },
    /// Bytes arrived.
    Bytes {
        /// The blob.
        digest: Digest,
        /// How many.
        bytes: u64,
    },
    /// A blob is stored and verified.
    Done {
        /// The blob.
        digest: Digest,
    },
    /// A blob was in the store already.
    Exists {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A download dropped and resumes.
    Retry {
        /// The blob.
        digest: Digest,
        /// Where it resumes.
        offset: u64,
        /// Why it dropped.
        error: String,
    },
}

/// Receives a pull's [`Event`]s (from several threads).
pub trait Progress: Sync {
    /// One event.
    fn event(&self, event: Event);
}

/// A [`Progress`] that ignores everything.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: Event) {}
}
