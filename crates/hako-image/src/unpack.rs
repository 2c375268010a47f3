//! Unpacking image layers into a root filesystem, refusing hostile layers.
//!
//! Every path of a layer is resolved inside the rootfs through file descriptors, one component at a time,
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: hako never follows a
//! symlink that an earlier entry (or layer) planted, so no entry can reach outside the rootfs. An entry that
//! replaces something removes it first and creates its own file with `O_EXCL | O_NOFOLLOW`.
//!
//! Refused (the unpack fails and removes what it wrote): absolute paths and `..`, an entry whose parent is a
//! symlink or not a directory, a hard link whose target is outside the rootfs, goes through a symlink, is a
//! directory or does not exist, character and block devices, and layers that exceed the [`Limits`].
//! In snapshot mode ([`crate::snapshot`]) each layer is unpacked alone into a directory of its own, and its
//! whiteouts become overlayfs whiteouts (0:0 character devices, the only device nodes hako ever makes) and
//! opaque directories `trusted.overlay.opaque=y`; a hard link to a file of a lower layer becomes a copy.
//!
//! Kept: owners, modes (setuid included), modification times, hard links, FIFOs, xattrs in `user.`,
//! `security.` (file capabilities) and `system.posix_acl_*`; `trusted.` xattrs are dropped (overlayfs keeps
//! its own metadata there, which an image must not forge).

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::digest::{Digest, Hasher};
use crate::manifest::ImageConfig;
use crate::store::{ImageRecord, Store, StoreError};

/// Limits against decompression and inode bombs, for one whole image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed bytes of all layers together (tar headers included).
    pub max_bytes: u64,
    /// Entries of all layers together.
    pub max_entries: u64,
}

impl Default for Limits {
    /// 64 GiB and 4 million entries: far above real images (a full Windows Server Core image unpacks to
    /// about 10 GiB and 200 000 files), far below what fills a disk or its inode table by surprise.
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_entries: 4_000_000 }
    }
}

