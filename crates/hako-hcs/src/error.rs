//! The crate's error type: everything `hcs_doc` and the Windows backend can fail with, each
//! message naming the object, the problem and the fix.

use std::path::PathBuf;

use crate::hresult::HcsCallError;
use crate::oci::BundleError;
use crate::translate::SpecError;

/// An error of the Windows backend or of `hako hcs-doc`.
#[derive(Debug, thiserror::Error)]
pub enum HcsError {
    /// The bundle could not be read.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle breaks a rule of the runtime spec or of HCS.
    #[error("bundle {bundle}: {error}")]
    Spec {
        /// The bundle directory.
        bundle: PathBuf,
        /// The rule broken, with the fix.
        error: Box<SpecError>,
    },
    /// A document could not be turned into JSON (a hako bug).
    #[error("cannot serialize the HCS documents of bundle {bundle}: {source}: report this as a hako bug")]
    Serialize {
        /// The bundle directory.
        bundle: PathBuf,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// An HCS call failed.
    #[error(transparent)]
    Call(Box<HcsCallError>),
    /// A file of hako's state or of the bundle could not be used.
    #[error("{action} {path}: {source}")]
    Io {
        /// What hako was doing ("cannot write state file").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file does not parse.
    #[error(
        "state file {path} is corrupt: {detail}: delete the container with hako delete --force, or remove the file"
    )]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// The container does not exist in hako's state.
    #[error("container {id} does not exist under {root}: check the id with hako list, or the --root")]
    NotFound {
        /// The container id.
        id: String,
        /// The state root.
        root: PathBuf,
    },
    /// The container already exists in hako's state.
    #[error("container {id} already exists under {root}: pick another id or delete it first")]
    AlreadyExists {
        /// The container id.
        id: String,
        /// The state root.
        root: PathBuf,
    },
    /// The container is in the wrong state for the operation.
    #[error("container {id} is {state}, cannot {operation}: {fix}")]
    WrongState {
        /// The container id.
        id: String,
        /// Its state.
        state: String,
        /// What was asked.
        operation: &'static str,
        /// What to do.
        fix: &'static str,
    },
    /// The supervisor of a container could not be reached or refused a request.
    #[error("supervisor of container {id} (pipe {pipe}): {detail}: {fix}")]
    Supervisor {
        /// The container id.
        id: String,
        /// Its pipe.
        pipe: String,
        /// What went wrong.
        detail: String,
        /// What to do.
        fix: &'static str,
    },
    /// Something the backend does not do (yet).
    #[error("{what} is not supported by hako on this host: {fix}")]
    Unsupported {
        /// What was asked.
        what: String,
        /// What to do instead.
        fix: &'static str,
    },
    /// The Host Compute Service (computecore.dll) is not available on this Windows; the message
    /// names the feature to enable.
    #[error("{0}")]
    HcsUnavailable(String),
    /// A Windows API call (not HCS) failed.
    #[error("{call} failed for {object}: {source}")]
    Win32 {
        /// The API call.
        call: &'static str,
        /// What it was about.
        object: String,
        /// The Windows error.
        #[source]
        source: std::io::Error,
    },
}

impl From<HcsCallError> for HcsError {
    fn from(e: HcsCallError) -> Self {
        HcsError::Call(Box::new(e))
    }
}

impl HcsError {
    /// A rule broken by the bundle in `bundle`.
    pub fn spec(bundle: impl Into<PathBuf>, error: SpecError) -> Self {
        HcsError::Spec { bundle: bundle.into(), error: Box::new(error) }
    }
}
