//! Loading images from an OCI image layout archive (what `podman save --format oci-archive`, `docker save`
//! since 25.0 and `skopeo copy ... oci-archive:` write; plain tar or gzip), with no registry.
//!
//! The archive is hostile input and nothing in it is unpacked to a path: hako reads `index.json` (at most
//! 4 MiB) and streams every `blobs/sha256/<hex>` entry into the store's ingest directory, hashing it, and
//! keeps it only when its content matches its name. Then each image of the index (a manifest, or an index
//! from which this host's platform is chosen) is checked: its manifest, config and layers must all be in
//! the store with the sizes the descriptors state. Records are written only once every image is checked,
//! so a failed load records nothing, and the blobs it added are removed again.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::manifest::{self, ImageConfig, Index, Manifest};
use crate::platform::{self, Platform};
use crate::reference::Reference;
use crate::store::{now, ImageRecord, Store, StoreError};

/// The largest index.json, manifest or nested index accepted.
const MAX_DOCUMENT: u64 = 4 << 20;

/// The annotation containerd and `docker save` put the full image name in.
pub const NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation for the reference (a tag, or a full name as podman writes it).
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Why a load failed. The store holds no record and no blob of it afterwards.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The archive cannot be read.
    #[error("archive {path}: {source}")]
    Io {
        /// The archive.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The archive is not an OCI image layout.
    #[error("archive {path} is not an OCI image layout: {why} (save the image as an OCI archive: `podman save --format oci-archive`, `docker save` 25.0 or later, `skopeo copy IMAGE oci-archive:FILE`)")]
    NotLayout {
        /// The archive.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// A blob does not match its name.
    #[error("archive {path}: blob {name} does not match its digest (it hashes to {actual}); the archive is damaged or forged")]
    BadBlob {
        /// The archive.
        path: PathBuf,
        /// The entry's digest name.
        name: String,
        /// What it hashes to.
        actual: Digest,
    },
    /// A document of the layout is not what the image spec describes.
    #[error("archive {path}: {what}: {why}")]
    BadDocument {
        /// The archive.
        path: PathBuf,
        /// Which document.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// The archive holds more than the limit.
    #[error(
        "archive {path}: it holds more than {limit} bytes of blobs (--max-size raises the limit for a trusted archive)"
    )]
    TooLarge {
        /// The archive.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads every image of the OCI layout archive `path` into `store` and returns their records. `platform`
/// picks one manifest where an image is a multi-platform index; `max_bytes` bounds the blobs' total size
/// (after decompression of a gzipped archive).
pub fn load(store: &Store, path: &Path, platform: &Platform, max_bytes: u64) -> Result<Vec<ImageRecord>, LoadError> {
    let mut added = Vec::new();
    let result = (|| {
        let _lock = store.lock(false)?;
        let index = ingest(store, path, max_bytes, &mut added)?;
        let records = images(store, path, &index, platform)?;
        for r in &records {
            store.put_record(r)?;
        }
        Ok(records)
    })();
    if result.is_err() {
        forget(store, &added);
    }
    result
}

/// Removes the blobs a failed load added that no record uses (under the store's exclusive lock, so no pull
/// or load is between storing a blob and recording it).
fn forget(store: &Store, added: &[Digest]) {
    if added.is_empty() {
        return;
    }
    let Ok(_lock) = store.lock(true) else { return };
    let keep: BTreeSet<Digest> = store.records().unwrap_or_default().iter().flat_map(|r| r.blobs()).collect();
    for d in added.iter().filter(|d| !keep.contains(d)) {
        let _ = std::fs::remove_file(store.blob_path(d));
    }
}

fn open(path: &Path) -> Result<Box<dyn Read>, LoadError> {
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let gzip = r.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip { Box::new(flate2::read::MultiGzDecoder::new(r)) } else { Box::new(r) })
}

/// Streams the archive: keeps index.json, stores each blob whose content matches its name.
fn ingest(store: &Store, path: &Path, max_bytes: u64, added: &mut Vec<Digest>) -> Result<Vec<u8>, LoadError> {
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let mut archive = tar::Archive::new(open(path)?);
    let mut index = None;
    let mut total = 0u64;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./");
        if name == "index.json" {
            let mut data = Vec::new();
            (&mut entry).take(MAX_DOCUMENT + 1).read_to_end(&mut data).map_err(io)?;
            if data.len() as u64 > MAX_DOCUMENT {
                return Err(LoadError::NotLayout { path: path.to_path_buf(), why: "index.json is over 4 MiB".into() });
            }
            index = Some(data);
            continue;
        }
        let Some(hex) = name.strip_prefix("blobs/sha256/") else { continue };
        let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else { continue };
        let size = entry.header().size().map_err(io)?;
        total = total.saturating_add(size);
        if total > max_bytes {
            return Err(LoadError::TooLarge { path: path.to_path_buf(), limit: max_bytes });
        }
        if store.has_blob(&digest, size) {
            continue;
        }
        let _ingest = store.lock_ingest(&digest)?;
        if store.has_blob(&digest, size) {
            continue;
        }
        let partial = store.partial_path(&digest);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&partial)?;
            let mut h = Hasher::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n])?;
            }
            f.sync_all()?;
            Ok(h.finish())
        })();
        let actual = match written {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(io(e));
            }
        };
        if actual != digest {
            let _ = std::fs::remove_file(&partial);
            return Err(LoadError::BadBlob { path: path.to_path_buf(), name: digest.to_string(), actual });
        }
        store.commit_partial(&digest)?;
        added.push(digest);
    }
    index.ok_or_else(|| LoadError::NotLayout { path: path.to_path_buf(), why: "it has no index.json".into() })
}

