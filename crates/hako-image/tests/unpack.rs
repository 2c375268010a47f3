//! Unpacking: what a good layer keeps (whiteouts, opaque directories, xattrs, file capabilities, hard links,
//! modes) and what a hostile layer is refused for, each asserted to write nothing outside the rootfs and to
//! leave nothing behind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hako_image::manifest::Descriptor;
use hako_image::snapshot::{prepare_rootfs, release_rootfs, Rootfs, RootfsMode, SnapshotError};
use hako_image::unpack::{unpack_image, Limits, UnpackError};
use hako_image::{Digest, ImageRecord, Platform, Store};
use tar::{EntryType, Header};

/// One tar entry, written with raw header fields so that hostile paths are possible.
struct E<'a> {
    path: &'a str,
    kind: EntryType,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    uid: u64,
    gid: u64,
    pax: Vec<(&'a str, &'a [u8])>,
}

fn e(path: &str, kind: EntryType) -> E<'_> {
    let mode = if kind == EntryType::Directory { 0o755 } else { 0o644 };
    E { path, kind, data: b"", link: "", mode, uid: 1000, gid: 1001, pax: vec![] }
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
    E { data, ..e(path, EntryType::Regular) }
}

fn link<'a>(path: &'a str, kind: EntryType, target: &'a str) -> E<'a> {
    E { link: target, ..e(path, kind) }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for en in entries {
        if !en.pax.is_empty() {
            let data: Vec<u8> = en.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut h = Header::new_ustar();
            h.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        let mut h = Header::new_gnu();
        let g = h.as_gnu_mut().unwrap();
        g.name[..en.path.len()].copy_from_slice(en.path.as_bytes());
        g.linkname[..en.link.len()].copy_from_slice(en.link.as_bytes());
        h.set_entry_type(en.kind);
        h.set_size(en.data.len() as u64);
        h.set_mode(en.mode);
        h.set_uid(en.uid);
        h.set_gid(en.gid);
        h.set_mtime(1_600_000_000);
        if matches!(en.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, en.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A store holding one image made of `layers` (already compressed or not).
struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    image: ImageRecord,
    /// A directory next to the rootfs that no entry may touch.
    outside: PathBuf,
    rootfs: PathBuf,
}

fn fixture(layers: &[Vec<u8>]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let mut descs = Vec::new();
    for l in layers {
        let d = Digest::of(l);
        store.put_blob(&d, l).unwrap();
        descs.push(Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: d,
            size: l.len() as u64,
            platform: None,
            urls: vec![],
            annotations: Default::default(),
        });
    }
    let config = br#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = Digest::of(config);
    store.put_blob(&cd, config).unwrap();
    let image = ImageRecord {
        name: "test/image:1".into(),
        digest: cd.clone(),
        index_digest: None,
        media_type: String::new(),
        platform: Platform { os: "linux".into(), architecture: "amd64".into(), ..Default::default() },
        config: Descriptor {
            media_type: String::new(),
            digest: cd,
            size: config.len() as u64,
            platform: None,
            urls: vec![],
            annotations: Default::default(),
        },
        layers: descs,
        size: 0,
        pulled: 0,
    };
    store.put_record(&image).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"untouched").unwrap();
    let rootfs = tmp.path().join("rootfs");
    Fixture { _tmp: tmp, store, image, outside, rootfs }
}

impl Drop for Fixture {
    /// A failed assertion must not leave a test's overlay mounted.
    fn drop(&mut self) {
        for b in ["bundle", "bundle2"] {
            release_rootfs(&self.outside.parent().unwrap().join(b));
        }
    }
}

impl Fixture {
    fn unpack(&self) -> Result<(), UnpackError> {
        self.unpack_with(&Limits::default())
    }
    fn unpack_with(&self, limits: &Limits) -> Result<(), UnpackError> {
        unpack_image(&self.store, &self.image, &self.rootfs, limits)
    }
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["secret"], "something was written outside the rootfs");
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"untouched");
        let parent: Vec<_> = fs::read_dir(self.outside.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for n in &parent {
            assert!(
                ["store", "outside", "rootfs", "bundle", "bundle2"].contains(&n.as_str()),
                "unexpected {n} next to the rootfs"
            );
        }
    }
    /// A refused layer: the error says so, nothing is outside, and the rootfs is gone; the same by the
    /// snapshot path, which leaves no snapshot and nothing in the bundle.
    fn refused(&self, needle: &str) {
        let err = self.unpack().expect_err("a hostile layer must be refused").to_string();
        assert!(err.contains(needle), "error {err:?} does not say {needle:?}");
        assert!(!self.rootfs.exists(), "a refused unpack left {} behind", self.rootfs.display());
        self.assert_outside_untouched();
        let err = self.overlay(&Limits::default()).expect_err("a hostile layer must be refused").to_string();
        assert!(err.contains(needle), "snapshot path: error {err:?} does not say {needle:?}");
        self.assert_snapshot_path_clean();
        self.assert_outside_untouched();
    }
    /// The bundle the snapshot path writes in (created).
    fn bundle(&self) -> PathBuf {
        let b = self.outside.parent().unwrap().join("bundle");
        fs::create_dir_all(&b).unwrap();
        b
    }
    fn overlay(&self, limits: &Limits) -> Result<Rootfs, SnapshotError> {
        prepare_rootfs(&self.store, &self.image, &self.bundle(), limits, RootfsMode::Overlay)
    }
    fn snapshots(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.store.root().join("snapshots"))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
    fn assert_snapshot_path_clean(&self) {
        // The layers below the refused one (always the last here) may keep their whole, valid snapshots.
        let snaps = self.snapshots();
        let refused = self.image.layers.last().map(|l| l.digest.hex().to_string()).unwrap_or_default();
        assert!(!snaps.iter().any(|s| s.starts_with('.') || *s == refused), "a failed snapshot was left: {snaps:?}");
        let left: Vec<_> = fs::read_dir(self.bundle()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "a failed snapshot path left {left:?} in the bundle");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.bundle().to_str().unwrap()), "a failed snapshot path left a mount");
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A file capability: cap_net_bind_service+ep (VFS_CAP_REVISION_2).
const CAP: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Three layers with whiteouts, an opaque directory, hard links (one to a lower layer's file), xattrs.
fn good_layers() -> Vec<Vec<u8>> {
    let base = tar(&[
        e("etc/", EntryType::Directory),
        file("etc/keep", b"keep"),
        file("etc/gone", b"gone"),
        e("opq/", EntryType::Directory),
        file("opq/old", b"old"),
        E {
            mode: 0o4755,
            pax: vec![
                ("SCHILY.xattr.security.capability", CAP),
                ("SCHILY.xattr.user.note", b"hi"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
            ],
            ..file("bin/tool", b"#!/bin/sh\n")
        },
        link("bin/tool-link", EntryType::Link, "bin/tool"),
        link("bin/sym", EntryType::Symlink, "/etc/passwd"),
        e("fifo", EntryType::Fifo),
    ]);
    let second = tar(&[
        file("etc/.wh.gone", b""),
        e("opq/", EntryType::Directory),
        file("opq/.wh..wh..opq", b""),
        file("opq/new", b"new"),
        file("bin/sym", b"now a file"),
    ]);
    let third = tar(&[
        file("etc/keep", b"replaced"),
        file(".wh.fifo", b""),
        link("lib/from-lower", EntryType::Link, "etc/keep"),
    ]);
    vec![gzip(&base), zstd(&second), third]
}

/// What [`good_layers`] must give, by either path.
fn assert_good_tree(r: &Path) {
    assert_eq!(fs::read(r.join("etc/keep")).unwrap(), b"replaced");
    assert_eq!(fs::read(r.join("lib/from-lower")).unwrap(), b"replaced", "a hard link to a lower layer's file");
    assert!(!r.join("etc/gone").exists(), "a whiteout removes the file");
    assert!(!r.join("opq/old").exists(), "an opaque directory hides the lower layers' entries");
    assert_eq!(fs::read(r.join("opq/new")).unwrap(), b"new", "but keeps its own layer's");
    assert_eq!(
        fs::read(r.join("bin/sym")).unwrap(),
        b"now a file",
        "a file replaces a symlink, never writes through it"
    );
    assert!(!r.join("fifo").exists());
    let tool = fs::metadata(r.join("bin/tool")).unwrap();
    assert_eq!((mode(&r.join("bin/tool")), tool.uid(), tool.gid()), (0o4755, 1000, 1001));
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.ino(), fs::metadata(r.join("bin/tool-link")).unwrap().ino(), "hard link kept");
    assert_eq!(getxattr(&r.join("bin/tool"), "security.capability").as_deref(), Some(CAP));
    assert_eq!(getxattr(&r.join("bin/tool"), "user.note").as_deref(), Some(&b"hi"[..]));
    assert_eq!(getxattr(&r.join("bin/tool"), "trusted.overlay.redirect"), None, "trusted xattrs are dropped");
    assert_eq!(
        fs::metadata(r.join("opq")).unwrap().mtime(),
        1_600_000_000,
        "directory times are set after their children"
    );
}

#[test]
fn layers_apply_in_order_with_whiteouts_opaque_dirs_links_and_xattrs() {
    let f = fixture(&good_layers());
    f.unpack().unwrap();
    assert_good_tree(&f.rootfs);
    f.assert_outside_untouched();
}

/// hako creates files and directories with their modes and changes owner and mode only where they differ:
/// root's own entries (the usual case, nothing to change) must still end with exactly their owner and mode,
/// special bits and bits a umask clears included, and a replaced file must not keep the old one's.
#[test]
fn root_owned_entries_keep_exact_modes_and_replaced_files_take_the_new_owner_and_mode() {
    let root = |en: E<'static>| E { uid: 0, gid: 0, ..en };
    let base = tar(&[
        root(E { mode: 0o1777, ..e("tmp/", EntryType::Directory) }),
        root(E { mode: 0o700, ..e("root/", EntryType::Directory) }),
        root(E { mode: 0o4755, ..file("usr/bin/passwd", b"suid") }),
        E { mode: 0o2755, uid: 0, gid: 42, ..file("usr/bin/chage", b"sgid") },
        root(E { mode: 0o777, ..file("usr/bin/open", b"open") }),
        root(E { mode: 0o000, ..file("etc/shadow", b"none") }),
        root(E { mode: 0o644, ..file("etc/replaced", b"old") }),
    ]);
    let second = tar(&[
        E { mode: 0o600, ..file("etc/replaced", b"new") },
        root(E { mode: 0o755, ..file("usr/bin/passwd", b"plain") }),
    ]);
    let f = fixture(&[gzip(&base), second]);
    f.unpack().unwrap();
    let r = &f.rootfs;
    let meta = |p: &str| {
        let m = fs::symlink_metadata(r.join(p)).unwrap();
        (mode(&r.join(p)), m.uid(), m.gid())
    };
    assert_eq!(meta("tmp"), (0o1777, 0, 0));
    assert_eq!(meta("root"), (0o700, 0, 0));
    assert_eq!(meta("usr/bin/chage"), (0o2755, 0, 42));
    assert_eq!(meta("usr/bin/open"), (0o777, 0, 0));
    assert_eq!(meta("etc/shadow"), (0o000, 0, 0));
    assert_eq!(
        (meta("etc/replaced"), fs::read(r.join("etc/replaced")).unwrap()),
        ((0o600, 1000, 1001), b"new".to_vec())
    );
    assert_eq!(
        (meta("usr/bin/passwd"), fs::read(r.join("usr/bin/passwd")).unwrap()),
        ((0o755, 0, 0), b"plain".to_vec()),
        "a replaced setuid file must not stay setuid"
    );
    assert_eq!(fs::metadata(r.join("usr/bin/open")).unwrap().mtime(), 1_600_000_000);
    f.assert_outside_untouched();
}

#[test]
fn snapshots_give_the_same_tree_through_overlayfs_and_are_made_once() {
    let f = fixture(&good_layers());
    let made = f.overlay(&Limits::default()).unwrap();
    assert_eq!(made, Rootfs::Overlay);
    let bundle = f.bundle();
    assert_good_tree(&bundle.join("rootfs"));
    // In the snapshots: an overlayfs whiteout (0:0 character device) and an opaque directory.
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 3);
    let second = f.store.root().join("snapshots").join(f.image.layers[1].digest.hex());
    let wh = fs::symlink_metadata(second.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(getxattr(&second.join("opq"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    // Writes go to the container's upper directory only.
    fs::write(bundle.join("rootfs/etc/keep"), b"written").unwrap();
    assert_eq!(fs::read(bundle.join("upper/etc/keep")).unwrap(), b"written");
    let third = f.store.root().join("snapshots").join(f.image.layers[2].digest.hex());
    assert_eq!(fs::read(third.join("etc/keep")).unwrap(), b"replaced");
    release_rootfs(&bundle);
    // A second root filesystem reuses the snapshots.
    let again = f.outside.parent().unwrap().join("bundle2");
    fs::create_dir(&again).unwrap();
    prepare_rootfs(&f.store, &f.image, &again, &Limits::default(), RootfsMode::Overlay).unwrap();
    assert_eq!(f.snapshots(), snaps);
    assert_good_tree(&again.join("rootfs"));
    release_rootfs(&again);
    // gc keeps what the image names, even without a lease.
    f.store.gc().unwrap();
    assert_eq!(f.snapshots(), snaps);
    f.store.remove(f.image.digest.hex()).unwrap();
    let report = f.store.gc().unwrap();
    assert_eq!(report.snapshots.len(), 3);
    assert_eq!(f.snapshots(), Vec::<String>::new());
}

#[test]
fn the_snapshot_path_keeps_the_limits() {
    let zeros = vec![0u8; 8 << 20];
    let f = fixture(&[gzip(&tar(&[file("big", &zeros)]))]);
    let err = f.overlay(&Limits { max_bytes: 1 << 20, max_entries: 100 }).unwrap_err().to_string();
    assert!(err.contains("limit of 1048576 uncompressed bytes") && err.contains("--max-size"), "{err}");
    f.assert_snapshot_path_clean();
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let entries: Vec<E<'_>> = names.iter().map(|n| file(n, b"")).collect();
    let f = fixture(&[tar(&entries)]);
    let err = f.overlay(&Limits { max_bytes: 1 << 30, max_entries: 20 }).unwrap_err().to_string();
    assert!(err.contains("limit of 20 entries") && err.contains("--max-files"), "{err}");
    f.assert_snapshot_path_clean();
}

#[test]
fn dotdot_and_absolute_paths_are_refused() {
    for p in ["../outside/pwned", "a/../../outside/pwned", "/outside/pwned"] {
        let f = fixture(&[tar(&[file("ok", b"x"), file(p, b"pwned")])]);
        f.refused("absolute or has `..`");
    }
}

#[test]
fn a_symlink_planted_by_an_earlier_entry_is_never_followed() {
    let tmp_outside = |f: &Fixture| f.outside.to_string_lossy().into_owned();
    // Within one layer, and across layers; absolute and relative targets.
    let f = fixture(&[]);
    let abs = tmp_outside(&f);
    for layers in [
        vec![tar(&[link("evil", EntryType::Symlink, &abs), file("evil/pwned", b"x")])],
        vec![tar(&[link("evil", EntryType::Symlink, "../outside")]), tar(&[file("evil/pwned", b"x")])],
        vec![tar(&[link("evil", EntryType::Symlink, "../outside"), e("evil/sub/", EntryType::Directory)])],
    ] {
        let f = fixture(&layers);
        f.refused("is a symlink");
    }
    // A whiteout through a symlink removes nothing outside.
    let f = fixture(&[tar(&[link("evil", EntryType::Symlink, "../outside")]), tar(&[file("evil/.wh.secret", b"")])]);
    f.refused("is a symlink");
    // A file entry over a symlink replaces the symlink.
    let f = fixture(&[tar(&[link("s", EntryType::Symlink, "../outside/secret"), file("s", b"pwned")])]);
    f.unpack().unwrap();
    assert_eq!(fs::read(f.rootfs.join("s")).unwrap(), b"pwned");
    f.assert_outside_untouched();
}

#[test]
fn hard_links_that_reach_outside_are_refused() {
    let f = fixture(&[tar(&[link("h", EntryType::Link, "../outside/secret")])]);
    f.refused("absolute or has `..`");
    let f = fixture(&[tar(&[link("h", EntryType::Link, "/etc/passwd")])]);
    f.refused("absolute or has `..`");
    let f = fixture(&[tar(&[link("s", EntryType::Symlink, "../outside"), link("h", EntryType::Link, "s/secret")])]);
    f.refused("is a symlink");
    let f = fixture(&[tar(&[link("h", EntryType::Link, "etc/passwd")])]);
    f.refused("does not exist in the rootfs");
    let f = fixture(&[tar(&[e("d/", EntryType::Directory), link("h", EntryType::Link, "d")])]);
    f.refused("hard link to a directory");
}

#[test]
fn device_nodes_are_refused() {
    for kind in [EntryType::Char, EntryType::Block] {
        let f = fixture(&[tar(&[file("ok", b"x"), e("dev/null", kind)])]);
        f.refused("device nodes are refused");
    }
}

#[test]
fn decompression_and_inode_bombs_hit_the_limits() {
    let zeros = vec![0u8; 8 << 20];
    let f = fixture(&[gzip(&tar(&[file("big", &zeros)]))]);
    let err = f.unpack_with(&Limits { max_bytes: 1 << 20, max_entries: 100 }).unwrap_err().to_string();
    assert!(err.contains("limit of 1048576 uncompressed bytes") && err.contains("--max-size"), "{err}");
    assert!(!f.rootfs.exists());
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let entries: Vec<E<'_>> = names.iter().map(|n| file(n, b"")).collect();
    let f = fixture(&[tar(&entries)]);
    let err = f.unpack_with(&Limits { max_bytes: 1 << 30, max_entries: 20 }).unwrap_err().to_string();
    assert!(err.contains("limit of 20 entries") && err.contains("--max-files"), "{err}");
    assert!(!f.rootfs.exists());
    f.unpack_with(&Limits { max_bytes: 1 << 30, max_entries: 50 }).unwrap();
}

#[test]
fn an_existing_empty_target_is_emptied_again_on_failure_and_a_full_one_refused() {
    let f = fixture(&[tar(&[file("a", b"x"), e("dev/sda", EntryType::Block)])]);
    fs::create_dir(&f.rootfs).unwrap();
    assert!(f.unpack().is_err());
    assert!(f.rootfs.is_dir(), "a directory the caller made stays");
    assert_eq!(fs::read_dir(&f.rootfs).unwrap().count(), 0, "but empty");
    fs::write(f.rootfs.join("x"), b"").unwrap();
    let err = f.unpack().unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert!(f.rootfs.join("x").exists());
}

#[test]
fn corrupt_layers_are_refused_cleanly() {
    let mut gz = gzip(&tar(&[file("a", &[7u8; 100_000])]));
    let n = gz.len();
    gz[n / 2] ^= 0xff;
    let f = fixture(&[gz]);
    assert!(f.unpack().is_err());
    assert!(!f.rootfs.exists());
}

#[test]
fn a_failed_overlay_mount_leaves_nothing_in_the_bundle_and_auto_copies() {
    // More layers than one mount's options can name.
    let names: Vec<String> = (0..240).map(|i| format!("f{i}")).collect();
    let layers: Vec<Vec<u8>> = names.iter().map(|n| tar(&[file(n, n.as_bytes())])).collect();
    let f = fixture(&layers);
    let err = f.overlay(&Limits::default()).unwrap_err().to_string();
    assert!(err.contains("240 layers") && err.contains("HAKO_ROOTFS=copy"), "{err}");
    let left: Vec<_> = fs::read_dir(f.bundle()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "a failed mount left {left:?} in the bundle");
    let made = prepare_rootfs(&f.store, &f.image, &f.bundle(), &Limits::default(), RootfsMode::Auto).unwrap();
    assert_eq!(made, Rootfs::Copy);
    let left: Vec<_> = fs::read_dir(f.bundle()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec!["rootfs"], "the copy path writes only the rootfs");
    assert_eq!(fs::read(f.bundle().join("rootfs/f239")).unwrap(), b"f239");
    // The snapshots made before the mount failed are whole; prune removes them with the image.
    f.store.remove(f.image.digest.hex()).unwrap();
    assert_eq!(f.store.gc().unwrap().snapshots.len(), 240);
}