/// Why an unpack failed. Whatever it wrote is removed first.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The target directory cannot be used.
    #[error("unpack target {dir}: {why}")]
    Target {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A layer holds an entry hako refuses.
    #[error("layer {layer}: entry {entry:?} refused: {why}; nothing was unpacked")]
    Refused {
        /// The layer.
        layer: String,
        /// The entry's path.
        entry: String,
        /// Why.
        why: String,
    },
    /// A layer exceeds a limit.
    #[error("layer {layer}: the image exceeds the limit of {limit} {what} ({flag} raises it for a trusted image); nothing was unpacked")]
    Limit {
        /// The layer.
        layer: String,
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
        /// The flag that raises it.
        flag: &'static str,
    },
    /// The layer is not a valid (compressed) tar.
    #[error("layer {layer}: {why}; nothing was unpacked")]
    Corrupt {
        /// The layer.
        layer: String,
        /// What is wrong.
        why: String,
    },
    /// A system call failed on an entry.
    #[error("layer {layer}: entry {entry:?}: {source}; nothing was unpacked")]
    Io {
        /// The layer.
        layer: String,
        /// The entry.
        entry: String,
        /// The error.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored image config (verified by its digest when it was stored) does not parse.
    #[error("image {image}: its config {digest} is not a valid image config ({why}): remove the image (hako image rm) and pull it again")]
    Config {
        /// The image.
        image: String,
        /// The config's digest.
        digest: String,
        /// The parser's error.
        why: String,
    },
    /// A layer is foreign (non-distributable), so the store does not hold it.
    #[error("image {image}: layer {layer} is foreign (non-distributable): hako does not download such layers, so it cannot unpack this image (`hako image inspect {image}` lists its layers)")]
    ForeignLayer {
        /// The image.
        image: String,
        /// The layer.
        layer: Digest,
    },
    /// The image is for another OS (a Windows image on Linux).
    #[error(transparent)]
    Foreign(#[from] crate::foreign::ForeignImage),
}

/// Counts and bounds the uncompressed stream, and hashes it (the layer's diff id).
struct Counted<'a, R> {
    inner: R,
    used: &'a Cell<u64>,
    limit: u64,
    hasher: Hasher,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.used.set(self.used.get() + n as u64);
        if self.used.get() > self.limit {
            return Err(io::Error::other("unpack byte limit exceeded"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The stored config of `image`.
pub(crate) fn read_config(store: &Store, image: &ImageRecord) -> Result<ImageConfig, UnpackError> {
    serde_json::from_slice(&store.read_blob(&image.config.digest)?).map_err(|e| UnpackError::Config {
        image: image.name.clone(),
        digest: image.config.digest.to_string(),
        why: e.to_string(),
    })
}

/// Unpacks every layer of `image` from `store` into `dir`, which must not exist or be empty. On failure
/// `dir` is left as it was found (removed, or emptied).
pub fn unpack_image(store: &Store, image: &ImageRecord, dir: &Path, limits: &Limits) -> Result<(), UnpackError> {
    check_image(image)?;
    let config = read_config(store, image)?;
    let created = prepare_target(dir)?;
    let result = (|| {
        let root =
            rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| UnpackError::Target { dir: dir.to_path_buf(), why: e.to_string() })?;
        let mut state = State::new(*limits);
        for (i, layer) in image.layers.iter().enumerate() {
            let file = store.open_blob(&layer.digest)?;
            apply_layer(root.as_fd(), file, &layer.digest.to_string(), config.rootfs.diff_ids.get(i), &mut state)?;
        }
        Ok(())
    })();
    if result.is_err() {
        clean_target(dir, created);
    }
    result
}

/// Refuses an image of another OS and one with a foreign layer, before anything is written.
pub(crate) fn check_image(image: &ImageRecord) -> Result<(), UnpackError> {
    crate::foreign::check_host(image)?;
    if let Some(l) = image.layers.iter().find(|l| l.is_foreign()) {
        return Err(UnpackError::ForeignLayer { image: image.name.clone(), layer: l.digest.clone() });
    }
    Ok(())
}

/// Running totals over an image's layers, and how whiteouts are applied.
pub struct State {
    limits: Limits,
    bytes: Cell<u64>,
    entries: u64,
    /// Snapshot mode: each layer is unpacked into a directory of its own (an overlayfs lower layer), so a
    /// whiteout becomes an overlayfs whiteout (a 0:0 character device) and an opaque directory gets
    /// `trusted.overlay.opaque=y`, instead of removing what lower layers wrote.
    pub(crate) snapshot: bool,
    /// In snapshot mode, the layers below the one being unpacked, topmost last: where a hard link's target
    /// and a directory's attributes are found when this layer does not hold them.
    pub(crate) lowers: Vec<OwnedFd>,
}

impl State {
    /// Totals at zero.
    pub fn new(limits: Limits) -> State {
        State { limits, bytes: Cell::new(0), entries: 0, snapshot: false, lowers: Vec::new() }
    }
}

/// The overlayfs xattr that makes a directory of an upper layer hide the directories of the layers below.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Creates `dir` (0755) or checks that it is an empty directory; says whether it created it.
fn prepare_target(dir: &Path) -> Result<bool, UnpackError> {
    let bad = |why: String| UnpackError::Target { dir: dir.to_path_buf(), why };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut it = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
            if it.next().is_some() {
                return Err(bad("it is not empty (unpack into a new or empty directory)".into()));
            }
            Ok(false)
        }
        Ok(_) => Err(bad("it exists and is not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(|e| bad(e.to_string()))?;
            Ok(true)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Removes what an unpack wrote: `dir` itself if it created it, else its contents.
fn clean_target(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            // remove_dir_all does not follow symlinks.
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The normal components of an entry's path; `None` when it is absolute or has `..`.
fn components(path: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

/// Opens (creating when `create`, 0755) the directory `comps` under `root`, one component at a time.
fn open_dir(root: BorrowedFd<'_>, comps: &[OsString], create: bool) -> Result<Option<OwnedFd>, String> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // The whole path in one openat2 first: the same rules as the walk below (inside the root, no symlinks, no
    // magic links; the components are plain names), one syscall instead of one per component. The walk runs
    // only when that fails, to create what is missing and to say what is wrong.
    let whole: PathBuf = if comps.is_empty() { PathBuf::from(".") } else { comps.iter().collect() };
    if let Ok(fd) = rustix::fs::openat2(root, &whole, flags, Mode::empty(), resolve_flags()) {
        return Ok(Some(fd));
    }
    let mut fd = rustix::fs::openat2(root, ".", flags, Mode::empty(), resolve_flags()).map_err(|e| e.to_string())?;
    for (i, c) in comps.iter().enumerate() {
        let shown = || comps[..=i].iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
        let next = match rustix::fs::openat2(&fd, c.as_os_str(), flags, Mode::empty(), resolve_flags()) {
            Ok(f) => f,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(format!("creating {}: {e}", shown())),
                }
                rustix::fs::openat2(&fd, c.as_os_str(), flags, Mode::empty(), resolve_flags())
                    .map_err(|e| format!("{}: {e}", shown()))?
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(format!(
                    "its parent {} is a symlink, and hako never writes through a symlink a layer planted (it could point outside the rootfs)",
                    shown()
                ))
            }
            Err(Errno::NOTDIR) => {
                let st = rustix::fs::statat(&fd, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW);
                if st.is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) {
                    return Err(format!(
                        "its parent {} is a symlink, and hako never writes through a symlink a layer planted (it could point outside the rootfs)",
                        shown()
                    ));
                }
                return Err(format!("its parent {} is not a directory", shown()));
            }
            Err(e) => return Err(format!("{}: {e}", shown())),
        };
        fd = next;
    }
    Ok(Some(fd))
}

/// In snapshot mode: opens the directory `comps` of the layer under `root`, creating what is missing; a
/// directory this layer creates only as a parent gets the owner and mode it has in the topmost lower layer
/// (an overlayfs directory shows the attributes of its topmost layer), 0755 root when none has it.
fn open_dir_inheriting(root: BorrowedFd<'_>, comps: &[OsString], lowers: &[OwnedFd]) -> Result<OwnedFd, String> {
    if let Some(fd) = open_dir(root, comps, false)? {
        return Ok(fd);
    }
    for n in 1..=comps.len() {
        if open_dir(root, &comps[..n], false)?.is_some() {
            continue;
        }
        let lower = lower_dir(lowers, &comps[..n])?;
        let fd = open_dir(root, &comps[..n], true)?.expect("created");
        if let Some(lower) = lower {
            let st = rustix::fs::fstat(&lower).map_err(|e| e.to_string())?;
            let rd = rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| e.to_string())?;
            let owner = (Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)));
            set_meta(rd.as_fd(), owner, st.st_mode & 0o7777, &[], None).map_err(|e| e.to_string())?;
        }
    }
    Ok(open_dir(root, comps, false)?.expect("created"))
}

/// In snapshot mode: the directory `comps` of the topmost lower layer that has an entry there; `None`
/// when none has one or the topmost is a whiteout. A symlink or another non-directory there is refused as
/// the copy path refuses it: this layer would write below it.
fn lower_dir(lowers: &[OwnedFd], comps: &[OsString]) -> Result<Option<OwnedFd>, String> {
    let Some((name, parent)) = comps.split_last() else { return Ok(None) };
    let shown = || comps.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
    for lower in lowers.iter().rev() {
        // A lower layer whose path to here is not plain directories does not have this entry.
        let Ok(Some(dir)) = open_dir(lower.as_fd(), parent, false) else { continue };
        let st = match rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(format!("{}: {e}", shown())),
        };
        return match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Ok(open_dir(lower.as_fd(), comps, false)?),
            FileType::CharacterDevice if st.st_rdev == 0 => Ok(None),
            FileType::Symlink => Err(format!(
                "its parent {} is a symlink, and hako never writes through a symlink a layer planted (it could point outside the rootfs)",
                shown()
            )),
            _ => Err(format!("its parent {} is not a directory", shown())),
        };
    }
    Ok(None)
}

