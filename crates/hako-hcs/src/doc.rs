//! `hako hcs-doc BUNDLE`: translate a bundle and print the HCS documents hako would submit,
//! as JSON (for diffing) or as a readable summary, on any host.

use std::fmt::Write as _;
use std::path::Path;

use crate::compat::Verdict;
use crate::error::HcsError;
use crate::oci::Bundle;
use crate::osversion::{builds, OsVersion};
use crate::schema::{ComputeSystem, HostedSystemDocument, SCSI_CONTROLLER_GUIDS};
use crate::translate::{self, HcsPlan, InitProcess, Isolation, StdioPipes, TranslateOptions};

/// The host build `hcs-doc` assumes off Windows when none is given: Windows Server 2022.
pub const DEFAULT_ASSUMED_HOST_BUILD: u32 = builds::LTSC2022;

/// Output format of `hako hcs-doc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DocFormat {
    /// The plan with every document, pretty-printed JSON.
    #[default]
    Json,
    /// A readable summary.
    Text,
}

impl std::str::FromStr for DocFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(DocFormat::Json),
            "text" => Ok(DocFormat::Text),
            _ => Err(format!("format {:?} is not json or text", s)),
        }
    }
}

/// Options of `hako hcs-doc`.
#[derive(Debug, Clone, Default)]
pub struct HcsDocOptions {
    /// `--format json|text` (default json).
    pub format: DocFormat,
    /// `--id`: the container id (default: the bundle directory's name, or `hcs-doc`).
    pub container_id: Option<String>,
    /// `--owner`: the HCS owner (default `hako`).
    pub owner: Option<String>,
    /// `--host-build`: the host build to write documents for (default: the real host on
    /// Windows, [`DEFAULT_ASSUMED_HOST_BUILD`] elsewhere).
    pub host_build: Option<u32>,
    /// `--host-revision`: the host UBR (default: the real one on Windows, else 0).
    pub host_revision: Option<u32>,
    /// `--host-processors`: logical processors of the host, to lower processor counts above it.
    pub host_processors: Option<u32>,
    /// `--isolation process|hyperv`: override what the spec says (a spec with `windows.hyperv`
    /// cannot be forced to process isolation).
    pub isolation: Option<Isolation>,
    /// `--image-os-version 10.0.X.Y`: the image's `os.version`, for the compatibility verdict
    /// (also read from the `hako.image.os.version` annotation).
    pub image_os_version: Option<OsVersion>,
    /// `--lcow-boot-files DIR`: the LCOW kernel/initrd folder (default
    /// `C:\Program Files\Linux Containers`; the annotation
    /// `io.microsoft.virtualmachine.bootfilesrootpath` wins).
    pub lcow_boot_files: Option<String>,
    /// `--assume-host`: do not inspect this host even on Windows (no registry, no layer folder
    /// probes, stand-in layer ids): the documents are those of the assumed host, as off Windows.
    pub assume_host: bool,
}

fn default_id(bundle: &Path) -> String {
    let name = bundle
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| bundle.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+') { c } else { '-' })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "hcs-doc".to_string()
    } else {
        clean
    }
}

/// The translate options `hcs_doc` uses for `opts` on this host.
pub fn translate_options(bundle: &Path, opts: &HcsDocOptions) -> TranslateOptions {
    let id = opts.container_id.clone().unwrap_or_else(|| default_id(bundle));
    let mut t = TranslateOptions::for_host_build(&id, opts.host_build.unwrap_or(DEFAULT_ASSUMED_HOST_BUILD));
    host_defaults(&mut t, opts);
    if let Some(owner) = &opts.owner {
        t.owner = owner.clone();
    }
    if let Some(rev) = opts.host_revision {
        t.host.version.revision = rev;
    }
    if opts.host_processors.is_some() {
        t.host_processors = opts.host_processors;
    }
    t.isolation = opts.isolation;
    t.image_os_version = opts.image_os_version;
    if let Some(dir) = &opts.lcow_boot_files {
        t.lcow_boot_files = dir.clone();
    }
    t.stdio = StdioPipes::default();
    t
}

#[cfg(windows)]
fn host_defaults(t: &mut TranslateOptions, opts: &HcsDocOptions) {
    if opts.assume_host {
        return;
    }
    // Without the Containers feature vmcompute.dll is missing: keep the stand-in ids then.
    if crate::ffi::name_to_guid("hako").is_ok() {
        t.layer_id = crate::ffi::name_to_guid;
        t.layer_id_is_real = true;
    }
    t.probe = Some(crate::host::path_exists);
    t.host_processors = crate::host::logical_processors();
    if opts.host_build.is_none() {
        if let Ok(host) = crate::host::read_host_info() {
            t.host = host;
            t.host_measured = true;
        }
    }
}

#[cfg(not(windows))]
fn host_defaults(_t: &mut TranslateOptions, _opts: &HcsDocOptions) {}

