//! `hako image run` (a container of an image in one command) and `hako image load` (images from an OCI
//! layout archive). `image run` writes an ordinary OCI bundle, `<store>/containers/<id>/` (0700: config.json
//! built from the image config and the flags, rootfs/ an overlayfs mount of the image's layer snapshots or a
//! copy of the image (`hako_image::snapshot`), and a marker file naming the container), then creates and
//! starts it through `create::run`, the code path of `hako run`. Deleting the container (`--rm`, or `hako
//! delete ID`) unmounts its root filesystem and removes that bundle too: `delete` calls [`remove_bundle`],
//! which removes a bundle only when it holds the marker of that very container. See docs/image-run.md.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hako_image::bundle::{self, RunConfig, User};
use hako_image::compat::ResolveOptions;
use hako_image::snapshot::{self, RootfsMode};
use hako_image::unpack::Limits;
use hako_image::{ImageRecord, Platform, Store, StoreError};
use hako_platform::{Date, Decision, Host, Isolation, Policy};
use hako_runtime::state::State;
use hako_runtime::ContainerId;
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::{CreateFlags, ImageRunArgs, IsolationChoice, LoadArgs, PullArgs, PullPolicy, RunArgs};

/// The file in a bundle that says `hako image run` made it for one container.
pub(crate) const MARKER: &str = "hako-image-run.json";

/// Annotations that record what the image declares but hako does not act on.
pub(crate) const ANNOTATION_IMAGE: &str = "org.hako.image";
pub(crate) const ANNOTATION_VOLUMES: &str = "org.hako.image.volumes";
pub(crate) const ANNOTATION_PORTS: &str = "org.hako.image.exposed-ports";

/// Docker's default capability set.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub(crate) fn load(store: &Store, a: &LoadArgs) -> Result<()> {
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    for r in hako_image::load::load(store, &a.archive, &platform, a.max_size)? {
        println!("loaded {} ({})", r.name, r.digest);
    }
    Ok(())
}

/// What the compatibility engine's verdict means for `hako image run --isolation requested`: the mode to
/// run, the one line that says what `auto` chose and why (none for an explicit choice), and the warnings.
/// A mode the engine says cannot run the image is refused with its reasons, explicit or not. The one place
/// the choice is made; the verdict is `hako_image::compat::decide_image`'s (see docs/compat.md).
pub(crate) fn decide_isolation(
    requested: IsolationChoice,
    name: &str,
    d: &Decision,
) -> Result<(&'static str, Option<String>, Vec<String>)> {
    let warnings = d.warnings.iter().map(|w| format!("warning: {} [{}]", w.message, w.code)).collect();
    let refuse = |mode: &str, m: &hako_platform::Mode| {
        anyhow::anyhow!(
            "image {name} cannot run with {mode} isolation on this host: {} (`hako compat {name}` explains the verdict)",
            join_reasons(&m.reasons)
        )
    };
    let (mode, why) = match requested {
        IsolationChoice::Process if !d.process.possible => return Err(refuse("process", &d.process)),
        IsolationChoice::Vm if !d.vm.possible => return Err(refuse("VM", &d.vm)),
        IsolationChoice::Process => ("process", None),
        IsolationChoice::Vm => ("vm", None),
        IsolationChoice::Auto => match d.auto {
            Some(Isolation::Process) => ("process", Some(format!("isolation auto: process for {name}, because {}", join_reasons(&d.auto_reasons)))),
            Some(Isolation::Vm) => ("vm", Some(format!("isolation auto: vm for {name}, because {}", join_reasons(&d.auto_reasons)))),
            None => bail!(
                "image {name} cannot run on this host: process isolation: {}; VM isolation: {} (`hako compat {name}` explains the verdict)",
                join_reasons(&d.process.reasons),
                join_reasons(&d.vm.reasons)
            ),
        },
    };
    Ok((mode, why, warnings))
}

/// Reasons as one line: `message [code]; ...`.
fn join_reasons(reasons: &[hako_platform::Reason]) -> String {
    let parts: Vec<String> = reasons.iter().map(|r| format!("{} [{}]", r.message, r.code)).collect();
    parts.join("; ")
}

