//! Style rules of the crate as tests: every Rust file starts with a `//!` comment saying what
//! lives there, and every `unsafe` block or impl is preceded by a `// SAFETY:` comment.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("readable dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().map_or(false, |e| e == "rs") {
            out.push(p);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples"] {
        if root.join(dir).is_dir() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    files
}

#[test]
fn every_file_starts_with_a_module_comment() {
    for f in all_files() {
        let text = fs::read_to_string(&f).expect("readable");
        assert!(text.starts_with("//!"), "{} does not start with a //! comment", f.display());
    }
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let mut blocks = 0;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for f in all_files().into_iter().filter(|f| f.starts_with(&src)) {
        let text = fs::read_to_string(&f).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let is_unsafe =
                code.contains("unsafe {") || code.contains("unsafe impl") || code.trim_end().ends_with("unsafe");
            if !is_unsafe || code.contains("unsafe extern") {
                continue;
            }
            blocks += 1;
            let window = &lines[i.saturating_sub(6)..i];
            assert!(
                window.iter().any(|l| l.contains("// SAFETY:")) || line.contains("// SAFETY:"),
                "{}:{}: unsafe without a preceding // SAFETY: comment",
                f.display(),
                i + 1
            );
        }
    }
    assert!(blocks >= 20, "expected the ffi module's unsafe blocks to be found, saw {}", blocks);
}
