//! LCOW documents: the hosted container (`{SchemaVersion, OciBundlePath, OciSpecification,
//! ScratchDirPath}`, the OCI spec forwarded to the Linux guest compute service) and the process
//! parameters of a Linux process (`ProcessParameters` plus `OciProcess`).

use serde::{Deserialize, Serialize};

use super::{is_default, ProcessParameters, SchemaVersion};

/// The hosted system document of a Linux container (hcsshim `linuxHostedSystem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LinuxHostedSystem {
    /// 2.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<SchemaVersion>,
    /// The bundle directory inside the guest (`/run/gcs/c/<id>`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub oci_bundle_path: String,
    /// The OCI runtime spec, forwarded with the Windows-only parts removed.
    pub oci_specification: serde_json::Value,
    /// The container's scratch directory inside the guest.
    #[serde(default, skip_serializing_if = "is_default")]
    pub scratch_dir_path: String,
}

/// Process parameters of a process in a Linux container: the Windows parameters (only the
/// stdio pipe flags are used) plus the OCI process forwarded as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LcowProcessParameters {
    /// Stdio flags.
    #[serde(flatten)]
    pub parameters: ProcessParameters,
    /// The OCI `process` object.
    #[serde(rename = "OciProcess", default, skip_serializing_if = "Option::is_none")]
    pub oci_process: Option<serde_json::Value>,
}