/// A `-v SRC:DST[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Volume {
    pub(crate) source: PathBuf,
    pub(crate) destination: String,
    pub(crate) readonly: bool,
}

pub(crate) fn parse_volume(v: &str) -> Result<Volume> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => bail!("volume {v:?} is not SRC:DST[:ro|:rw]"),
    };
    if !src.starts_with('/') {
        bail!("volume {v:?}: the source must be an absolute host path (hako has no named volumes)");
    }
    if !dst.starts_with('/') || dst.split('/').any(|c| c == "..") {
        bail!("volume {v:?}: the destination must be an absolute path without `..`");
    }
    let readonly = match mode {
        "ro" => true,
        "rw" => false,
        other => bail!("volume {v:?}: mode {other:?} is not ro or rw"),
    };
    let source = fs::canonicalize(src).with_context(|| format!("volume {v:?}: source {src}"))?;
    Ok(Volume { source, destination: dst.to_string(), readonly })
}

/// `-e KEY=VALUE`, or `-e KEY` for this environment's value (dropped when it has none, as Docker does).
pub(crate) fn parse_env(e: &[String], lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in e {
        match item.split_once('=') {
            Some(("", _)) => bail!("environment variable {item:?} has no name"),
            Some(_) => out.push(item.clone()),
            None if item.is_empty() => bail!("an empty -e is not KEY or KEY=VALUE"),
            None => out.extend(lookup(item).map(|v| format!("{item}={v}"))),
        }
    }
    Ok(out)
}

/// What the container runs, resolved from the image and the flags.
pub(crate) struct Plan {
    pub(crate) id: String,
    pub(crate) image: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: String,
    pub(crate) user: User,
    pub(crate) terminal: bool,
    pub(crate) volumes: Vec<Volume>,
    pub(crate) memory: Option<u64>,
    pub(crate) cpus: Option<f64>,
    pub(crate) isolation: &'static str,
    pub(crate) image_volumes: Vec<String>,
    pub(crate) exposed_ports: Vec<String>,
}

