//! The content-addressed store.
//!
//! ```text
//! <root>/                    0700, default /var/lib/hako/images
//!   lock                     flock: shared while a pull runs, exclusive while rm/prune collect garbage
//!   blobs/sha256/<hex>       0600, verified content (layers, configs, manifests, indexes), each stored once
//!   ingest/<hex>.partial     a download in progress or interrupted: the next pull resumes it
//!   ingest/<hex>.lock        flock: one downloader per blob, so concurrent pulls store it once
//!   images/<sha256(name)>.json  one record per image name, written last by a pull
//!   snapshots/<hex>/         layer <hex> unpacked alone, an overlayfs lower layer (see [`crate::snapshot`])
//!   containers/<id>/         bundles of `hako image run`, each with the lease of the snapshots it uses
//! ```
//!
//! Every file is written to a temporary name, fsynced and renamed into place (then the directory is
//! fsynced), so a reader sees a whole file or none; a record is written only after every blob it names is in
//! `blobs/`, so a failed pull never leaves a half-written image. Files are 0600 in 0700 directories: images
//! may be private (pulled with credentials) and only root's hako reads them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::platform::Platform;

/// The store's default directory.
pub const DEFAULT_ROOT: &str = "/var/lib/hako/images";

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store failed.
    #[error("image store {path}: {source}{}", io_hint(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// No image has that name.
    #[error("no image {0} in the store (see `hako image ls`, or pull it with `hako image pull {0}`)")]
    NoImage(String),
    /// A record cannot be read.
    #[error("image record {path} is damaged: {why} (remove it, then `hako image prune`)")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A blob an image names is missing.
    #[error("image {image}: blob {digest} is missing from the store (pull the image again)")]
    MissingBlob {
        /// The image.
        image: String,
        /// The blob.
        digest: Digest,
    },
}

/// The fix for an I/O error of the store, when there is an obvious one.
pub(crate) fn io_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            " (the image store's file system is full: free space, run `hako image prune`, or choose another store with --store or HAKO_IMAGE_STORE); nothing was recorded"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            " (the image store belongs to root: run hako as root, or choose another store with --store or HAKO_IMAGE_STORE)"
        }
        _ => "",
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// What a pull records about an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized reference it was pulled as.
    pub name: String,
    /// The digest of its manifest (the image's id).
    pub digest: Digest,
    /// The digest of the index it was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    /// The manifest's media type.
    pub media_type: String,
    /// Its platform.
    pub platform: Platform,
    /// Its configuration blob.
    pub config: Descriptor,
    /// Its layers, base first.
    pub layers: Vec<Descriptor>,
    /// The sum of the layers' (compressed) sizes.
    pub size: u64,
    /// When it was pulled (seconds since the epoch).
    pub pulled: u64,
}

impl ImageRecord {
    /// Every blob the image references (foreign layers included, although the store never holds them).
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.digest.clone(), self.config.digest.clone()];
        v.extend(self.index_digest.clone());
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Bytes freed (blobs and partial downloads).
    pub bytes: u64,
    /// Layer snapshots removed (no image names their layer and no container uses them).
    pub snapshots: Vec<Digest>,
}

/// A held flock; released when dropped.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// The store at one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn mkdir_private(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_at(path))
}