/// A small document of the store, checked against its descriptor's size.
fn document(store: &Store, path: &Path, d: &manifest::Descriptor, what: &str) -> Result<serde_json::Value, LoadError> {
    let bad = |why: String| LoadError::BadDocument { path: path.to_path_buf(), what: what.to_string(), why };
    if d.size > MAX_DOCUMENT {
        return Err(bad(format!("{} is {} bytes, over the limit of 4 MiB", d.digest, d.size)));
    }
    if !store.has_blob(&d.digest, d.size) {
        return Err(bad(format!("blob {} ({} bytes) is not in the archive", d.digest, d.size)));
    }
    serde_json::from_slice(&store.read_blob(&d.digest)?).map_err(|e| bad(e.to_string()))
}

/// The image name a descriptor of index.json carries.
fn image_name(path: &Path, d: &manifest::Descriptor, i: usize) -> Result<String, LoadError> {
    let candidate = d.annotations.get(NAME_ANNOTATION).or_else(|| {
        d.annotations.get(REF_ANNOTATION).filter(|r| r.contains('/') || r.contains(':') && !r.starts_with(':'))
    });
    let Some(name) = candidate else {
        return Err(LoadError::BadDocument {
            path: path.to_path_buf(),
            what: format!("index.json image {i}"),
            why: format!("it has no full image name ({NAME_ANNOTATION}, or {REF_ANNOTATION} naming a repository); save the image by name, not by id"),
        });
    };
    Reference::parse(name).map(|r| r.to_string()).map_err(|e| LoadError::BadDocument {
        path: path.to_path_buf(),
        what: format!("index.json image {i}"),
        why: e.to_string(),
    })
}

