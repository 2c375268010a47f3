//! `hako image ...`: pull, list, inspect, remove, prune and unpack images (crate `hako-image`); `load` and
//! `run` live in `image_run.rs`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::{Context, Result};
use hako_image::unpack::{self, Limits};
use hako_image::{Event, ImageRecord, Platform, Progress, PullOptions, Reference, Store};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::{Format, ImageArgs, ImageCommand, ImageLsArgs, PullArgs, UnpackArgs};

/// Runs `hako image ...`; returns the exit code (a container's, for `run`). `root` is the container state root.
pub(crate) fn image(args: &ImageArgs, root: &std::path::Path) -> Result<i32> {
    let store = Store::open(&args.store)
        .context("opening the image store (choose another with --store or HAKO_IMAGE_STORE)")?;
    let store = &store;
    match &args.command {
        ImageCommand::Run(a) => super::image_run::run(store, root, a),
        ImageCommand::Load(a) => super::image_run::load(store, a).map(|_| 0),
        ImageCommand::Pull(a) => {
            let record = pull(store, a)?;
            println!("{}", record.digest);
            Ok(0)
        }
        ImageCommand::Ls(a) => ls(store, a).map(|_| 0),
        ImageCommand::Inspect(a) => inspect(store, &a.image).map(|_| 0),
        ImageCommand::Rm(a) => rm(store, &a.images).map(|_| 0),
        ImageCommand::Prune => {
            let r = store.gc()?;
            println!(
                "removed {} blobs and {} layer snapshots, freed {}",
                r.blobs.len(),
                r.snapshots.len(),
                human(r.bytes)
            );
            Ok(0)
        }
        ImageCommand::Unpack(a) => unpack_cmd(store, a).map(|_| 0),
    }
}

fn short(d: &hako_image::Digest) -> &str {
    &d.hex()[..12]
}

fn human(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Progress as bars on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn event(&self, e: Event) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match e {
            Event::Start { digest, size, offset } => {
                let bar = bars.entry(digest.to_string()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(size));
                    b.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    b.set_prefix(short(&digest).to_string());
                    b
                });
                bar.set_position(offset);
            }
            Event::Bytes { digest, bytes } => {
                if let Some(b) = bars.get(&digest.to_string()) {
                    b.inc(bytes);
                }
            }
            Event::Done { digest } => {
                if let Some(b) = bars.get(&digest.to_string()) {
                    b.finish_with_message("done");
                }
            }
            Event::Exists { digest, size } => {
                let b = self.multi.add(ProgressBar::new(size));
                b.set_prefix(short(&digest).to_string());
                b.set_style(
                    ProgressStyle::with_template("{prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.finish_with_message("already stored");
            }
            Event::Retry { digest, offset, error } => {
                if let Some(b) = bars.get(&digest.to_string()) {
                    b.set_message(format!("resuming at {offset} ({error})"));
                }
            }
        }
    }
}

/// Progress as plain lines on stderr (not a terminal).
struct Lines;

impl Progress for Lines {
    fn event(&self, e: Event) {
        match e {
            Event::Start { digest, size, offset } if offset > 0 => {
                eprintln!("{}: resuming at {offset} of {size} bytes", short(&digest))
            }
            Event::Start { digest, size, .. } => eprintln!("{}: downloading {size} bytes", short(&digest)),
            Event::Bytes { .. } => {}
            Event::Done { digest } => eprintln!("{}: done", short(&digest)),
            Event::Exists { digest, .. } => eprintln!("{}: already stored", short(&digest)),
            Event::Retry { digest, offset, error } => {
                eprintln!("{}: connection dropped at {offset} bytes ({error}); resuming", short(&digest))
            }
        }
    }
}

/// Pulls with progress on stderr; returns the record (the caller prints what it wants on stdout).
pub(crate) fn pull(store: &Store, a: &PullArgs) -> Result<ImageRecord> {
    let reference = Reference::parse(&a.image)?;
    let mut opts =
        PullOptions { max_document_bytes: a.max_manifest_size, jobs: a.jobs.into(), ..PullOptions::default() };
    if let Some(p) = &a.platform {
        opts.platform = Platform::parse(p)?;
    }
    if a.plain_http {
        opts.plain_http = Some(true);
    }
    opts.cert_dir = a.cert_dir.clone();
    let record = if a.quiet {
        hako_image::pull(store, &reference, &opts, &hako_image::Quiet)?
    } else if std::io::stderr().is_terminal() {
        let bars = Bars { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()) };
        hako_image::pull(store, &reference, &opts, &bars)?
    } else {
        hako_image::pull(store, &reference, &opts, &Lines)?
    };
    if !a.quiet {
        let foreign = record.layers.iter().filter(|l| l.is_foreign()).count();
        let foreign = if foreign > 0 {
            format!(", {foreign} of them foreign (non-distributable) and not downloaded")
        } else {
            String::new()
        };
        eprintln!(
            "pulled {} ({}, {} layers{foreign}, {})",
            record.name,
            record.platform,
            record.layers.len(),
            human(record.size)
        );
    }
    Ok(record)
}

fn ls(store: &Store, a: &ImageLsArgs) -> Result<()> {
    let records = store.records()?;
    if a.quiet {
        for r in &records {
            println!("{}", r.name);
        }
        return Ok(());
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&records)?),
        Format::Table => {
            let w = records.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
            println!("{:w$}  {:12}  {:16}  {:>9}  LAYERS", "NAME", "DIGEST", "PLATFORM", "SIZE");
            for r in &records {
                println!(
                    "{:w$}  {:12}  {:16}  {:>9}  {}",
                    r.name,
                    short(&r.digest),
                    r.platform.to_string(),
                    human(r.size),
                    r.layers.len()
                );
            }
        }
    }
    Ok(())
}

fn inspect(store: &Store, name: &str) -> Result<()> {
    let record: ImageRecord = store.find(name)?;
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&record.config.digest)?)
        .with_context(|| format!("image {}: its config blob is not JSON", record.name))?;
    let mut v = serde_json::to_value(&record)?;
    v["imageConfig"] = config;
    // What a user of a foreign image needs: each layer's size, whether it is foreign (non-distributable, never
    // downloaded) and stored, and whether this host can unpack the image.
    let layers: Vec<serde_json::Value> = record
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "digest": l.digest,
                "mediaType": l.media_type,
                "size": l.size,
                "foreign": l.is_foreign(),
                "stored": store.has_blob(&l.digest, l.size),
                "urls": l.urls,
            })
        })
        .collect();
    v["layerDetails"] = serde_json::Value::Array(layers);
    v["runsHere"] = match hako_image::foreign::check_host(&record) {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(e) => serde_json::json!({"ok": false, "why": e.to_string()}),
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn rm(store: &Store, names: &[String]) -> Result<()> {
    let mut first_err = None;
    for n in names {
        match store.remove(n) {
            Ok(r) => println!("removed {} ({})", r.name, r.digest),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let r = store.gc()?;
    if r.bytes > 0 {
        println!("freed {} ({} blobs)", human(r.bytes), r.blobs.len());
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn unpack_cmd(store: &Store, a: &UnpackArgs) -> Result<()> {
    let record = store.find(&a.image)?;
    let limits = Limits { max_bytes: a.max_size, max_entries: a.max_files };
    // Hold the store's shared lock so a concurrent prune cannot take the blobs away mid-unpack.
    let _lock = store.lock(false)?;
    unpack::unpack_image(store, &record, &a.dir, &limits)?;
    println!("{}", a.dir.display());
    Ok(())
}
