//! An image's platform without pulling it, and the compatibility verdict for it: what `hako compat` and
//! `--isolation auto` ask. The image is found in the store when it is there, else its index, manifest and
//! config are read from the registry (no layer is downloaded). The verdict itself is
//! [`hako_platform::decide`], the engine the Windows backend shares.

use std::path::PathBuf;

use hako_platform::{Date, Decision, Host, ImagePlatform, Policy};
use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::{self, Index, Manifest};
use crate::platform::{self, Platform};
use crate::pull::DEFAULT_MAX_DOCUMENT_BYTES;
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions};
use crate::store::{Store, StoreError};

/// Where the platform of an image was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The local store.
    Store,
    /// The registry (index, manifest and config only).
    Registry,
}

/// An image's platform and where it was found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The normalized reference.
    pub reference: String,
    /// Where the platform was read.
    pub source: Source,
    /// The manifest's digest.
    pub digest: Digest,
    /// The index the manifest was chosen from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    /// The platforms the index offers (empty for a single manifest or an image from the store).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<Platform>,
    /// The chosen image's platform and origin, as the engine takes it.
    pub platform: ImagePlatform,
}

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The platform to select from an index.
    pub platform: Platform,
    /// When no index entry suits `platform`, take the best entry of another OS for `platform`'s
    /// architecture, else the first entry, so the verdict can say which host would run the image (what
    /// `hako compat` does without `--platform`).
    pub any_os: bool,
    /// Speak plain HTTP (default: only to a loopback registry).
    pub plain_http: Option<bool>,
    /// Auth files, in order.
    pub auth_files: Vec<PathBuf>,
    /// The largest manifest, index or config accepted.
    pub max_document_bytes: u64,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            platform: Platform::host(),
            any_os: false,
            plain_http: None,
            auth_files: crate::auth::auth_files(),
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }
}

/// Why an image's platform could not be read: the errors of a pull, whose first steps (reference, registry,
/// index, manifest, config) reading a platform repeats.
pub type ResolveError = crate::pull::PullError;

/// The platform an image config states: `os`, `architecture` (both required), `variant`, `os.version`,
/// `os.features`.
pub fn config_platform(config: &[u8]) -> Result<Platform, String> {
    let value: serde_json::Value = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("it is not a JSON object".to_string());
    }
    let p: Platform = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if p.os.is_empty() || p.architecture.is_empty() {
        return Err("it states no os or architecture, which the image spec requires".to_string());
    }
    Ok(p)
}

fn image_platform(p: &Platform, reference: &Reference) -> ImagePlatform {
    ImagePlatform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
        registry: Some(reference.registry.clone()),
        repository: Some(reference.repository.clone()),
    }
}