/// In snapshot mode: a hard link whose target lies in a lower layer becomes a copy of that file (content,
/// owner, mode, kept xattrs, times) at `name` in `dir`. The topmost lower layer that has the path wins; a
/// whiteout there (or a non-regular file) means the target does not exist.
fn copy_from_lowers(lowers: &[OwnedFd], target: &[OsString], dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), String> {
    let missing = || "it does not exist in the rootfs".to_string();
    let (tname, tparent) = target.split_last().ok_or_else(missing)?;
    for lower in lowers.iter().rev() {
        let Some(tdir) = open_dir(lower.as_fd(), tparent, false)? else { continue };
        let src = match rustix::fs::openat2(
            &tdir,
            tname.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            resolve_flags(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let st = rustix::fs::fstat(&src).map_err(|e| e.to_string())?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(missing());
        }
        remove_at(dir, name).map_err(|e| e.to_string())?;
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        let mut out = File::from(fd);
        io::copy(&mut File::from(src.try_clone().map_err(|e| e.to_string())?), &mut out).map_err(|e| e.to_string())?;
        let mut xattrs = Vec::new();
        let mut names = vec![0u8; 64 * 1024];
        let n = rustix::fs::flistxattr(&src, &mut names).map_err(|e| e.to_string())?;
        for x in names[..n].split(|b| *b == 0).filter(|x| !x.is_empty()) {
            let x = String::from_utf8_lossy(x).into_owned();
            if !xattr_kept(&x) {
                continue;
            }
            let mut value = vec![0u8; 64 * 1024];
            let len = rustix::fs::fgetxattr(&src, x.as_str(), &mut value).map_err(|e| e.to_string())?;
            value.truncate(len);
            xattrs.push((x, value));
        }
        let owner = (Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)));
        let t = |s: i64, ns: u64| rustix::fs::Timespec { tv_sec: s, tv_nsec: ns as _ };
        let times = Timestamps {
            last_access: t(st.st_atime as i64, st.st_atime_nsec as u64),
            last_modification: t(st.st_mtime as i64, st.st_mtime_nsec as u64),
        };
        return set_meta(out.as_fd(), owner, st.st_mode & 0o7777, &xattrs, Some(&times)).map_err(|e| e.to_string());
    }
    Err(missing())
}

