//! Windows containers: the checks every WCOW bundle passes (windows section, layer folders) and
//! the process-isolated (Argon) document hcsshim sends straight to HCS (`hcsdoc_wcow.go`):
//! `{Owner, SchemaVersion 2.1, ShouldTerminateOnLastHandleClosed, Container{GuestOs, Storage,
//! MappedDirectories, MappedPipes, Processor, Memory, Networking, RegistryChanges, ...}}`.

use crate::oci::{Bundle, Spec, Windows};
use crate::schema::{
    ComputeSystem, Container, GuestOs, Layer, MappedDirectory, MappedPipe, RegistryChanges, RegistryHive, RegistryKey,
    RegistryValue, RegistryValueType, SchemaVersion, Storage,
};

use super::annotations::{self as ann, Annotations};
use super::mounts::{self, WcowMount};
use super::paths;
use super::plan::{ContainerPlan, HcsPlan, HostSummary, InitProcess};
use super::process;
use super::resources;
use super::{Isolation, Rule, SpecError, TranslateOptions};

/// The `windows` section, required for every container hako runs on Windows.
pub(crate) fn windows_section(spec: &Spec) -> Result<&Windows, SpecError> {
    spec.windows.as_ref().ok_or_else(|| {
        SpecError::new(
            Rule::WindowsMissing,
            "windows",
            "is missing",
            "a Windows bundle needs a windows section with layerFolders (image layers topmost first, then the scratch)",
        )
    })
}

/// The layer folders split into read-only layers (topmost first) and the scratch (last).
pub(crate) fn layer_folders(windows: &Windows) -> Result<(Vec<String>, String), SpecError> {
    let folders = &windows.layer_folders;
    if folders.len() < 2 {
        return Err(SpecError::new(
            Rule::LayerFolders,
            "windows.layerFolders",
            format!(
                "has {} entries; it needs the image layers (at least the base layer) and then the scratch",
                folders.len()
            ),
            "list the layer folders topmost first, the base layer next to last and the scratch folder last",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, f) in folders.iter().enumerate() {
        let field = format!("windows.layerFolders[{}]", i);
        if paths::is_unc(f) {
            return Err(SpecError::new(
                Rule::LayerFolders,
                field,
                format!("{:?} is a network path; layers must be on a local disk", f),
                "unpack the image to a local folder",
            ));
        }
        if !paths::is_absolute_drive_path(f) {
            return Err(SpecError::new(
                Rule::LayerFolders,
                field,
                format!("{:?} is not an absolute Windows path", f),
                r"give absolute paths such as C:\ProgramData\hako\layers\<id>",
            ));
        }
        let n = paths::normalize(f);
        if let Some(j) = seen.iter().position(|s| *s == n) {
            return Err(SpecError::new(
                Rule::LayerFolders,
                field,
                format!("{:?} is listed twice (also at index {})", f, j),
                "list each layer folder once",
            ));
        }
        seen.push(n);
    }
    let (ro, scratch) = folders.split_at(folders.len() - 1);
    Ok((ro.to_vec(), scratch[0].clone()))
}

/// `Layer{Id, Path}` for each read-only layer folder, ids from `opts.layer_id`.
pub(crate) fn layers(folders: &[String], opts: &TranslateOptions) -> Result<Vec<Layer>, SpecError> {
    folders
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = paths::file_name(f);
            let id = (opts.layer_id)(name).map_err(|e| {
                SpecError::new(
                    Rule::LayerFolders,
                    format!("windows.layerFolders[{}]", i),
                    format!("no layer id for {:?}: {}", f, e),
                    "check that the folder is an unpacked Windows layer",
                )
            })?;
            Ok(Layer { id, path: f.clone(), ..Layer::default() })
        })
        .collect()
}

/// hcsshim sets `WaitToKillServiceTimeout` to i32::MAX in every Windows container so that a
/// graceful stop waits as long as the caller asks, not servercore's default 5 s.
pub(crate) fn registry_changes() -> RegistryChanges {
    RegistryChanges {
        add_values: vec![RegistryValue {
            key: RegistryKey {
                hive: RegistryHive::System,
                name: r"ControlSet001\Control".to_string(),
                volatile: false,
            },
            name: "WaitToKillServiceTimeout".to_string(),
            value_type: RegistryValueType::String,
            string_value: i32::MAX.to_string(),
            binary_value: String::new(),
            d_word_value: 0,
            q_word_value: 0,
        }],
        delete_keys: Vec::new(),
    }
}