/// `hako hcs-doc BUNDLE`: reads `BUNDLE/config.json`, translates it for the host described
/// by `opts` and returns the documents hako would submit (`DocFormat::Json`: the whole plan,
/// pretty-printed, documents in HCS's PascalCase; `DocFormat::Text`: a summary).
///
/// Works on every host. Off Windows (and on Windows with `assume_host`) the host is assumed (build [`DEFAULT_ASSUMED_HOST_BUILD`]
/// unless `host_build` says otherwise), layer ids are stand-ins and the utility VM image is
/// assumed in the base layer; the output's `warnings` say so.
pub fn hcs_doc(bundle: &Path, opts: &HcsDocOptions) -> Result<String, HcsError> {
    let loaded = Bundle::load(bundle)?;
    let topts = translate_options(bundle, opts);
    let plan = translate::translate(&loaded, &topts).map_err(|error| HcsError::spec(bundle.to_path_buf(), error))?;
    match opts.format {
        DocFormat::Json => serde_json::to_string_pretty(&plan)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|source| HcsError::Serialize { bundle: bundle.to_path_buf(), source }),
        DocFormat::Text => Ok(render_text(&plan)),
    }
}

/// The readable summary of a plan.
pub fn render_text(plan: &HcsPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "isolation: {}", plan.isolation);
    let _ = writeln!(
        out,
        "host: build {}, revision {}{}",
        builds::describe(plan.host.build),
        plan.host.revision,
        if plan.host.measured { "" } else { " (assumed)" }
    );
    let _ = writeln!(out, "schema: {}", plan.schema_version);
    if let Some(v) = &plan.image_os_version {
        let verdict = match &plan.compatibility {
            Some(Verdict::ProcessOk) | None => "runs with process or Hyper-V isolation".to_string(),
            Some(Verdict::NeedsHyperV { reason }) => format!("needs Hyper-V isolation: {}", reason),
            Some(Verdict::CannotRun { reason }) => format!("cannot run: {}", reason),
        };
        let _ = writeln!(out, "image: {}: {}", v, verdict);
    }
    if let Some(uvm) = &plan.utility_vm {
        let _ = writeln!(out, "\nutility VM {}", uvm.id);
        vm_summary(&mut out, &uvm.document);
        if let Some(copy) = &uvm.scratch_from_template {
            let _ = writeln!(out, "  before create: copy {} to {}", copy.template, copy.path);
        }
        for f in &uvm.grant_vm_access {
            let _ = writeln!(out, "  before create: grant VM access to {}", f);
        }
        for r in &uvm.guest_requests {
            if let Some(g) = &r.guest_request {
                let kind = g.get("ResourceType").and_then(|v| v.as_str()).unwrap_or("?");
                let _ = writeln!(
                    out,
                    "  after start: guest {} {}",
                    kind,
                    g.get("Settings").map(|s| s.to_string()).unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(out, "\ncontainer {}", plan.container.id);
    container_summary(&mut out, &plan.container.document);
    if let Some(p) = &plan.process {
        let _ = writeln!(out, "\nprocess");
        match p {
            InitProcess::Windows(w) => {
                let _ = writeln!(out, "  command line: {}", w.command_line);
                if !w.user.is_empty() {
                    let _ = writeln!(out, "  user: {}", w.user);
                }
                if !w.working_directory.is_empty() {
                    let _ = writeln!(out, "  cwd: {}", w.working_directory);
                }
                if w.emulate_console {
                    let size = if w.console_size.len() == 2 {
                        format!(" {}x{}", w.console_size[1], w.console_size[0])
                    } else {
                        String::new()
                    };
                    let _ = writeln!(out, "  console:{}", size);
                }
                let _ = writeln!(out, "  environment: {} variables", w.environment.len());
            }
            InitProcess::Linux(l) => {
                let args =
                    l.oci_process.as_ref().and_then(|p| p.get("args")).map(|a| a.to_string()).unwrap_or_default();
                let _ = writeln!(out, "  args (forwarded to the guest): {}", args);
            }
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &plan.warnings {
            let _ = writeln!(out, "  - {}", w);
        }
    }
    out
}

fn vm_summary(out: &mut String, doc: &ComputeSystem) {
    let vm = match &doc.virtual_machine {
        Some(vm) => vm,
        None => return,
    };
    if let Some(chipset) = &vm.chipset {
        if let Some(k) = &chipset.linux_kernel_direct {
            let _ = writeln!(
                out,
                "  boot: kernel {} initrd {}",
                k.kernel_file_path,
                if k.init_rd_path.is_empty() { "-" } else { &k.init_rd_path }
            );
            let _ = writeln!(out, "  kernel command line: {}", k.kernel_cmd_line);
        }
        if let Some(b) = chipset.uefi.as_ref().and_then(|u| u.boot_this.as_ref()) {
            let _ = writeln!(
                out,
                "  boot: UEFI {} {}{}",
                b.device_type,
                b.device_path,
                if b.vmb_fs_root_path.is_empty() { String::new() } else { format!(" from {}", b.vmb_fs_root_path) }
            );
        }
    }
    if let Some(t) = &vm.compute_topology {
        let mem = t.memory.as_ref().map(|m| m.size_in_mb).unwrap_or(0);
        let cpus = t.processor.as_ref().map(|p| p.count).unwrap_or(0);
        let over = t.memory.as_ref().map_or(false, |m| m.allow_overcommit);
        let _ = writeln!(out, "  memory: {} MiB{}, processors: {}", mem, if over { " (overcommit)" } else { "" }, cpus);
    }
    if let Some(d) = &vm.devices {
        if let Some(smb) = &d.virtual_smb {
            for s in &smb.shares {
                let ro = s.options.map_or(false, |o| o.read_only);
                let _ = writeln!(out, "  vsmb share {}: {}{}", s.name, s.path, if ro { " (read-only)" } else { "" });
            }
        }
        for (guid, ctrl) in &d.scsi {
            let i =
                SCSI_CONTROLLER_GUIDS.iter().position(|g| g == guid).map_or_else(|| guid.clone(), |i| i.to_string());
            for (lun, a) in &ctrl.attachments {
                let _ =
                    writeln!(out, "  scsi {}:{} {}{}", i, lun, a.path, if a.read_only { " (read-only)" } else { "" });
            }
        }
        if let Some(p9) = &d.plan9 {
            for s in &p9.shares {
                let _ = writeln!(
                    out,
                    "  plan9 share {}: {}{}",
                    s.name,
                    s.path,
                    if s.flags & 1 == 1 { " (read-only)" } else { "" }
                );
            }
        }
        if let Some(pmem) = &d.virtual_pmem {
            for (slot, dev) in &pmem.devices {
                let _ = writeln!(out, "  vpmem {}: {}", slot, dev.host_path);
            }
        }
    }
}

fn container_summary(out: &mut String, doc: &ComputeSystem) {
    if !doc.hosting_system_id.is_empty() {
        let _ = writeln!(out, "  in utility VM {}", doc.hosting_system_id);
    }
    let container = match (&doc.container, &doc.hosted_system) {
        (Some(c), _) => c,
        (None, Some(HostedSystemDocument::Windows(h))) => match &h.container {
            Some(c) => c,
            None => return,
        },
        (None, Some(HostedSystemDocument::Linux(l))) => {
            let _ = writeln!(out, "  OCI bundle in the guest: {}", l.oci_bundle_path);
            let _ = writeln!(out, "  scratch in the guest: {}", l.scratch_dir_path);
            if let Some(mounts) = l.oci_specification.get("mounts").and_then(|m| m.as_array()) {
                for m in mounts {
                    let _ = writeln!(
                        out,
                        "  mount {} -> {}",
                        m.get("source").and_then(|v| v.as_str()).unwrap_or("-"),
                        m.get("destination").and_then(|v| v.as_str()).unwrap_or("-")
                    );
                }
            }
            return;
        }
        (None, None) => return,
    };
    if let Some(os) = &container.guest_os {
        let _ = writeln!(out, "  hostname: {}", os.host_name);
    }
    if let Some(s) = &container.storage {
        let _ = writeln!(out, "  root: {}", s.path);
        for l in &s.layers {
            let _ = writeln!(out, "  layer {} {}", l.id, l.path);
        }
        if let Some(q) = &s.qos {
            let _ =
                writeln!(out, "  storage QoS: {} IOPS, {} bytes/s (0 = no limit)", q.iops_maximum, q.bandwidth_maximum);
        }
    }
    for m in &container.mapped_directories {
        let _ = writeln!(
            out,
            "  mapped directory {} -> {}{}",
            m.host_path,
            m.container_path,
            if m.read_only { " (read-only)" } else { "" }
        );
    }
    for p in &container.mapped_pipes {
        let _ = writeln!(out, "  mapped pipe {} -> {}", p.host_path, p.container_pipe_name);
    }
    if let Some(p) = &container.processor {
        let text = match (p.count, p.maximum, p.weight) {
            (0, 0, 0) => "no limit".to_string(),
            (c, 0, 0) => format!("count {}", c),
            (0, m, 0) => format!("maximum {} of 10000", m),
            (0, 0, w) => format!("weight {}", w),
            (c, m, w) => format!("count {} maximum {} weight {}", c, m, w),
        };
        let _ = writeln!(out, "  processor: {}", text);
    }
    if let Some(m) = &container.memory {
        let _ = writeln!(out, "  memory: {} MiB", m.size_in_mb);
    }
    if let Some(n) = &container.networking {
        let _ = writeln!(
            out,
            "  network: namespace {}{}{}",
            if n.namespace.is_empty() { "-" } else { &n.namespace },
            if n.dns_search_list.is_empty() { String::new() } else { format!(", DNS search {}", n.dns_search_list) },
            if n.network_shared_container_name.is_empty() {
                String::new()
            } else {
                format!(", shared with {}", n.network_shared_container_name)
            }
        );
    }
    if let Some(ccg) = &container.container_credential_guard {
        let _ = writeln!(out, "  gMSA credential spec over {}", ccg.transport);
    }
    for d in &container.assigned_devices {
        let _ = writeln!(out, "  device {}{}", d.interface_class_guid, d.location_path);
    }
}
