//! Reading and writing cgroup interface files: one write(2) per value (the kernel parses each write
//! separately), errors that name the file and explain the errno, and parsers for the common formats
//! (single numbers with "max", flat keyed files such as memory.stat, nested keyed files such as io.stat).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{write_hint, CgroupError};

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|err| CgroupError::Read { path: path.to_path_buf(), err })
}

/// Reads a file that may legitimately be absent (controller not enabled, older kernel).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::Read { path: path.to_path_buf(), err }),
    }
}

/// Writes `value` to `dir/file` in a single write(2).
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let res = OpenOptions::new().write(true).open(&path).and_then(|mut f| {
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        Ok(())
    });
    res.map_err(|err| {
        let hint = write_hint(&err, file);
        CgroupError::Write { path, value: value.to_string(), err, hint }
    })
}

/// Whether `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single number; "max" is `u64::MAX`. A negative v1 value (never shown by the kernel,
/// but accepted) is treated as unlimited as well.
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    if t == "max" || t.starts_with('-') {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::BadContent {
        path: path.to_path_buf(),
        content: t.to_string(),
        problem: "expected a number or \"max\"".to_string(),
    })
}

/// Reads a single-number file; `None` when it does not exist.
pub(crate) fn read_u64_opt(path: &Path) -> Result<Option<u64>, CgroupError> {
    match read_opt(path)? {
        Some(s) => parse_u64(path, &s).map(Some),
        None => Ok(None),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events, ...). Lines whose
/// value is not a number are skipped.
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Reads a flat keyed file; empty when it does not exist.
pub(crate) fn read_flat_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(read_opt(path)?.map(|t| parse_flat_keyed(&t)).unwrap_or_default())
}

/// Parses a v2 nested keyed file (io.stat): `MAJ:MIN key=value key=value`.
pub(crate) fn parse_nested_keyed(text: &str) -> Vec<(u64, u64, BTreeMap<String, u64>)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (maj, min) = it.next()?.split_once(':')?;
            let kv = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect();
            Some((maj.parse().ok()?, min.parse().ok()?, kv))
        })
        .collect()
}

/// Parses a cpuset list such as "0-3,8,10-11".
pub(crate) fn parse_cpu_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_max() {
        let p = Path::new("/x");
        assert_eq!(parse_u64(p, "42\n").expect("n"), 42);
        assert_eq!(parse_u64(p, "max\n").expect("max"), u64::MAX);
        assert!(parse_u64(p, "lots").expect_err("bad").to_string().contains("/x"));
    }

    #[test]
    fn keyed_formats() {
        let m = parse_flat_keyed("cache 4096\nrss 8192\nbogus\nname x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["rss"], 8192);
        let io = parse_nested_keyed("254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=5\n");
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].0, io[0].1), (254, 0));
        assert_eq!(io[0].2["wbytes"], 20);
        assert_eq!(io[1].2.len(), 1);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert!(parse_cpu_list("\n").is_empty());
    }

    #[test]
    fn write_to_a_missing_file_names_it_and_explains() {
        let err = write(Path::new("/nonexistent-hako-dir"), "memory.max", "1").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent-hako-dir/memory.max"), "{msg}");
        assert!(msg.contains("controller is not enabled"), "{msg}");
    }
}