/// Writes `data` to `path` through a temporary file in `tmp_dir`, fsync and rename.
pub(crate) fn write_atomic(tmp_dir: &Path, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = tmp_dir.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io_at(&tmp))?;
        f.write_all(data).map_err(io_at(&tmp))?;
        f.sync_all().map_err(io_at(&tmp))?;
        fs::rename(&tmp, path).map_err(io_at(path))?;
        sync_dir(path.parent().unwrap_or(Path::new("/")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 48)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

impl Store {
    /// Opens the store at `root`, creating its directories (0700).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["blobs/sha256", "ingest", "images"] {
            mkdir_private(&root.join(sub))?;
        }
        Ok(Store { root: root.to_path_buf() })
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn flock(path: &Path, op: FlockOperation) -> Result<Lock, StoreError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(io_at(path))?;
        rustix::fs::flock(&f, op).map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e.into() })?;
        Ok(Lock(f))
    }

    /// The store-wide lock: shared for pulls, exclusive for garbage collection.
    pub fn lock(&self, exclusive: bool) -> Result<Lock, StoreError> {
        let op = if exclusive { FlockOperation::LockExclusive } else { FlockOperation::LockShared };
        Store::flock(&self.root.join("lock"), op)
    }

    /// The lock that makes one process the downloader of `digest`.
    pub fn lock_ingest(&self, digest: &Digest) -> Result<Lock, StoreError> {
        Store::flock(&self.root.join("ingest").join(format!("{}.lock", digest.hex())), FlockOperation::LockExclusive)
    }

    /// Where a download of `digest` collects.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("ingest").join(format!("{}.partial", digest.hex()))
    }

    /// Where the verified blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is stored with the size `size`.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Stores `data`, whose digest is `digest` (checked by the caller).
    pub fn put_blob(&self, digest: &Digest, data: &[u8]) -> Result<(), StoreError> {
        if self.has_blob(digest, data.len() as u64) {
            return Ok(());
        }
        write_atomic(&self.root.join("ingest"), &self.blob_path(digest), data)
    }

    /// Moves a verified, fsynced partial download into place.
    pub fn commit_partial(&self, digest: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        fs::rename(self.partial_path(digest), &dest).map_err(io_at(&dest))?;
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// Reads a whole blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(digest);
        fs::read(&p).map_err(io_at(&p))
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(io_at(&p))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("images").join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// Writes (or replaces) an image's record. Every blob it names must be stored already.
    pub fn put_record(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let foreign: Vec<&Digest> = record.layers.iter().filter(|l| l.is_foreign()).map(|l| &l.digest).collect();
        for d in record.blobs() {
            if !foreign.contains(&&d) && !self.blob_path(&d).is_file() {
                return Err(StoreError::MissingBlob { image: record.name.clone(), digest: d });
            }
        }
        let data = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::BadRecord { path: self.record_path(&record.name), why: e.to_string() })?;
        write_atomic(&self.root.join("images"), &self.record_path(&record.name), &data)
    }

    /// Every image record, sorted by name.
    pub fn records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let e = e.map_err(io_at(&dir))?;
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let data = fs::read(&path).map_err(io_at(&path))?;
            let rec: ImageRecord = serde_json::from_slice(&data)
                .map_err(|e| StoreError::BadRecord { path: path.clone(), why: e.to_string() })?;
            out.push(rec);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The image named `name` (a normalized reference), or whose digest is `name` or starts with it (at
    /// least 12 hex digits).
    pub fn find(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let normalized = crate::reference::Reference::parse(name).map(|r| r.to_string());
        let p = self.record_path(normalized.as_deref().unwrap_or(name));
        if p.exists() {
            let data = fs::read(&p).map_err(io_at(&p))?;
            return serde_json::from_slice(&data).map_err(|e| StoreError::BadRecord { path: p, why: e.to_string() });
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<ImageRecord> =
                self.records()?.into_iter().filter(|r| r.digest.hex().starts_with(hex)).collect();
            if hits.len() == 1 {
                return Ok(hits.into_iter().next().expect("one"));
            }
        }
        Err(StoreError::NoImage(name.to_string()))
    }

    /// Removes the record of `name` (blobs stay until [`Store::gc`]).
    pub fn remove(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let rec = self.find(name)?;
        let p = self.record_path(&rec.name);
        fs::remove_file(&p).map_err(io_at(&p))?;
        sync_dir(&self.root.join("images"))?;
        Ok(rec)
    }

    /// Removes every blob no record references, every partial download, and every layer snapshot that no
    /// record and no container's lease names ([`crate::snapshot`]). Takes the exclusive lock, so it
    /// waits for running pulls and they wait for it.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.lock(true)?;
        let keep: std::collections::BTreeSet<Digest> = self.records()?.iter().flat_map(|r| r.blobs()).collect();
        let mut report = GcReport::default();
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io_at(&blobs))? {
            let e = e.map_err(io_at(&blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = Digest::parse(&format!("sha256:{name}")).ok();
            if digest.as_ref().is_some_and(|d| keep.contains(d)) {
                continue;
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).map_err(io_at(&e.path()))?;
            report.bytes += len;
            report.blobs.extend(digest);
        }
        let ingest = self.root.join("ingest");
        for e in fs::read_dir(&ingest).map_err(io_at(&ingest))? {
            let e = e.map_err(io_at(&ingest))?;
            report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).map_err(io_at(&e.path()))?;
        }
        sync_dir(&blobs)?;
        let layers = self.records()?.iter().flat_map(|r| r.layers.iter().map(|l| l.digest.clone())).collect();
        report.snapshots = crate::snapshot::gc(self, &layers)?;
        Ok(report)
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
