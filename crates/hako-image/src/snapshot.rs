//! Layer snapshots and the root filesystems of containers.
//!
//! Each layer is unpacked once, on its own, into a content-addressed snapshot directory of the store; a
//! container's root filesystem is an overlayfs mount of its image's snapshots (lowerdirs, read-only) with
//! a private upper and work directory in its bundle. Where the kernel or file system does not allow
//! overlayfs (the mount is tried), or `HAKO_ROOTFS=copy` says so, the image is unpacked whole into the
//! bundle instead (the copy path, [`crate::unpack::unpack_image`]).
//!
//! ```text
//! <store>/snapshots/<hex>/          layer <hex> (its blob's digest) alone: whiteouts as overlayfs whiteouts
//!                                   (0:0 character devices), opaque directories as trusted.overlay.opaque=y
//! <store>/snapshots/.tmp-*          a snapshot being unpacked (renamed into place when whole)
//! <store>/containers/<id>/          a container's bundle (written by `hako image run`)
//!   hako-snapshots.json             the lease: the layers its root filesystem uses (0600)
//!   rootfs/                         the overlay mount, or the copy
//!   upper/, work/                   the overlay's private upper and work directories
//! ```
//!
//! A snapshot is written once, under the store's shared lock, to a temporary name and renamed into place;
//! it is never written again (overlayfs writes go to the container's upper directory). [`crate::Store::gc`]
//! (under the exclusive lock) removes a snapshot only when no image record names its layer and no bundle's
//! lease does. A lease is written under the shared lock before the mount, and removed with its bundle after
//! [`release_rootfs`] unmounted it.
//!
//! Overlayfs trusts its own `trusted.overlay.*` xattrs on lower layers; an image cannot forge them
//! ([`crate::unpack`] drops every `trusted.` xattr and refuses device nodes, so the only 0:0 character
//! devices and opaque marks in a snapshot are the ones hako made from the layer's whiteouts).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::store::{ImageRecord, Store, StoreError};
use crate::unpack::{self, Limits, State, UnpackError};

/// The environment variable that chooses how a container's root filesystem is made: `auto` (the default:
/// overlayfs where the kernel allows it, a copy otherwise), `overlay` (overlayfs or fail) or `copy`.
pub const ROOTFS_ENV: &str = "HAKO_ROOTFS";
/// The lease file in a bundle: the layers whose snapshots its root filesystem uses.
pub const LEASE_FILE: &str = "hako-snapshots.json";
/// The directory of snapshots in the store.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The directory of container bundles in the store.
pub const CONTAINERS_DIR: &str = "containers";

/// How a container's root filesystem is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    /// Overlayfs of the layer snapshots where the kernel allows it, else a copy.
    Auto,
    /// Overlayfs or fail.
    Overlay,
    /// A full copy of the image in the bundle.
    Copy,
}

impl RootfsMode {
    /// The mode `HAKO_ROOTFS` asks for (`auto` when unset).
    pub fn from_env() -> Result<RootfsMode, SnapshotError> {
        match std::env::var(ROOTFS_ENV) {
            Err(_) => Ok(RootfsMode::Auto),
            Ok(v) => match v.as_str() {
                "" | "auto" => Ok(RootfsMode::Auto),
                "overlay" => Ok(RootfsMode::Overlay),
                "copy" => Ok(RootfsMode::Copy),
                _ => Err(SnapshotError::BadMode(v)),
            },
        }
    }
}

/// What [`prepare_rootfs`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rootfs {
    /// An overlayfs mount of the layer snapshots.
    Overlay,
    /// A full copy.
    Copy,
}