/// The OCI runtime spec of a plan: `hako spec`'s defaults with a writable rootfs, Docker's capabilities and
/// a network namespace of its own (loopback only).
pub(crate) fn build_spec(p: &Plan) -> Value {
    let mut spec = super::spec::default_spec(false);
    let caps = json!(CAPS);
    spec["process"]["terminal"] = json!(p.terminal);
    spec["process"]["args"] = json!(p.args);
    spec["process"]["env"] = json!(p.env);
    spec["process"]["cwd"] = json!(p.cwd);
    let mut user = json!({"uid": p.user.uid, "gid": p.user.gid});
    if !p.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(p.user.additional_gids);
    }
    spec["process"]["user"] = user;
    spec["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    spec["hostname"] = json!(p.id.chars().take(63).collect::<String>());
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for v in &p.volumes {
            let mut options = vec!["rbind", "rprivate"];
            if v.readonly {
                options.push("ro");
            }
            mounts.push(json!({"destination": v.destination, "type": "bind", "source": v.source, "options": options}));
        }
    }
    if let Some(m) = p.memory {
        spec["linux"]["resources"]["memory"] = json!({"limit": m});
    }
    if let Some(c) = p.cpus {
        let period: u64 = 100_000;
        spec["linux"]["resources"]["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(hako_vm::ISOLATION_ANNOTATION.to_string(), p.isolation.to_string());
    annotations.insert(ANNOTATION_IMAGE.to_string(), p.image.clone());
    if !p.image_volumes.is_empty() {
        annotations.insert(ANNOTATION_VOLUMES.to_string(), p.image_volumes.join(","));
    }
    if !p.exposed_ports.is_empty() {
        annotations.insert(ANNOTATION_PORTS.to_string(), p.exposed_ports.join(","));
    }
    spec["annotations"] = json!(annotations);
    spec
}

fn random_id() -> Result<String> {
    let mut b = [0u8; 6];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Finds the image, pulling it as `policy` says.
fn find_or_pull(store: &Store, image: &str, policy: PullPolicy) -> Result<ImageRecord> {
    let pull = || {
        let a = PullArgs {
            image: image.to_string(),
            platform: None,
            plain_http: false,
            cert_dir: None,
            max_manifest_size: 4 << 20,
            jobs: 4,
            quiet: false,
        };
        super::image::pull(store, &a)
    };
    match (policy, store.find(image)) {
        (PullPolicy::Always, _) => pull(),
        (_, Ok(r)) => Ok(r),
        (PullPolicy::Missing, Err(StoreError::NoImage(_))) => pull(),
        (PullPolicy::Never, Err(StoreError::NoImage(_))) => bail!(
            "no image {image} in the store and --pull never forbids pulling it: load it (hako image load FILE), pull it (hako image pull {image}), or drop --pull never"
        ),
        (_, Err(e)) => Err(e.into()),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data).with_context(|| format!("writing {}", path.display()))
}

/// The marker, locked for as long as this `hako image run` lives: [`reclaim`] leaves a locked bundle alone.
type MarkerLock = nix::fcntl::Flock<fs::File>;

/// Writes the bundle and returns its marker's lock; on failure removes it.
fn write_bundle(
    store: &Store,
    record: &ImageRecord,
    dir: &Path,
    a: &ImageRunArgs,
    id: &str,
    (mode, rootfs_mode): (&'static str, RootfsMode),
    root: &Path,
) -> Result<MarkerLock> {
    let parent = dir.parent().context("bundle directory has no parent")?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("creating {}", parent.display()))?;
    fs::DirBuilder::new().mode(0o700).create(dir).with_context(|| {
        format!(
            "creating bundle {}: it exists, left by a container {id} that is gone? remove it (rm -r {}) or choose another --name",
            dir.display(),
            dir.display()
        )
    })?;
    let result = (|| {
        let marker = json!({"id": id, "image": record.name, "digest": record.digest, "root": root});
        write_private(&dir.join(MARKER), serde_json::to_string(&marker)?.as_bytes())?;
        let file = fs::File::open(dir.join(MARKER)).context("opening the bundle's marker")?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .context("locking the bundle's marker")?;
        let cfg: RunConfig = bundle::run_config(store, record)?;
        let rootfs = dir.join("rootfs");
        let made = snapshot::prepare_rootfs(store, record, dir, &Limits::default(), rootfs_mode)?;
        tracing::debug!(container = id, rootfs = ?made, "root filesystem ready");
        let args = bundle::process_args(&record.name, &cfg, a.entrypoint.as_deref(), &a.command)?;
        let user = bundle::resolve_user(&rootfs, a.user.as_deref().or(cfg.user.as_deref()).unwrap_or(""))?;
        let mut env_flags = parse_env(&a.env, |k| std::env::var(k).ok())?;
        if a.tty && !env_flags.iter().any(|e| e.starts_with("TERM=")) {
            env_flags.insert(0, "TERM=xterm".to_string());
        }
        let mut image_env = cfg.env.clone().unwrap_or_default();
        if let Some(home) = &user.home {
            if !image_env.iter().chain(&env_flags).any(|e| e.starts_with("HOME=")) {
                image_env.push(format!("HOME={home}"));
            }
        }
        let env = bundle::merge_env(&image_env, &env_flags);
        let cwd = a.workdir.clone().or(cfg.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
        if !cwd.starts_with('/') {
            bail!("working directory {cwd:?} is not absolute");
        }
        bundle::ensure_dir_in_root(&rootfs, &cwd)?;
        let volumes = a.volume.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>>>()?;
        let plan = Plan {
            id: id.to_string(),
            image: record.name.clone(),
            args,
            env,
            cwd,
            user,
            terminal: a.tty,
            volumes,
            memory: a.memory,
            cpus: a.cpus,
            isolation: mode,
            image_volumes: cfg.volumes.iter().flat_map(|v| v.keys().cloned()).collect(),
            exposed_ports: cfg.exposed_ports.iter().flat_map(|v| v.keys().cloned()).collect(),
        };
        write_private(&dir.join("config.json"), serde_json::to_string_pretty(&build_spec(&plan))?.as_bytes())?;
        Ok(lock)
    })();
    if result.is_err() {
        discard_bundle(dir);
    }
    result
}

/// Removes a bundle of `hako image run`: unmounts its overlay root filesystem first, if it has one.
fn discard_bundle(dir: &Path) {
    snapshot::release_rootfs(dir);
    let _ = fs::remove_dir_all(dir);
}

/// Points hako's own stdin at /dev/null and, with `log`, its stdout and stderr at the log, for the container
/// to inherit; returns the originals to restore.
fn redirect_stdio(stdin_null: bool, log: Option<&Path>) -> Result<Vec<(i32, std::os::fd::OwnedFd)>> {
    let mut saved = Vec::new();
    if stdin_null {
        let null = fs::File::open("/dev/null").context("opening /dev/null")?;
        nix::unistd::dup2(null.as_raw_fd(), 0).context("redirecting stdin")?;
    }
    if let Some(log) = log {
        let f = fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(log)
            .with_context(|| format!("creating {}", log.display()))?;
        use std::os::fd::AsFd;
        let originals =
            [(1, std::io::stdout().as_fd().try_clone_to_owned()), (2, std::io::stderr().as_fd().try_clone_to_owned())];
        for (fd, copy) in originals {
            saved.push((fd, copy.context("saving stdio")?));
            nix::unistd::dup2(f.as_raw_fd(), fd).context("redirecting stdio to the log")?;
        }
    }
    Ok(saved)
}

fn restore_stdio(saved: Vec<(i32, std::os::fd::OwnedFd)>) {
    for (fd, orig) in saved {
        let _ = nix::unistd::dup2(orig.as_raw_fd(), fd);
    }
}

pub(crate) fn run(store: &Store, root: &Path, a: &ImageRunArgs) -> Result<i32> {
    if a.detach && a.rm {
        bail!("--rm with --detach: hako has no daemon to remove the container when it exits; drop --rm and remove it with `hako delete ID` once it has stopped");
    }
    if a.detach && a.tty {
        bail!("--tty with --detach: hako has no daemon to hold the terminal; drop one of them");
    }
    if a.cpus.is_some_and(|c| !(c > 0.0 && c <= 1024.0)) {
        bail!("--cpus must be a number of CPUs above 0 (for example 0.5 or 2)");
    }
    // Refuse bad flags before the image is looked up or pulled.
    for v in &a.volume {
        parse_volume(v)?;
    }
    parse_env(&a.env, |_| None)?;
    let rootfs_mode = RootfsMode::from_env()?;
    let id = match &a.name {
        Some(n) => n.clone(),
        None => random_id()?,
    };
    let cid = ContainerId::parse(&id).with_context(|| format!("--name {id:?}"))?;
    let ctx = Ctx::open(root)?;
    if ctx.store.dir(&cid).exists() {
        bail!("container {id} exists: choose another --name, or remove it (hako delete --force {id})");
    }
    if a.tty {
        crate::console::require_terminal_stdin("--tty", "drop --tty")?;
    }
    let record = find_or_pull(store, &a.image, a.pull)?;
    let policy = Policy::load_default()?;
    let (_, decision) = hako_image::compat::decide_image(
        Some(store),
        &record.name,
        &Host::this_linux(),
        &policy,
        Date::today(),
        &ResolveOptions::default(),
    )?;
    let (mode, why, warnings) = decide_isolation(a.isolation, &record.name, &decision)?;
    for w in warnings {
        eprintln!("hako: {w}");
    }
    if let Some(why) = why {
        eprintln!("hako: {why}");
    }
    let dir = store.root().join(snapshot::CONTAINERS_DIR).join(&id);
    let root = fs::canonicalize(root).with_context(|| format!("state root {}", root.display()))?;
    reclaim(&store.root().join(snapshot::CONTAINERS_DIR), &ctx, &root);
    let _marker = write_bundle(store, &record, &dir, a, &id, (mode, rootfs_mode), &root)?;
    let flags = CreateFlags {
        bundle: dir.clone(),
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
    };
    let run_args = RunArgs { id: id.clone(), flags, detach: a.detach, keep: !a.rm, no_subreaper: false };
    let saved = if a.detach {
        redirect_stdio(true, Some(&dir.join("container.log")))
    } else {
        redirect_stdio(!a.interactive && !a.tty, None)
    };
    let saved = match saved {
        Ok(s) => s,
        Err(e) => {
            discard_bundle(&dir);
            return Err(e);
        }
    };
    let result = super::create::run(&ctx, &run_args);
    restore_stdio(saved);
    match result {
        Ok(code) => {
            if a.detach {
                println!("{id}");
            }
            Ok(code)
        }
        Err(e) => {
            // create failed (its state is gone) or start failed (delete --force removed it and the bundle):
            // unless a container of this id still uses this very bundle, nothing refers to it any more.
            let canonical = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            let ours = ctx.store.peek(&cid).is_ok_and(|s| s.bundle == dir || s.bundle == canonical);
            if !ours {
                discard_bundle(&dir);
            }
            Err(e)
        }
    }
}

/// Removes the bundles that a `hako image run` killed before its container existed left behind: those whose
/// marker names this state root, is not locked (no `hako image run` of it lives) and whose container does
/// not exist. Bundles of other state roots, of live runs and of existing containers are left alone.
fn reclaim(containers: &Path, ctx: &Ctx, root: &Path) {
    let Ok(entries) = fs::read_dir(containers) else { return };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(file) =
            fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(dir.join(MARKER))
        else {
            continue;
        };
        let Ok(mut locked) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let mut text = String::new();
        if locked.read_to_string(&mut text).is_err() {
            continue;
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (Some(id), Some(marker_root)) = (v["id"].as_str(), v["root"].as_str()) else { continue };
        let Ok(cid) = ContainerId::parse(id) else { continue };
        if Path::new(marker_root) != root || e.file_name().to_str() != Some(id) || ctx.store.dir(&cid).exists() {
            continue;
        }
        tracing::info!("removing bundle {} left by a hako image run that was killed", dir.display());
        discard_bundle(&dir);
    }
}

/// Called by `delete` once a container is gone: removes its bundle if `hako image run` made it for this very
/// container (the marker in the bundle names its id). Any other bundle is left alone. Whoever could write
/// the marker into a bundle directory could already write its config.json, whose hooks run as root.
pub(crate) fn remove_bundle(state: &State) -> Result<()> {
    let marker = state.bundle.join(MARKER);
    let Ok(meta) = fs::symlink_metadata(&marker) else { return Ok(()) };
    // As write_bundle leaves it: a regular file of ours, private.
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Ok(());
    }
    let data = fs::read(&marker).with_context(|| format!("reading {}", marker.display()))?;
    let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
    if v["id"].as_str() != Some(state.id.as_str()) {
        return Ok(());
    }
    snapshot::release_rootfs(&state.bundle);
    fs::remove_dir_all(&state.bundle).with_context(|| {
        format!(
            "container {} was deleted, but its bundle {} could not be removed (remove it by hand)",
            state.id,
            state.bundle.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(arch: &str, registry: &str) -> hako_platform::ImagePlatform {
        hako_platform::ImagePlatform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
            os_version: None,
            os_features: Vec::new(),
            registry: Some(registry.into()),
            repository: Some("team/app".into()),
        }
    }

    fn verdict(image: &hako_platform::ImagePlatform, policy: &str) -> Decision {
        let policy: Policy = if policy.is_empty() {
            Policy::default()
        } else {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("config.json");
            fs::write(&f, policy).unwrap();
            Policy::load(&f).unwrap()
        };
        hako_platform::decide(&Host::this_linux(), image, &policy, Date::today())
    }

    #[test]
    fn auto_follows_the_engine_and_says_why_in_one_line() {
        let arch = Host::this_linux().architecture;
        let d = verdict(&linux(&arch, "r.example"), "");
        let (mode, why, warnings) = decide_isolation(IsolationChoice::Auto, "img", &d).unwrap();
        assert_eq!(mode, "process");
        let why = why.unwrap();
        assert!(why.contains("auto") && why.contains("process") && why.contains("img") && !why.contains('\n'), "{why}");
        assert!(warnings.is_empty());
        let (mode, why, _) = decide_isolation(IsolationChoice::Vm, "img", &d).unwrap();
        assert_eq!((mode, why), ("vm", None));
        // An untrusted registry gets VM isolation under auto, and an explicit process is refused.
        let policy = r#"{"isolation": {"trustedRegistries": ["trusted.example"]}}"#;
        let d = verdict(&linux(&arch, "r.example"), policy);
        let (mode, why, _) = decide_isolation(IsolationChoice::Auto, "img", &d).unwrap();
        assert_eq!(mode, "vm");
        assert!(why.unwrap().contains("policy-untrusted"));
        let e = decide_isolation(IsolationChoice::Process, "img", &d).unwrap_err().to_string();
        assert!(
            e.contains("process isolation") && e.contains("trustedRegistries") && e.contains("hako compat img"),
            "{e}"
        );
        // refuse: neither mode.
        let policy = r#"{"isolation": {"trustedRegistries": ["trusted.example"], "untrusted": "refuse"}}"#;
        let d = verdict(&linux(&arch, "r.example"), policy);
        let e = decide_isolation(IsolationChoice::Auto, "img", &d).unwrap_err().to_string();
        assert!(e.contains("cannot run on this host") && e.contains("policy-refused"), "{e}");
        assert!(decide_isolation(IsolationChoice::Vm, "img", &d).is_err());
    }

    #[test]
    fn windows_and_foreign_arch_images_are_refused() {
        let win = hako_platform::ImagePlatform {
            os: "windows".into(),
            os_version: Some("10.0.20348.1".into()),
            ..linux("amd64", "mcr.microsoft.com")
        };
        let e = decide_isolation(IsolationChoice::Auto, "w", &verdict(&win, "")).unwrap_err().to_string();
        assert!(e.contains("windows-image-on-linux") && e.contains("Windows host"), "{e}");
        let other = linux("s390x_not", "r.example");
        let e = decide_isolation(IsolationChoice::Process, "o", &verdict(&other, "")).unwrap_err().to_string();
        assert!(e.contains("arch-mismatch") && e.contains("--platform"), "{e}");
    }

    #[test]
    fn volumes_and_env_flags_parse() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert_eq!((v.destination.as_str(), v.readonly), ("/data", true));
        assert!(!parse_volume("/tmp:/data").unwrap().readonly);
        assert!(parse_volume("named:/data").unwrap_err().to_string().contains("absolute host path"));
        assert!(parse_volume("/tmp:/data:rx").is_err());
        assert!(parse_volume("/tmp:data").is_err());
        let env =
            parse_env(&["A=1".into(), "HOME".into(), "UNSET".into()], |k| (k == "HOME").then(|| "/h".into())).unwrap();
        assert_eq!(env, vec!["A=1".to_string(), "HOME=/h".to_string()]);
        assert!(parse_env(&["=x".into()], |_| None).is_err());
    }

    #[test]
    fn spec_carries_the_plan() {
        let plan = Plan {
            id: "c1".into(),
            image: "docker.io/library/x:latest".into(),
            args: vec!["echo".into(), "hi".into()],
            env: vec!["A=1".into()],
            cwd: "/w".into(),
            user: User { uid: 5, gid: 6, additional_gids: vec![7], home: None },
            terminal: false,
            volumes: vec![Volume { source: "/src".into(), destination: "/dst".into(), readonly: true }],
            memory: Some(64 << 20),
            cpus: Some(1.5),
            isolation: "process",
            image_volumes: vec!["/data".into()],
            exposed_ports: vec!["80/tcp".into()],
        };
        let s = build_spec(&plan);
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(s.clone()).unwrap();
        assert_eq!(parsed.process().as_ref().unwrap().args().as_ref().unwrap(), &plan.args);
        assert_eq!(s["process"]["user"], json!({"uid": 5, "gid": 6, "additionalGids": [7]}));
        assert_eq!(s["root"]["readonly"], json!(false));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(s["linux"]["resources"]["cpu"], json!({"quota": 150000, "period": 100000}));
        let m = s["mounts"].as_array().unwrap().last().unwrap();
        assert_eq!(m["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(s["annotations"][ANNOTATION_PORTS], json!("80/tcp"));
        assert_eq!(s["annotations"][hako_vm::ISOLATION_ANNOTATION], json!("process"));
    }
}