/// Removes `name` in `dir` (a directory with everything in it), never following a symlink.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        empty_dir(sub.as_fd(), &|_| false)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes every child of `dir` for which `keep` says no.
fn empty_dir(dir: BorrowedFd<'_>, keep: &dyn Fn(&OsStr) -> bool) -> io::Result<()> {
    let mut names = Vec::new();
    let readable = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for e in rustix::fs::Dir::read_from(&readable)? {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if n != "." && n != ".." && !keep(&n) {
            names.push(n);
        }
    }
    for n in names {
        remove_at(dir, &n)?;
    }
    Ok(())
}

/// Whether an xattr of this name is carried from the layer into the rootfs.
fn xattr_kept(name: &str) -> bool {
    name.starts_with("user.") || name.starts_with("security.") || name.starts_with("system.posix_acl_")
}

/// Applies one layer (compressed with gzip or zstd, or not) from `blob` onto `root`. `diff_id`, when given,
/// is checked against the uncompressed stream.
pub fn apply_layer(
    root: BorrowedFd<'_>,
    blob: File,
    layer: &str,
    diff_id: Option<&Digest>,
    state: &mut State,
) -> Result<(), UnpackError> {
    let corrupt = |why: String| UnpackError::Corrupt { layer: layer.to_string(), why };
    let mut buffered = BufReader::with_capacity(256 * 1024, blob);
    let head = buffered.fill_buf().map_err(|e| corrupt(e.to_string()))?.to_vec();
    let decoder: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(buffered)
                .map_err(|e| corrupt(format!("not a valid zstd stream: {e}")))?,
        )
    } else {
        Box::new(buffered)
    };
    let counted = Counted { inner: decoder, used: &state.bytes, limit: state.limits.max_bytes, hasher: Hasher::new() };
    let mut archive = tar::Archive::new(counted);
    let limit_bytes = |state_bytes: u64| state_bytes > state.limits.max_bytes;
    let bytes_limit = || UnpackError::Limit {
        layer: layer.to_string(),
        what: "uncompressed bytes",
        limit: state.limits.max_bytes,
        flag: "--max-size",
    };
    let mut written: BTreeSet<Vec<OsString>> = BTreeSet::new();
    let mut dir_times: Vec<(Vec<OsString>, u64)> = Vec::new();
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if limit_bytes(state.bytes.get()) => return Err(bytes_limit()),
            Err(e) => return Err(corrupt(format!("not a valid tar: {e}"))),
        };
        state.entries += 1;
        if state.entries > state.limits.max_entries {
            return Err(UnpackError::Limit {
                layer: layer.to_string(),
                what: "entries",
                limit: state.limits.max_entries,
                flag: "--max-files",
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let refuse =
            |why: &str| UnpackError::Refused { layer: layer.to_string(), entry: shown.clone(), why: why.to_string() };
        let io = |source: io::Error| UnpackError::Io { layer: layer.to_string(), entry: shown.clone(), source };
        let path = PathBuf::from(OsStr::from_bytes(&raw_path));
        let comps = components(&path)
            .ok_or_else(|| refuse("its path is absolute or has `..` (it would land outside the rootfs)"))?;
        let Some((name, parent)) = comps.split_last() else {
            continue; // the rootfs itself ("./"): hako keeps its own
        };
        let kind = entry.header().entry_type();
        let name_bytes = name.as_bytes();
        if let Some(target) = name_bytes.strip_prefix(b".wh.") {
            if state.snapshot {
                let dir = open_dir_inheriting(root, parent, &state.lowers).map_err(|w| refuse(&w))?;
                if target == b".wh..opq" {
                    let rd = rustix::fs::openat(
                        &dir,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io(e.into()))?;
                    rustix::fs::fsetxattr(&rd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| io(io::Error::other(format!("setting {OPAQUE_XATTR}: {e}"))))?;
                } else {
                    if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                        return Err(refuse("a whiteout must name an entry of its directory"));
                    }
                    let target = OsStr::from_bytes(target);
                    remove_at(dir.as_fd(), target).map_err(io)?;
                    rustix::fs::mknodat(&dir, target, FileType::CharacterDevice, Mode::empty(), 0)
                        .map_err(|e| io(io::Error::other(format!("creating an overlayfs whiteout: {e}"))))?;
                }
                continue;
            }
            let Some(dir) = open_dir(root, parent, false).map_err(|w| refuse(&w))? else { continue };
            if target == b".wh..opq" {
                let prefix = parent.to_vec();
                empty_dir(dir.as_fd(), &|child| {
                    let mut p = prefix.clone();
                    p.push(child.to_os_string());
                    written.contains(&p)
                })
                .map_err(io)?;
            } else {
                if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                    return Err(refuse("a whiteout must name an entry of its directory"));
                }
                remove_at(dir.as_fd(), OsStr::from_bytes(target)).map_err(io)?;
            }
            continue;
        }
        let dir = if state.snapshot {
            open_dir_inheriting(root, parent, &state.lowers).map_err(|w| refuse(&w))?
        } else {
            open_dir(root, parent, true).map_err(|w| refuse(&w))?.expect("created")
        };
        let dir = dir.as_fd();
        let header = entry.header();
        let uid = header.uid().map_err(io)?;
        let gid = header.gid().map_err(io)?;
        let mode = header.mode().map_err(io)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        if uid > u32::MAX as u64 - 1 || gid > u32::MAX as u64 - 1 {
            return Err(refuse("its owner is not a valid uid/gid"));
        }
        let owner = (Some(Uid::from_raw(uid as u32)), Some(Gid::from_raw(gid as u32)));
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(io)? {
            for ext in exts {
                let ext = ext.map_err(io)?;
                if let Some(n) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    let n = String::from_utf8_lossy(n).into_owned();
                    if xattr_kept(&n) {
                        xattrs.push((n, ext.value_bytes().to_vec()));
                    } else {
                        tracing::warn!(layer, entry = %shown, xattr = %n, "xattr dropped");
                    }
                }
            }
        }
        let times = Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: mtime as i64, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: mtime as i64, tv_nsec: 0 },
        };
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let existing = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
                if !existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory) {
                    remove_at(dir, name).map_err(io)?;
                    rustix::fs::mkdirat(dir, name.as_os_str(), Mode::from_raw_mode(mode & 0o777))
                        .map_err(|e| io(e.into()))?;
                }
                let fd = rustix::fs::openat(
                    dir,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io(e.into()))?;
                set_meta(fd.as_fd(), owner, mode, &xattrs, None).map_err(io)?;
                dir_times.push((comps.clone(), mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                // Created with its final permission bits (set_meta then changes nothing, usually); whatever
                // is in the way is removed first.
                let create = || {
                    rustix::fs::openat(
                        dir,
                        name.as_os_str(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(mode & 0o777),
                    )
                };
                let fd = match create() {
                    Err(Errno::EXIST) => {
                        remove_at(dir, name).map_err(io)?;
                        create()
                    }
                    created => created,
                }
                .map_err(|e| io(e.into()))?;
                let mut file = File::from(fd);
                if let Err(e) = io::copy(&mut entry, &mut file) {
                    if limit_bytes(state.bytes.get()) {
                        return Err(bytes_limit());
                    }
                    return Err(corrupt(format!("entry {shown:?}: {e}")));
                }
                set_meta(file.as_fd(), owner, mode, &xattrs, Some(&times)).map_err(io)?;
            }
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("a symlink without a target"))?.into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(refuse("a symlink with an empty target"));
                }
                remove_at(dir, name).map_err(io)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, name.as_os_str()).map_err(|e| io(e.into()))?;
                rustix::fs::chownat(dir, name.as_os_str(), owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(e.into()))?;
                rustix::fs::utimensat(dir, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(e.into()))?;
            }
            T::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("a hard link without a target"))?.into_owned();
                let tcomps = components(Path::new(OsStr::from_bytes(&target)))
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| refuse("its hard link target is absolute or has `..` (outside the rootfs)"))?;
                if tcomps == comps {
                    return Err(refuse("a hard link to itself"));
                }
                let (tname, tparent) = tcomps.split_last().expect("not empty");
                let tdir = open_dir(root, tparent, false).map_err(|w| refuse(&format!("its hard link target: {w}")))?;
                let src = match tdir.map(|tdir| {
                    rustix::fs::openat2(
                        &tdir,
                        tname.as_os_str(),
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        resolve_flags(),
                    )
                }) {
                    Some(Ok(fd)) => fd,
                    Some(Err(Errno::NOENT)) | None if state.snapshot => {
                        // A link to a file of a lower layer: this layer gets a copy of it.
                        copy_from_lowers(&state.lowers, &tcomps, dir, name)
                            .map_err(|w| refuse(&format!("its hard link target: {w}")))?;
                        for n in 1..=comps.len() {
                            written.insert(comps[..n].to_vec());
                        }
                        continue;
                    }
                    Some(Err(Errno::NOENT)) | None => {
                        return Err(refuse("its hard link target does not exist in the rootfs"))
                    }
                    Some(Err(e)) => return Err(io(e.into())),
                };
                let st = rustix::fs::fstat(&src).map_err(|e| io(e.into()))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(refuse("a hard link to a directory"));
                }
                remove_at(dir, name).map_err(io)?;
                rustix::fs::linkat(&src, "", dir, name.as_os_str(), AtFlags::EMPTY_PATH).map_err(|e| io(e.into()))?;
            }
            T::Fifo => {
                remove_at(dir, name).map_err(io)?;
                rustix::fs::mknodat(dir, name.as_os_str(), FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|e| io(e.into()))?;
                let fd = rustix::fs::openat(dir, name.as_os_str(), OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io(e.into()))?;
                let _ = fd;
                rustix::fs::chownat(dir, name.as_os_str(), owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(e.into()))?;
                rustix::fs::chmodat(dir, name.as_os_str(), Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(|e| io(e.into()))?;
            }
            T::Char | T::Block => {
                return Err(refuse(
                    "device nodes are refused: a container gets its devices from its runtime config (linux.devices), never from an image",
                ))
            }
            other => {
                tracing::warn!(layer, entry = %shown, kind = ?other, "tar entry of an unknown type skipped");
                continue;
            }
        }
        for n in 1..=comps.len() {
            written.insert(comps[..n].to_vec());
        }
    }
    // Directories' times last: creating their children changed them.
    for (comps, mtime) in dir_times.iter().rev() {
        if let Ok(Some(fd)) = open_dir(root, comps, false) {
            let t = rustix::fs::Timespec { tv_sec: *mtime as i64, tv_nsec: 0 };
            let ro = rustix::fs::openat(&fd, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty());
            if let Ok(ro) = ro {
                let _ = rustix::fs::futimens(&ro, &Timestamps { last_access: t, last_modification: t });
            }
        }
    }
    let mut counted = archive.into_inner();
    if let Err(e) = io::copy(&mut counted, &mut io::sink()) {
        if limit_bytes(state.bytes.get()) {
            return Err(bytes_limit());
        }
        return Err(corrupt(e.to_string()));
    }
    if let Some(expected) = diff_id {
        let got = counted.hasher.finish();
        if &got != expected {
            return Err(corrupt(format!(
                "its uncompressed content has digest {got}, the image config says {expected}"
            )));
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid), then xattrs, then times of an open file or directory. Owner and
/// mode are changed only where they differ: a file just created by root with its mode usually has both
/// already, and each change is a metadata write.
fn set_meta(
    fd: BorrowedFd<'_>,
    owner: (Option<Uid>, Option<Gid>),
    mode: u32,
    xattrs: &[(String, Vec<u8>)],
    times: Option<&Timestamps>,
) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    let chown = owner.0.is_some_and(|u| u.as_raw() != st.st_uid) || owner.1.is_some_and(|g| g.as_raw() != st.st_gid);
    if chown {
        rustix::fs::fchown(fd, owner.0, owner.1)?;
    }
    if chown || st.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    }
    for (name, value) in xattrs {
        match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP) => tracing::warn!(xattr = %name, "the filesystem does not support this xattr: dropped"),
            Err(e) => return Err(io::Error::other(format!("setting xattr {name}: {e}"))),
        }
    }
    if let Some(t) = times {
        rustix::fs::futimens(fd, t)?;
    }
    Ok(())
}