/// Why a root filesystem could not be made. Whatever was written in the bundle is removed first.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// `HAKO_ROOTFS` has a value hako does not know.
    #[error("{ROOTFS_ENV}={0:?} is not auto, overlay or copy: set one of them, or unset it")]
    BadMode(String),
    /// Unpacking failed (a hostile or damaged layer, a limit, the store).
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Overlayfs cannot be used here (only with `HAKO_ROOTFS=overlay`; `auto` copies instead).
    #[error("container root filesystem {dir}: overlayfs cannot be used: {why} (set {ROOTFS_ENV}=copy, or unset it to fall back to a copy)")]
    Overlay {
        /// The root filesystem.
        dir: PathBuf,
        /// What failed.
        why: String,
    },
    /// A directory of the bundle failed.
    #[error("container root filesystem {dir}: {source}")]
    Io {
        /// The path.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The lease file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    layers: Vec<Digest>,
}

/// Makes `<bundle>/rootfs` for a container of `image`: an overlayfs mount of the image's layer snapshots
/// (made now for the layers that have none) with `<bundle>/upper` and `<bundle>/work`, its lease written
/// first; or, with [`RootfsMode::Copy`] or where overlayfs fails under [`RootfsMode::Auto`] (a debug log
/// line says why), a full copy. `bundle` must exist; `rootfs`, `upper` and `work` must not. On failure
/// nothing of this is left in the bundle.
pub fn prepare_rootfs(
    store: &Store,
    image: &ImageRecord,
    bundle: &Path,
    limits: &Limits,
    mode: RootfsMode,
) -> Result<Rootfs, SnapshotError> {
    if mode != RootfsMode::Copy {
        match overlay(store, image, bundle, limits) {
            Ok(()) => return Ok(Rootfs::Overlay),
            Err(e) => {
                undo_overlay(bundle);
                let fallback = matches!(e, SnapshotError::Overlay { .. } | SnapshotError::Io { .. })
                    || matches!(e, SnapshotError::Unpack(UnpackError::Io { .. } | UnpackError::Target { .. }));
                if mode == RootfsMode::Overlay || !fallback {
                    return Err(e);
                }
                tracing::debug!(bundle = %bundle.display(), error = %e, "overlayfs root filesystem not possible, copying the image instead");
            }
        }
    }
    let rootfs = bundle.join("rootfs");
    // The store's shared lock: a concurrent prune cannot take the blobs away mid-unpack.
    let _lock = store.lock(false)?;
    unpack::unpack_image(store, image, &rootfs, limits)?;
    Ok(Rootfs::Copy)
}

/// Removes what a failed [`overlay`] wrote in `bundle`: the mount, `upper/`, `work/`, the lease and an
/// empty `rootfs/`.
fn undo_overlay(bundle: &Path) {
    release_rootfs(bundle);
    let _ = fs::remove_dir_all(bundle.join("upper"));
    let _ = fs::remove_dir_all(bundle.join("work"));
    let _ = fs::remove_file(bundle.join(LEASE_FILE));
    let _ = fs::remove_dir(bundle.join("rootfs"));
}

fn io_at(dir: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { dir: dir.to_path_buf(), source }
}

fn overlay(store: &Store, image: &ImageRecord, bundle: &Path, limits: &Limits) -> Result<(), SnapshotError> {
    unpack::check_image(image)?;
    let rootfs = bundle.join("rootfs");
    let not_possible = |why: String| SnapshotError::Overlay { dir: rootfs.clone(), why };
    if image.layers.is_empty() {
        return Err(not_possible("the image has no layers".into()));
    }
    let snapshots = store.root().join(SNAPSHOTS_DIR);
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&snapshots).map_err(io_at(&snapshots))?;
    // The shared lock until the lease is written: gc (exclusive) sees either no snapshot or the lease.
    let lock = store.lock(false)?;
    probe(&snapshots).map_err(|e| not_possible(format!("a test mount in {} failed: {e}", snapshots.display())))?;
    let lowers = ensure_snapshots(store, image, &snapshots, limits)?;
    let lease = Lease { layers: image.layers.iter().map(|l| l.digest.clone()).collect() };
    let data = serde_json::to_vec(&lease).map_err(|e| io_at(bundle)(io::Error::other(e)))?;
    crate::store::write_atomic(bundle, &bundle.join(LEASE_FILE), &data)?;
    drop(lock);
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    fs::DirBuilder::new().mode(0o755).create(&rootfs).map_err(io_at(&rootfs))?;
    // The upper directory's root is the container's `/`: 0755, as a copied rootfs is.
    fs::DirBuilder::new().mode(0o755).create(&upper).map_err(io_at(&upper))?;
    fs::DirBuilder::new().mode(0o700).create(&work).map_err(io_at(&work))?;
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_at(p)(e.into()))
    };
    let (upper_fd, work_fd) = (open(&upper)?, open(&work)?);
    mount_overlay(&rootfs, &lowers, &upper_fd, &work_fd).map_err(|e| not_possible(format!("mount: {e}")))
}