/// The parts of a Container document that are the same on the host and in a utility VM.
pub(crate) fn container_common(
    spec: &Spec,
    windows: &Windows,
    hyperv: bool,
    max_processors: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<Container, SpecError> {
    let a = Annotations(&spec.annotations);
    let mut c = Container::default();
    if !spec.hostname.is_empty() {
        c.guest_os = Some(GuestOs { host_name: spec.hostname.clone() });
    }
    c.processor = Some(resources::container_processor(spec, &a, max_processors, warnings)?);
    c.memory = resources::container_memory(spec, &a)?;
    c.networking = resources::networking(windows)?;
    c.container_credential_guard = resources::credential_guard(windows, hyperv)?;
    c.registry_changes = Some(registry_changes());
    if windows.servicing {
        warnings.push("windows.servicing is an HCS v1 setting and was ignored".to_string());
    }
    if let Some(size) = windows.resources.as_ref().and_then(|r| r.storage.as_ref()).and_then(|s| s.sandbox_size) {
        warnings.push(format!(
            "windows.resources.storage.sandboxSize ({} bytes) was ignored: the scratch is sized when the layer store creates it",
            size
        ));
    }
    let qos = resources::storage_qos(spec, &a, ann::CONTAINER_STORAGE_IOPS_MAX, ann::CONTAINER_STORAGE_BANDWIDTH_MAX)?;
    c.storage = Some(Storage { qos, ..Storage::default() });
    Ok(c)
}

/// A process-isolated container.
pub(crate) fn process_isolated(
    bundle: &Bundle,
    opts: &TranslateOptions,
    schema: SchemaVersion,
    warnings: &mut Vec<String>,
) -> Result<HcsPlan, SpecError> {
    let spec = &bundle.spec;
    let windows = windows_section(spec)?;
    let (ro, _scratch) = layer_folders(windows)?;
    let root = spec.root.as_ref().ok_or_else(|| {
        SpecError::new(
            Rule::RootMissing,
            "root",
            "is missing; a process-isolated Windows container needs it",
            r"set root.path to the volume GUID path of the mounted scratch, \\?\Volume{GUID}\",
        )
    })?;
    if !paths::is_volume_guid_path(&root.path) {
        return Err(SpecError::new(
            Rule::RootNotVolumeGuid,
            "root.path",
            format!("{:?} is not a volume GUID path", root.path),
            r"mount the scratch layer and give its volume path in the format \\?\Volume{GUID}\",
        ));
    }
    if root.readonly {
        return Err(SpecError::new(
            Rule::RootReadonly,
            "root.readonly",
            "is true; readonly is not supported for Windows containers",
            "remove root.readonly or set it to false",
        ));
    }
    if windows.ignore_flushes_during_boot {
        warnings.push(
            "windows.ignoreFlushesDuringBoot only applies to a utility VM's scratch disk and was ignored".to_string(),
        );
    }
    let mut c = container_common(spec, windows, false, opts.host_processors, warnings)?;
    let mut root_path = root.path.clone();
    if !root_path.ends_with('\\') {
        root_path.push('\\');
    }
    if let Some(storage) = c.storage.as_mut() {
        storage.layers = layers(&ro, opts)?;
        storage.path = root_path;
    }
    for m in mounts::wcow_mounts(spec, opts.host.version.build, warnings)? {
        match m {
            WcowMount::Directory { source, container_path, read_only } => c.mapped_directories.push(MappedDirectory {
                host_path: source,
                container_path,
                read_only,
                ..MappedDirectory::default()
            }),
            WcowMount::Pipe { source, container_pipe_name } => {
                c.mapped_pipes.push(MappedPipe { container_pipe_name, host_path: source, ..MappedPipe::default() })
            }
        }
    }
    c.assigned_devices = resources::assigned_devices(windows)?;
    let document = ComputeSystem {
        owner: opts.owner.clone(),
        schema_version: Some(schema),
        container: Some(c),
        should_terminate_on_last_handle_closed: true,
        ..ComputeSystem::default()
    };
    let process = match &spec.process {
        Some(p) => Some(InitProcess::Windows(process::windows_process(p, opts.stdio)?)),
        None => None,
    };
    Ok(HcsPlan {
        isolation: Isolation::Process,
        schema_version: schema,
        host: HostSummary {
            build: opts.host.version.build,
            revision: opts.host.version.revision,
            measured: opts.host_measured,
        },
        utility_vm: None,
        container: ContainerPlan { id: opts.container_id.clone(), document },
        process,
        image_os_version: None,
        compatibility: None,
        warnings: Vec::new(),
    })
}
