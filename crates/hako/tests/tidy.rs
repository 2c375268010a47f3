//! The invariants ARCHITECTURE.md states, as tests: which files may hold `unsafe`, which may print,
//! and which crates may depend on which. The lists of files are read from ARCHITECTURE.md itself, so
//! the document and the code cannot drift apart silently.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Every `.rs` file under `crates/*/src`, relative to the workspace root.
fn sources() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).expect("readable dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = workspace();
    let mut files = Vec::new();
    for krate in fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            walk(&src, &mut files);
        }
    }
    let mut rel: Vec<String> =
        files.iter().map(|p| p.strip_prefix(&root).expect("under root").to_string_lossy().into_owned()).collect();
    rel.sort();
    assert!(rel.len() > 50, "found only {} source files", rel.len());
    rel
}

/// The lines of `text` that are code: comments and the text of doc comments are left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")).map(|(i, l)| (i + 1, l))
}

/// The backquoted `crates/...` paths of the ARCHITECTURE.md bullet that starts with `bullet`.
fn listed(bullet: &str) -> BTreeSet<String> {
    let doc = fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = doc.find(bullet).unwrap_or_else(|| panic!("ARCHITECTURE.md has no bullet {bullet:?}"));
    let rest = &doc[start..];
    let end = rest[1..].find("\n- ").map_or(rest.len(), |i| i + 1);
    rest[..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.starts_with("crates/") && t.contains("/src"))
        .map(str::to_string)
        .collect()
}

fn allowed(file: &str, list: &BTreeSet<String>) -> bool {
    list.iter().any(|entry| if entry.ends_with('/') { file.starts_with(entry.as_str()) } else { file == entry })
}