/// Reads the platform of `reference`: from `store` when it holds the image (by name or digest), else
/// from the registry: the index (choosing by `opts.platform` with [`platform::select`]), the manifest
/// and the config, never a layer. The index entry's `os.version`/`os.features` win over the config's.
pub fn resolve(store: Option<&Store>, name: &str, opts: &ResolveOptions) -> Result<Resolved, ResolveError> {
    let reference = Reference::parse(name).map_err(|e| ResolveError::BadDocument {
        reference: name.to_string(),
        what: "the reference".to_string(),
        why: e.to_string(),
    })?;
    if let Some(store) = store {
        match store.find(name) {
            Ok(rec) => {
                let bad = |why: String| ResolveError::BadDocument {
                    reference: rec.name.clone(),
                    what: "the stored config".to_string(),
                    why,
                };
                let config = store.read_blob(&rec.config.digest)?;
                let p = config_platform(&config).map_err(bad)?;
                let stored_ref = Reference::parse(&rec.name).unwrap_or(reference);
                return Ok(Resolved {
                    reference: rec.name.clone(),
                    source: Source::Store,
                    digest: rec.digest.clone(),
                    index_digest: rec.index_digest.clone(),
                    offered: Vec::new(),
                    platform: image_platform(&p, &stored_ref),
                });
            }
            Err(StoreError::NoImage(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let client = Client::new(
        &reference,
        &ClientOptions {
            plain_http: opts.plain_http,
            cert_dir: None,
            auth_files: opts.auth_files.clone(),
            max_document_bytes: opts.max_document_bytes,
        },
    )?;
    let name = reference.to_string();
    let bad = |what: &str, why: String| ResolveError::BadDocument { reference: name.clone(), what: what.into(), why };
    let (body, media_type, digest) = client.manifest(&reference.target())?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad("the manifest", e.to_string()))?;
    let (body, digest, index_digest, entry, offered) = if manifest::is_index(&media_type, &value) {
        let index: Index = serde_json::from_value(value).map_err(|e| bad("the index", e.to_string()))?;
        let candidates: Vec<Option<Platform>> = index.manifests.iter().map(|m| m.platform.clone()).collect();
        let i = match platform::select(&candidates, &opts.platform) {
            Ok(i) => i,
            Err(source) if opts.any_os => {
                let mut any = opts.platform.clone();
                let other_os = ["windows", "linux"].iter().find_map(|os| {
                    any.os = os.to_string();
                    any.os_version = None;
                    platform::select(&candidates, &any).ok()
                });
                // Else the first entry of the wanted OS, or of any: its verdict names the mismatch.
                let real = |c: &&Option<Platform>| c.as_ref().is_some_and(|p| p.os != "unknown");
                let first = |os: Option<&str>| {
                    candidates
                        .iter()
                        .position(|c| real(&c) && os.is_none_or(|os| c.as_ref().is_some_and(|p| p.os == os)))
                };
                other_os
                    .or_else(|| first(Some(&opts.platform.os)))
                    .or_else(|| first(None))
                    .ok_or(ResolveError::NoMatch { reference: name.clone(), source })?
            }
            Err(source) => return Err(ResolveError::NoMatch { reference: name.clone(), source }),
        };
        let chosen = index.manifests[i].clone();
        let (b, _, d) = client.manifest(&chosen.digest.to_string())?;
        if b.len() as u64 != chosen.size {
            return Err(bad("the chosen manifest", format!("it is {} bytes, the index says {}", b.len(), chosen.size)));
        }
        let offered = candidates.into_iter().flatten().filter(|c| c.os != "unknown").collect();
        (b, d, Some(digest), chosen.platform, offered)
    } else {
        (body, digest, None, None, Vec::new())
    };
    let man: Manifest = serde_json::from_slice(&body).map_err(|e| bad("the manifest", e.to_string()))?;
    let config = client.small_blob(&man.config)?;
    let mut p = config_platform(&config).map_err(|e| bad("the config", e))?;
    if let Some(e) = entry {
        if e.os_version.is_some() {
            p.os_version = e.os_version;
        }
        if !e.os_features.is_empty() {
            p.os_features = e.os_features;
        }
        if p.variant.is_none() {
            p.variant = e.variant;
        }
    }
    Ok(Resolved {
        reference: name,
        source: Source::Registry,
        digest,
        index_digest,
        offered,
        platform: image_platform(&p, &reference),
    })
}

/// The verdict for the image `name` on `host`: [`resolve`] (store first, then the registry, no layer
/// download), then [`hako_platform::decide`] with `policy` and `today`.
///
/// `hako image run` (`decide_isolation` in the binary's `commands/image_run.rs`) calls this with
/// [`Host::this_linux`], [`Policy::load_default`] and [`Date::today`], runs `decision.auto` (process or vm)
/// when it is `Some` and says which it chose and why (`decision.auto_reasons`), and fails with the reasons
/// of `decision.process` and `decision.vm` when it is `None`; an explicit mode the decision rules out is
/// refused with its reasons; `decision.warnings` are printed either way.
pub fn decide_image(
    store: Option<&Store>,
    name: &str,
    host: &Host,
    policy: &Policy,
    today: Date,
    opts: &ResolveOptions,
) -> Result<(Resolved, Decision), ResolveError> {
    let resolved = resolve(store, name, opts)?;
    let decision = hako_platform::decide(host, &resolved.platform, policy, today);
    Ok((resolved, decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_platform_of_a_windows_config() {
        let p = config_platform(
            br#"{"architecture":"amd64","os":"windows","os.version":"10.0.20348.1487","os.features":["win32k"],"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(p.os_version.as_deref(), Some("10.0.20348.1487"));
        assert_eq!(p.os_features, ["win32k"]);
        assert!(config_platform(b"[]").unwrap_err().contains("not a JSON object"));
        assert!(config_platform(br#"{"os":"linux"}"#).unwrap_err().contains("no os or architecture"));
    }
}
