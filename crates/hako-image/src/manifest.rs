//! The JSON documents of the OCI image spec and Docker's v2 schema 2, as far as hako reads them. Both formats
//! share a shape; the media type tells them apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Media types of foreign (non-distributable) layers: Windows base layers that registries may not serve,
/// fetched (by a Windows host) from the descriptor's `urls`. hako never downloads them.
pub const FOREIGN_LAYERS: [&str; 4] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// What hako sends in `Accept` when it asks for a manifest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                          application/vnd.docker.distribution.manifest.list.v2+json, \
                          application/vnd.docker.distribution.manifest.v2+json";

/// A reference to content: what it is, its digest and its size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// In an index: the platform of the referenced manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where a foreign (non-distributable) layer may be fetched from instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Whether this is a foreign (non-distributable) layer, which hako does not download.
    pub fn is_foreign(&self) -> bool {
        FOREIGN_LAYERS.contains(&self.media_type.as_str())
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Must be 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The platform-specific manifests.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Must be 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image configuration.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

/// The parts of an image configuration hako reads.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// `os`, `architecture`, `variant`, `os.version` and `os.features`, as an index states them.
    #[serde(flatten)]
    pub platform: crate::Platform,
    /// The layers' uncompressed digests.
    #[serde(default)]
    pub rootfs: RootFs,
}

impl ImageConfig {
    /// The image's platform: this config's, completed by what the index said about it (an index's
    /// `os.version` and `os.features` count when the config lacks them).
    pub fn platform_with(&self, from_index: Option<crate::Platform>) -> crate::Platform {
        let index = from_index.unwrap_or_default();
        let config = &self.platform;
        let or = |a: &str, b: String| if a.is_empty() { b } else { a.to_string() };
        crate::Platform {
            os: or(&config.os, index.os),
            architecture: or(&config.architecture, index.architecture),
            variant: config.variant.clone().or(index.variant),
            os_version: config.os_version.clone().or(index.os_version),
            os_features: if config.os_features.is_empty() { index.os_features } else { config.os_features.clone() },
        }
    }
}

/// `rootfs` of an image configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RootFs {
    /// The digest of each layer's uncompressed tar, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// Whether `media_type` (or the document's own `mediaType`) names an index.
pub fn is_index(media_type: &str, body: &serde_json::Value) -> bool {
    let inner = body.get("mediaType").and_then(|v| v.as_str()).unwrap_or("");
    [media_type, inner].iter().any(|t| *t == OCI_INDEX || *t == DOCKER_LIST)
        || (body.get("manifests").is_some() && body.get("layers").is_none())
}