#[test]
fn unsafe_appears_only_in_the_files_architecture_md_lists() {
    let list = listed("- **unsafe:**");
    assert!(list.len() > 5, "ARCHITECTURE.md's unsafe list was not found: {list:?}");
    let mut found = BTreeSet::new();
    let mut offenders = Vec::new();
    for file in sources() {
        let text = fs::read_to_string(workspace().join(&file)).expect("read source");
        for (n, line) in code_lines(&text) {
            let has = ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"].iter().any(|k| line.contains(k))
                || line.trim_end().ends_with("unsafe");
            if has {
                found.insert(file.clone());
                if !allowed(&file, &list) {
                    offenders.push(format!("{file}:{n}: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside the files ARCHITECTURE.md allows (move it to the crate's sys module, use nix, or list the file \
         with a reason):\n{}",
        offenders.join("\n")
    );
    let stale: Vec<&String> = list.iter().filter(|f| !found.contains(*f)).collect();
    assert!(stale.is_empty(), "ARCHITECTURE.md lists files that no longer hold unsafe: {stale:?}");
}

/// System calls and libc helpers that nix wraps (in the features the workspace enables): code calls nix for
/// them, and `unsafe` stays for what nix lacks (issue: "the sys modules shrink to what nix truly lacks").
/// `kill` is not here: nix's `Signal` has no real-time signals, which `hako kill` must send.
const NIX_WRAPS: &[&str] = &[
    "libc::flock(",
    "libc::openat(",
    "libc::SYS_openat2",
    "libc::open_how",
    "libc::pivot_root(",
    "libc::SYS_pivot_root",
    "libc::memfd_create(",
    "libc::SYS_memfd_create",
    "libc::F_ADD_SEALS",
    "libc::mount(",
    "libc::umount2(",
    "libc::unshare(",
    "libc::setns(",
    "libc::dup2(",
    "libc::dup3(",
    "libc::fcntl(",
    "libc::poll(",
    "libc::pipe2(",
    "libc::setsid(",
    "libc::umask(",
    "libc::sync(",
    "libc::reboot(",
    "libc::socket(",
    "libc::if_nametoindex(",
    "libc::clock_settime(",
    "libc::getrlimit(",
    "libc::setrlimit(",
    "libc::major(",
    "libc::minor(",
    "libc::chdir(",
    "libc::fchdir(",
    "libc::chroot(",
    "libc::sethostname(",
    "libc::setgroups(",
    "libc::waitpid(",
    "libc::PR_SET_PDEATHSIG",
    "libc::PR_SET_CHILD_SUBREAPER",
    "libc::PR_SET_NO_NEW_PRIVS",
    "libc::PR_SET_THP_DISABLE",
    "libc::PR_SET_KEEPCAPS",
    "libc::copy_file_range(",
    "libc::personality(",
    "libc::sigprocmask(",
];

#[test]
fn nix_is_used_where_it_wraps_the_call() {
    let mut offenders = Vec::new();
    for file in sources() {
        // The Windows backend calls the Windows API; nix is for Unix.
        if file.starts_with("crates/hako-hcs/") {
            continue;
        }
        let text = fs::read_to_string(workspace().join(&file)).expect("read source");
        for (n, line) in code_lines(&text) {
            if let Some(call) = NIX_WRAPS.iter().find(|c| line.contains(*c)) {
                offenders.push(format!("{file}:{n}: {call}: {}", line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "raw libc where nix wraps the call (use nix):\n{}", offenders.join("\n"));
}

#[test]
fn only_process_entry_points_print() {
    let list = listed("- **Printing:**");
    assert!(list.contains("crates/hako/src/"), "ARCHITECTURE.md's printing list was not found: {list:?}");
    let mut offenders = Vec::new();
    for file in sources() {
        if allowed(&file, &list) {
            continue;
        }
        let text = fs::read_to_string(workspace().join(&file)).expect("read source");
        for (n, line) in code_lines(&text) {
            if ["print!(", "println!(", "eprint!(", "eprintln!(", "dbg!("].iter().any(|m| line.contains(m)) {
                offenders.push(format!("{file}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "printing outside a process's entry point (return an error or log with tracing instead):\n{}",
        offenders.join("\n")
    );
}

/// The normal (not dev or build) dependencies of every workspace crate, from `cargo metadata`.
fn dependencies() -> Vec<(String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(workspace())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_string())
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn crate_dependencies_point_the_way_architecture_md_says() {
    let deps = dependencies();
    let of = |name: &str| -> &BTreeSet<String> {
        &deps.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no crate {name}")).1
    };
    let hako_deps = |name: &str| -> Vec<&String> { of(name).iter().filter(|d| d.starts_with("hako")).collect() };
    let proto: Vec<&String> = of("hako-proto").iter().collect();
    assert_eq!(
        proto,
        ["serde", "serde_json", "thiserror"],
        "hako-proto depends on serde, serde_json and thiserror only"
    );
    assert!(
        hako_deps("hako-runtime").is_empty(),
        "hako-runtime depends on no other hako crate: {:?}",
        of("hako-runtime")
    );
    assert!(hako_deps("hako-cgroups").is_empty(), "hako-cgroups stands alone: {:?}", of("hako-cgroups"));
    assert_eq!(
        hako_deps("hako-hcs"),
        ["hako-platform"],
        "hako-hcs depends on no hako crate but hako-platform (rustc 1.63): {:?}",
        of("hako-hcs")
    );
    let platform: Vec<&String> = of("hako-platform").iter().collect();
    assert_eq!(
        platform,
        ["serde", "serde_json", "thiserror"],
        "hako-platform (the compatibility engine, rustc 1.63) depends on serde, serde_json and thiserror only"
    );
    assert!(
        of("hako-image").contains("hako-platform"),
        "hako-image selects Windows platforms with hako-platform's rules, not a copy of them"
    );
    for (name, d) in &deps {
        if d.contains("hako-platform") {
            assert!(
                ["hako", "hako-hcs", "hako-image"].contains(&name.as_str()),
                "{name} depends on hako-platform: only hako, hako-hcs and hako-image do (ARCHITECTURE.md)"
            );
        }
    }
    assert!(!of("hako-vm").contains("hako-linux"), "hako-vm never builds a container itself");
    for (name, d) in &deps {
        if name != "hako" {
            assert!(!d.contains("anyhow"), "{name} uses anyhow: only the binary does");
        }
    }
}