/// Checks every image of index.json and builds its record.
fn images(store: &Store, path: &Path, index: &[u8], wanted: &Platform) -> Result<Vec<ImageRecord>, LoadError> {
    let bad = |what: &str, why: String| LoadError::BadDocument { path: path.to_path_buf(), what: what.into(), why };
    let index: Index = serde_json::from_slice(index).map_err(|e| bad("index.json", e.to_string()))?;
    if index.manifests.is_empty() {
        return Err(bad("index.json", "it lists no image".into()));
    }
    let mut out = Vec::new();
    for (i, top) in index.manifests.iter().enumerate() {
        let name = image_name(path, top, i)?;
        let mut chosen = top.clone();
        let mut index_digest = None;
        let mut value = document(store, path, &chosen, &format!("image {name}"))?;
        if manifest::is_index(&chosen.media_type, &value) {
            let nested: Index = serde_json::from_value(value).map_err(|e| bad(&name, e.to_string()))?;
            let candidates: Vec<Option<Platform>> = nested.manifests.iter().map(|m| m.platform.clone()).collect();
            let k = platform::select(&candidates, wanted).map_err(|e| bad(&name, e.to_string()))?;
            index_digest = Some(chosen.digest.clone());
            chosen = nested.manifests[k].clone();
            value = document(store, path, &chosen, &format!("image {name}"))?;
            if manifest::is_index(&chosen.media_type, &value) {
                return Err(bad(&name, "an index names another index as a platform's manifest".into()));
            }
        }
        let man: Manifest =
            serde_json::from_value(value).map_err(|e| bad(&format!("image {name} manifest"), e.to_string()))?;
        if man.schema_version != 2 {
            return Err(bad(
                &format!("image {name} manifest"),
                format!("schemaVersion is {}, not 2", man.schema_version),
            ));
        }
        let config_value = document(store, path, &man.config, &format!("image {name} config"))?;
        let config: ImageConfig =
            serde_json::from_value(config_value).map_err(|e| bad(&format!("image {name} config"), e.to_string()))?;
        if !config.rootfs.diff_ids.is_empty() && config.rootfs.diff_ids.len() != man.layers.len() {
            return Err(bad(
                &format!("image {name} config"),
                format!("it lists {} layers, the manifest {}", config.rootfs.diff_ids.len(), man.layers.len()),
            ));
        }
        for l in &man.layers {
            if !store.has_blob(&l.digest, l.size) {
                return Err(bad(
                    &format!("image {name}"),
                    format!("layer {} ({} bytes) is not in the archive", l.digest, l.size),
                ));
            }
        }
        let platform = config.platform_with(chosen.platform.clone());
        out.push(ImageRecord {
            name,
            digest: chosen.digest.clone(),
            index_digest,
            media_type: man.media_type.clone().unwrap_or_else(|| chosen.media_type.clone()),
            platform,
            config: man.config.clone(),
            size: man.layers.iter().map(|l| l.size).sum(),
            layers: man.layers,
            pulled: now(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A layout archive: one image with one (tiny) layer, named by `annotations`, optionally gzipped and
    /// with the layer's bytes changed after its digest was taken.
    fn archive(dir: &Path, annotations: serde_json::Value, gzip: bool, forge: bool) -> PathBuf {
        let path = dir.join(format!("archive-{}", Digest::of(format!("{annotations}{gzip}{forge}").as_bytes()).hex()));
        let mut layer_tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        layer_tar.append_data(&mut h, "hello", &b"hi\n"[..]).unwrap();
        let layer = layer_tar.into_inner().unwrap();
        let config = serde_json::json!({"os": "linux", "architecture": Platform::host().architecture,
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]}})
        .to_string();
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(config.as_bytes()), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::of(&layer), "size": layer.len()}]})
        .to_string();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": manifest::OCI_MANIFEST,
            "digest": Digest::of(manifest.as_bytes()), "size": manifest.len(), "annotations": annotations}]})
        .to_string();
        let mut out = tar::Builder::new(Vec::new());
        let mut add = |name: String, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.append_data(&mut h, name, data).unwrap();
        };
        let mut stored_layer = layer.clone();
        if forge {
            stored_layer[0] ^= 1;
        }
        add(format!("blobs/sha256/{}", Digest::of(&layer).hex()), &stored_layer);
        add(format!("blobs/sha256/{}", Digest::of(config.as_bytes()).hex()), config.as_bytes());
        add(format!("blobs/sha256/{}", Digest::of(manifest.as_bytes()).hex()), manifest.as_bytes());
        add("index.json".into(), index.as_bytes());
        let data = out.into_inner().unwrap();
        let data = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&data).unwrap();
            gz.finish().unwrap()
        } else {
            data
        };
        std::fs::write(&path, data).unwrap();
        path
    }

    fn blobs(store: &Store) -> usize {
        std::fs::read_dir(store.root().join("blobs/sha256")).unwrap().count()
    }

    #[test]
    fn a_gzipped_layout_loads_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let a = archive(dir.path(), serde_json::json!({NAME_ANNOTATION: "localhost/t:1"}), true, false);
        let records = load(&store, &a, &Platform::host(), 1 << 30).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(store.find("localhost/t:1").unwrap().layers.len(), 1);
        assert_eq!(blobs(&store), 3);
    }

    #[test]
    fn failures_record_nothing_and_keep_no_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let cases = [
            (archive(dir.path(), serde_json::json!({REF_ANNOTATION: "latest"}), false, false), "no full image name"),
            (archive(dir.path(), serde_json::json!({NAME_ANNOTATION: "localhost/t:1"}), false, true), "does not match"),
        ];
        for (a, msg) in cases {
            let e = load(&store, &a, &Platform::host(), 1 << 30).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
            assert!(store.records().unwrap().is_empty());
            assert_eq!(blobs(&store), 0, "{e}");
        }
        let a = archive(dir.path(), serde_json::json!({NAME_ANNOTATION: "localhost/t:1"}), false, false);
        let e = load(&store, &a, &Platform::host(), 10).unwrap_err().to_string();
        assert!(e.contains("--max-size"), "{e}");
        std::fs::write(&a, b"not a tar at all, far too short").unwrap();
        assert!(load(&store, &a, &Platform::host(), 1 << 30).is_err());
        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, tar::Builder::new(Vec::new()).into_inner().unwrap()).unwrap();
        let e = load(&store, &empty, &Platform::host(), 1 << 30).unwrap_err().to_string();
        assert!(e.contains("no index.json") && e.contains("oci-archive"), "{e}");
        assert_eq!(blobs(&store), 0);
    }
}
