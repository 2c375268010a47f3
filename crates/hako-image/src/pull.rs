//! A pull: resolve the reference to one manifest for the wanted platform, fetch its config and layers
//! (concurrently, resuming partial downloads), verify everything, then record the image.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::platform::{self, Platform};
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions, RegistryError};
use crate::store::{ImageRecord, Store, StoreError};
use crate::{Event, Progress};

/// The default limit on a manifest, index, config or token response (containerd uses the same).
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to select from an index.
    pub platform: Platform,
    /// Speak plain HTTP (default: only to a loopback registry without a CA certificate configured).
    pub plain_http: Option<bool>,
    /// The registry's CA certificates (`*.crt`), instead of `/etc/hako/certs.d/<registry>/` and podman's and
    /// Docker's equivalents ([`crate::registry::CERTS_DIRS`]).
    pub cert_dir: Option<PathBuf>,
    /// Auth files, in order (default: [`crate::auth::auth_files`]).
    pub auth_files: Vec<PathBuf>,
    /// The largest manifest, index or config accepted.
    pub max_document_bytes: u64,
    /// Layers downloaded at once.
    pub jobs: usize,
    /// How often a dropped download is resumed before the pull gives up (the partial file stays for the
    /// next pull).
    pub retries: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            plain_http: None,
            cert_dir: None,
            auth_files: crate::auth::auth_files(),
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            jobs: 4,
            retries: 5,
        }
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No manifest of the index suits the platform.
    #[error("{reference}: {source}")]
    NoMatch {
        /// The image.
        reference: String,
        /// The choice that failed.
        source: platform::NoMatch,
    },
    /// A manifest, index or config is not what the image spec describes.
    #[error("{reference}: {what} is not a valid image document: {why}")]
    BadDocument {
        /// The image.
        reference: String,
        /// Which document.
        what: String,
        /// What is wrong.
        why: String,
    },
}

/// Pulls `reference` into `store` and records it under its normalized name.
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord, PullError> {
    let _lock = store.lock(false)?;
    let client = Client::new(
        reference,
        &ClientOptions {
            plain_http: opts.plain_http,
            cert_dir: opts.cert_dir.clone(),
            auth_files: opts.auth_files.clone(),
            max_document_bytes: opts.max_document_bytes,
        },
    )?;
    let name = reference.to_string();
    let bad = |what: &str, why: String| PullError::BadDocument { reference: name.clone(), what: what.to_string(), why };
    let (mut body, mut media_type, mut digest) = client.manifest(&reference.target())?;
    let mut index_doc = None;
    let mut chosen_platform = None;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad("the manifest", e.to_string()))?;
    if manifest::is_index(&media_type, &value) {
        let index: Index = serde_json::from_value(value).map_err(|e| bad("the index", e.to_string()))?;
        if index.schema_version != 2 {
            return Err(bad("the index", format!("schemaVersion is {}, not 2", index.schema_version)));
        }
        let candidates: Vec<Option<Platform>> = index.manifests.iter().map(|m| m.platform.clone()).collect();
        let i = platform::select(&candidates, &opts.platform)
            .map_err(|source| PullError::NoMatch { reference: name.clone(), source })?;
        let chosen = index.manifests[i].clone();
        chosen_platform = chosen.platform.clone();
        index_doc = Some((body, digest));
        let (b, t, d) = client.manifest(&chosen.digest.to_string())?;
        if b.len() as u64 != chosen.size {
            return Err(bad("the chosen manifest", format!("it is {} bytes, the index says {}", b.len(), chosen.size)));
        }
        (body, media_type, digest) = (b, if t.is_empty() { chosen.media_type } else { t }, d);
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad("the manifest", e.to_string()))?;
    if manifest::is_index(&media_type, &value) {
        return Err(bad("the manifest", "an index names another index as a platform's manifest".into()));
    }
    let man: Manifest = serde_json::from_value(value).map_err(|e| bad("the manifest", e.to_string()))?;
    if man.schema_version != 2 {
        return Err(bad(
            "the manifest",
            format!("schemaVersion is {}, not 2 (schema 1 images are not supported)", man.schema_version),
        ));
    }
    let media_type = man.media_type.clone().filter(|_| media_type.is_empty()).unwrap_or(media_type);
    let config_bytes = if store.has_blob(&man.config.digest, man.config.size) {
        store.read_blob(&man.config.digest)?
    } else {
        client.small_blob(&man.config)?
    };
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| bad("the config", e.to_string()))?;
    if !config.rootfs.diff_ids.is_empty() && config.rootfs.diff_ids.len() != man.layers.len() {
        return Err(bad(
            "the config",
            format!("it lists {} layers, the manifest {}", config.rootfs.diff_ids.len(), man.layers.len()),
        ));
    }
    // Foreign (non-distributable) layers are never downloaded: they are Windows base layers, which this
    // store keeps only as descriptors (hako inspect reports them; unpack refuses the image).
    let distributable: Vec<Descriptor> = man.layers.iter().filter(|l| !l.is_foreign()).cloned().collect();
    fetch_layers(store, &client, &distributable, opts, progress)?;
    store.put_blob(&man.config.digest, &config_bytes)?;
    store.put_blob(&digest, &body)?;
    let index_platform = index_doc.as_ref().and(chosen_platform);
    let index_digest = match index_doc {
        Some((b, d)) => {
            store.put_blob(&d, &b)?;
            Some(d)
        }
        None => None,
    };
    let record = ImageRecord {
        name,
        digest,
        index_digest,
        media_type,
        platform: config.platform_with(index_platform),
        size: man.layers.iter().map(|l| l.size).sum(),
        config: man.config,
        layers: man.layers,
        pulled: crate::store::now(),
    };
    store.put_record(&record)?;
    Ok(record)
}

/// Fetches `layers` with up to `opts.jobs` downloads at once.
fn fetch_layers(
    store: &Store,
    client: &Client,
    layers: &[Descriptor],
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 16).min(layers.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = layers.get(i) else { break };
                    if let Err(e) = fetch_blob(store, client, layer, opts.retries, progress) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Stores one blob: nothing when it is there already, else downloads it (one process at a time per blob,
/// resuming after a dropped connection up to `retries` times).
fn fetch_blob(
    store: &Store,
    client: &Client,
    desc: &Descriptor,
    retries: u32,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let exists = |d: &Digest| Event::Exists { digest: d.clone(), size: desc.size };
    if store.has_blob(&desc.digest, desc.size) {
        progress.event(exists(&desc.digest));
        return Ok(());
    }
    let _lock = store.lock_ingest(&desc.digest)?;
    if store.has_blob(&desc.digest, desc.size) {
        progress.event(exists(&desc.digest));
        return Ok(());
    }
    let partial = store.partial_path(&desc.digest);
    let mut attempt = 0;
    loop {
        match client.download(desc, &partial, progress) {
            Ok(()) => break,
            Err(e) if e.is_transient() && attempt < retries => {
                attempt += 1;
                let offset = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
                progress.event(Event::Retry { digest: desc.digest.clone(), offset, error: e.to_string() });
            }
            Err(e) => {
                // A dropped connection keeps what arrived, for the next pull to resume (`hako image prune`
                // removes it); any other failure (a full disk, a refused request) removes it.
                if !e.is_transient() {
                    let _ = std::fs::remove_file(&partial);
                }
                return Err(e.into());
            }
        }
    }
    if let Err(e) = store.commit_partial(&desc.digest) {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    progress.event(Event::Done { digest: desc.digest.clone() });
    Ok(())
}