/// Mounts overlayfs at `target`; the layers are named through `/proc/self/fd`, so no path of the store is
/// parsed again (and a store path with `,` or `:` needs no escaping). `lowers` is base first.
fn mount_overlay(target: &Path, lowers: &[OwnedFd], upper: &OwnedFd, work: &OwnedFd) -> io::Result<()> {
    let fd = |f: &OwnedFd| format!("/proc/self/fd/{}", f.as_raw_fd());
    let lowerdir: Vec<String> = lowers.iter().rev().map(fd).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lowerdir.join(":"), fd(upper), fd(work));
    if data.len() >= 4000 {
        return Err(io::Error::other(format!("{} layers are more than one mount's options can name", lowers.len())));
    }
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), data.as_c_str())?;
    Ok(())
}

/// Mounts and unmounts an overlay of empty directories in `snapshots`: whether this kernel and file system
/// allow overlayfs here, before any snapshot is written.
fn probe(snapshots: &Path) -> io::Result<()> {
    let dir = snapshots.join(format!(".probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let result = (|| {
        for sub in ["", "lower", "upper", "work", "merged"] {
            fs::DirBuilder::new().mode(0o700).create(dir.join(sub))?;
        }
        let open = |p: &Path| {
            rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        };
        let (lower, upper, work) = (open(&dir.join("lower"))?, open(&dir.join("upper"))?, open(&dir.join("work"))?);
        mount_overlay(&dir.join("merged"), &[lower], &upper, &work)?;
        rustix::mount::unmount(dir.join("merged"), UnmountFlags::DETACH)?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The snapshot of every layer of `image` (made for those that have none), opened, base first. New
/// snapshots are unpacked under temporary names, synced to disk together (one `syncfs`), then renamed into
/// place; on failure the temporary ones are removed.
fn ensure_snapshots(
    store: &Store,
    image: &ImageRecord,
    snapshots: &Path,
    limits: &Limits,
) -> Result<Vec<OwnedFd>, SnapshotError> {
    let config = crate::unpack::read_config(store, image)?;
    let mut state = State::new(*limits);
    state.snapshot = true;
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_at(p)(e.into()))
    };
    // (temporary name, final name, index in state.lowers) of the snapshots this run makes.
    let mut made: Vec<(PathBuf, PathBuf, usize)> = Vec::new();
    // (index in state.lowers, final name) of layers listed a second time while their snapshot is new.
    let mut again: Vec<(usize, PathBuf)> = Vec::new();
    let result = (|| {
        for (i, layer) in image.layers.iter().enumerate() {
            let dir = snapshots.join(layer.digest.hex());
            if let Some((tmp, _, _)) = made.iter().find(|(_, d, _)| *d == dir) {
                // A layer listed twice: its snapshot is still under its temporary name until the renames.
                again.push((state.lowers.len(), dir.clone()));
                state.lowers.push(open(tmp)?);
                continue;
            }
            if dir.is_dir() {
                state.lowers.push(open(&dir)?);
                continue;
            }
            let tmp = snapshots.join(format!(".tmp-{}-{}", layer.digest.hex(), std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            fs::DirBuilder::new().mode(0o755).create(&tmp).map_err(io_at(&tmp))?;
            made.push((tmp.clone(), dir, state.lowers.len()));
            let root = open(&tmp)?;
            let blob = store.open_blob(&layer.digest)?;
            let diff_id = config.rootfs.diff_ids.get(i);
            unpack::apply_layer(root.as_fd(), blob, &layer.digest.to_string(), diff_id, &mut state)?;
            state.lowers.push(root);
        }
        if let Some((tmp, _, _)) = made.first() {
            // Every file of the new snapshots on disk before their names say they are whole.
            rustix::fs::syncfs(open_rd(tmp)?).map_err(|e| io_at(tmp)(e.into()))?;
        }
        for (tmp, dir, index) in &made {
            match fs::rename(tmp, dir) {
                Ok(()) => tracing::debug!(snapshot = %dir.display(), "layer snapshot made"),
                // Another run made it meanwhile, with the same content: use that one (the lease names it),
                // and drop this run's copy.
                Err(e) if dir.is_dir() => {
                    tracing::debug!(snapshot = %dir.display(), error = %e, "snapshot made by another run");
                    state.lowers[*index] = open(dir)?;
                    let _ = fs::remove_dir_all(tmp);
                }
                Err(e) => return Err(io_at(dir)(e)),
            }
        }
        for (index, dir) in &again {
            state.lowers[*index] = open(dir)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _, _) in &made {
            let _ = fs::remove_dir_all(tmp);
        }
        return Err(e);
    }
    Ok(std::mem::take(&mut state.lowers))
}

fn open_rd(p: &Path) -> Result<OwnedFd, SnapshotError> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_at(p)(e.into()))
}

/// Undoes [`prepare_rootfs`]'s mount: unmounts `<bundle>/rootfs` when it is a mount point (lazily when
/// busy). Removing the bundle afterwards removes the upper directory, the copy and the lease.
pub fn release_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    match rustix::mount::unmount(&rootfs, UnmountFlags::NOFOLLOW) {
        Ok(()) => {}
        // Not a mount point (a copy), or no rootfs at all.
        Err(Errno::INVAL) | Err(Errno::NOENT) => {}
        Err(Errno::BUSY) => {
            if let Err(e) = rustix::mount::unmount(&rootfs, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH) {
                tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting the container's root filesystem failed");
            }
        }
        Err(e) => {
            tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting the container's root filesystem failed")
        }
    }
}

/// Called by [`Store::gc`] under the exclusive lock: removes the snapshots of layers that no record in
/// `keep` names and no bundle's lease names, and leftovers of killed unpacks. A lease that cannot be read
/// keeps every snapshot (a warning says which).
pub(crate) fn gc(store: &Store, keep: &BTreeSet<Digest>) -> Result<Vec<Digest>, StoreError> {
    let snapshots = store.root().join(SNAPSHOTS_DIR);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let entries = match fs::read_dir(&snapshots) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&snapshots)(e)),
    };
    let mut keep = keep.clone();
    let containers = store.root().join(CONTAINERS_DIR);
    if let Ok(bundles) = fs::read_dir(&containers) {
        for b in bundles {
            let lease = b.map_err(io(&containers))?.path().join(LEASE_FILE);
            match fs::read(&lease) {
                Ok(data) => match serde_json::from_slice::<Lease>(&data) {
                    Ok(l) => keep.extend(l.layers),
                    Err(e) => {
                        tracing::warn!(lease = %lease.display(), error = %e, "damaged snapshot lease: keeping every snapshot");
                        return Ok(Vec::new());
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&lease)(e)),
            }
        }
    }
    let mut removed = Vec::new();
    for e in entries {
        let e = e.map_err(io(&snapshots))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let digest = Digest::parse(&format!("sha256:{name}")).ok();
        if digest.as_ref().is_some_and(|d| keep.contains(d)) {
            continue;
        }
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            fs::remove_file(&path).map_err(io(&path))?;
        }
        removed.extend(digest);
    }
    Ok(removed)
}
