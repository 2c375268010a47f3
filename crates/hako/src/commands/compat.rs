//! `hako compat IMAGE`: whether process isolation and VM isolation can run an image on this host (or on a
//! Windows host of `--host-os-version`), what `--isolation auto` picks, and why; the engine is
//! `hako_platform::decide`, reached through `hako_image::compat::decide_image`.

use anyhow::{Context, Result};
use hako_image::compat::{self, ResolveOptions, Resolved, Source};
use hako_image::{Platform, Store};
use hako_platform::{Date, Decision, Edition, Host, Mode, OsVersion, Policy};

use crate::cli::{CompatArgs, CompatFormat, HostEdition};

/// The exit status when neither isolation can run the image (the verdict is still printed).
pub(crate) const EXIT_CANNOT_RUN: i32 = 3;

pub(crate) fn compat(args: &CompatArgs) -> Result<i32> {
    let policy = Policy::load_default()?;
    let host = match &args.host_os_version {
        Some(text) => {
            let version: OsVersion = text.parse().with_context(|| "--host-os-version".to_string())?;
            let edition = match args.host_edition {
                HostEdition::Server => Edition::Server,
                HostEdition::Client => Edition::Client,
                HostEdition::NanoServer => Edition::NanoServer,
            };
            Host::windows(version, &Platform::host().architecture, edition)
        }
        None => Host::this_linux(),
    };
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform {
            os: host.os.clone(),
            architecture: host.architecture.clone(),
            variant: host.variant.clone(),
            os_version: host.os_version.map(|v| v.to_string()),
            ..Platform::default()
        },
    };
    let opts = ResolveOptions {
        platform,
        any_os: args.platform.is_none(),
        plain_http: if args.plain_http { Some(true) } else { None },
        ..ResolveOptions::default()
    };
    // The store is only read: one that does not exist yet is not created.
    let store = if args.store.join("images").is_dir() {
        Some(
            Store::open(&args.store)
                .context("opening the image store (choose another with --store or HAKO_IMAGE_STORE)")?,
        )
    } else {
        None
    };
    let (resolved, decision) = compat::decide_image(store.as_ref(), &args.image, &host, &policy, Date::today(), &opts)?;
    match args.format {
        CompatFormat::Json => {
            let mut v = serde_json::to_value(&decision)?;
            v["resolved"] = serde_json::to_value(&resolved)?;
            if let Some(p) = &policy.source {
                v["policy"] = serde_json::json!({ "file": p, "isolation": policy.isolation });
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        CompatFormat::Text => print_text(&resolved, &decision),
    }
    Ok(if decision.auto.is_some() { 0 } else { EXIT_CANNOT_RUN })
}

fn print_text(resolved: &Resolved, d: &Decision) {
    let img = &d.image;
    let mut platform = format!("{}/{}", img.os, img.architecture);
    if let Some(v) = &img.variant {
        platform.push('/');
        platform.push_str(v);
    }
    if let Some(v) = &img.os_version {
        platform.push(' ');
        platform.push_str(v);
    }
    if !img.os_features.is_empty() {
        platform.push_str(&format!(" +{}", img.os_features.join("+")));
    }
    let from = match resolved.source {
        Source::Store => "the store",
        Source::Registry => "the registry, no layer fetched",
    };
    println!("image:    {} ({}; from {})", resolved.reference, platform, from);
    let host = &d.host;
    let host_desc = match (&host.os_version, &host.edition, &host.kernel) {
        (Some(v), Some(e), _) => format!("windows/{} {} ({:?})", host.architecture, v, e).to_lowercase(),
        (_, _, Some(k)) => format!("{}/{} kernel {} (this host)", host.os, host.architecture, k),
        _ => format!("{}/{}", host.os, host.architecture),
    };
    println!("host:     {}", host_desc);
    if let Some(r) = &d.release {
        let end = r.end_of_support.map(|e| format!(", support ends {}", e)).unwrap_or_default();
        let base = r.base_image.as_ref().map(|b| format!(", base image {}", b)).unwrap_or_default();
        println!("release:  {} (build {}, {}{}{})", r.name, r.build, r.channel.describe(), base, end);
    }
    print_mode("process:", &d.process);
    print_mode("vm:", &d.vm);
    match d.auto {
        Some(i) => println!("auto:     {}: {}", i.as_str(), join(&d.auto_reasons)),
        None => println!("auto:     none: {}", join(&d.auto_reasons)),
    }
    for w in &d.warnings {
        println!("warning:  {} [{}]", w.message, w.code);
    }
}

fn print_mode(label: &str, m: &Mode) {
    println!("{:<9} {}: {}", label, if m.possible { "yes" } else { "no" }, join(&m.reasons));
}

fn join(reasons: &[hako_platform::Reason]) -> String {
    let parts: Vec<String> = reasons.iter().map(|r| format!("{} [{}]", r.message, r.code)).collect();
    parts.join("; ")
}
