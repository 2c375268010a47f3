//! `windows.resources`, `windows.network`, `windows.credentialSpec`, `windows.devices` and the
//! sizing annotations, turned into the container's Processor/Memory/Storage QoS/Networking and
//! the utility VM's topology. Annotation values override spec values, as in hcsshim
//! (`internal/oci/uvm.go`), and 0 counts as unset.

use crate::oci::{Spec, Windows};
use crate::schema::{
    ContainerCredentialGuardState, ContainerMemory, ContainerProcessor, Device, DeviceType, Networking, StorageQos,
};

use super::annotations::{self as ann, Annotations};
use super::paths;
use super::{Rule, SpecError};

const MIB: u64 = 1024 * 1024;

fn cpu_field(spec: &Spec) -> Option<&crate::oci::WindowsCpuResources> {
    spec.windows.as_ref()?.resources.as_ref()?.cpu.as_ref()
}

/// The spec's own cpu rules: count, shares, maximum mutually exclusive; shares 0-10000;
/// maximum 1-10000; affinity unsupported.
pub(crate) fn check_spec_cpu(spec: &Spec) -> Result<(), SpecError> {
    let cpu = match cpu_field(spec) {
        Some(c) => c,
        None => return Ok(()),
    };
    let set: Vec<&str> =
        [("count", cpu.count.is_some()), ("shares", cpu.shares.is_some()), ("maximum", cpu.maximum.is_some())]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
    if set.len() > 1 {
        return Err(SpecError::new(
            Rule::CpuExclusive,
            "windows.resources.cpu",
            format!("sets {}, but count, shares and maximum are mutually exclusive", set.join(" and ")),
            "keep only one of count, shares and maximum",
        ));
    }
    if let Some(shares) = cpu.shares {
        if shares > 10000 {
            return Err(SpecError::new(
                Rule::CpuRange,
                "windows.resources.cpu.shares",
                format!("{} is above 10000", shares),
                "use a weight from 0 to 10000",
            ));
        }
    }
    if let Some(max) = cpu.maximum {
        if max == 0 || max > 10000 {
            return Err(SpecError::new(
                Rule::CpuRange,
                "windows.resources.cpu.maximum",
                format!("{} is outside 1-10000", max),
                "give the share of CPU cycles per 10,000, from 1 to 10000",
            ));
        }
    }
    if cpu.count == Some(0) {
        return Err(SpecError::new(
            Rule::CpuRange,
            "windows.resources.cpu.count",
            "is 0",
            "give at least 1 processor, or leave count out",
        ));
    }
    if !cpu.affinity.is_empty() {
        return Err(SpecError::new(
            Rule::CpuAffinity,
            "windows.resources.cpu.affinity",
            "is not supported by hako's HCS backend",
            "remove affinity; use count, shares or maximum instead",
        ));
    }
    Ok(())
}

/// The container's `Processor{Count, Maximum, Weight}` (hcsshim `ConvertCPULimits`), counts
/// above `max_count` lowered to it (a warning says so).
pub(crate) fn container_processor(
    spec: &Spec,
    a: &Annotations<'_>,
    max_count: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<ContainerProcessor, SpecError> {
    check_spec_cpu(spec)?;
    let cpu = cpu_field(spec);
    let count = match a.u32(ann::CONTAINER_PROCESSOR_COUNT)? {
        Some(n) => Some(n),
        None => match cpu.and_then(|c| c.count) {
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                SpecError::new(
                    Rule::CpuRange,
                    "windows.resources.cpu.count",
                    format!("{} is too large", n),
                    "use a count the host has",
                )
            })?),
            None => None,
        },
    };
    let maximum = match a.u32(ann::CONTAINER_PROCESSOR_LIMIT)? {
        Some(n) => Some(n),
        None => cpu.and_then(|c| c.maximum).map(u32::from),
    };
    let weight = match a.u32(ann::CONTAINER_PROCESSOR_WEIGHT)? {
        Some(n) => Some(n),
        None => cpu.and_then(|c| c.shares).filter(|s| *s > 0).map(u32::from),
    };
    let set: Vec<String> = [("count", count), ("limit (maximum)", maximum), ("weight (shares)", weight)]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{} {}", n, v)))
        .collect();
    if set.len() > 1 {
        return Err(SpecError::new(
            Rule::CpuExclusive,
            "windows.resources.cpu and io.microsoft.container.processor.* annotations",
            format!("together set {}, which are mutually exclusive", set.join(", ")),
            "keep only one of processor count, limit and weight",
        ));
    }
    if let Some(m) = maximum {
        if m > 10000 {
            return Err(SpecError::new(
                Rule::CpuRange,
                format!("annotations[{:?}]", ann::CONTAINER_PROCESSOR_LIMIT),
                format!("{} is above 10000", m),
                "give the share of CPU cycles per 10,000, from 1 to 10000",
            ));
        }
    }
    if let Some(w) = weight {
        if w > 10000 {
            return Err(SpecError::new(
                Rule::CpuRange,
                format!("annotations[{:?}]", ann::CONTAINER_PROCESSOR_WEIGHT),
                format!("{} is above 10000", w),
                "use a weight from 1 to 10000",
            ));
        }
    }
    let mut count = count.unwrap_or(0);
    if let Some(max) = max_count {
        if count > max {
            warnings.push(format!(
                "processor count {} lowered to {}, the processors available to the container",
                count, max
            ));
            count = max;
        }
    }
    Ok(ContainerProcessor { count, maximum: maximum.unwrap_or(0), weight: weight.unwrap_or(0) })
}

/// The container's memory limit in MiB, or `None`.
pub(crate) fn container_memory_mb(spec: &Spec, a: &Annotations<'_>) -> Result<Option<u64>, SpecError> {
    if let Some(mb) = a.u64(ann::CONTAINER_MEMORY_SIZE_MB)? {
        return Ok(Some(mb));
    }
    spec_memory_mb(spec)
}

fn spec_memory_mb(spec: &Spec) -> Result<Option<u64>, SpecError> {
    let limit =
        spec.windows.as_ref().and_then(|w| w.resources.as_ref()).and_then(|r| r.memory.as_ref()).and_then(|m| m.limit);
    match limit {
        None | Some(0) => Ok(None),
        Some(bytes) if bytes < MIB => Err(SpecError::new(
            Rule::Memory,
            "windows.resources.memory.limit",
            format!("{} bytes is less than 1 MiB, and HCS limits memory in whole MiB", bytes),
            "use at least 1048576 bytes",
        )),
        Some(bytes) => Ok(Some(bytes / MIB)),
    }
}

/// `Memory{SizeInMB}` of a container.
pub(crate) fn container_memory(spec: &Spec, a: &Annotations<'_>) -> Result<Option<ContainerMemory>, SpecError> {
    Ok(container_memory_mb(spec, a)?.map(|size_in_mb| ContainerMemory { size_in_mb }))
}

fn check_qos_value(field: String, v: u64) -> Result<u64, SpecError> {
    if v > i32::MAX as u64 {
        return Err(SpecError::new(
            Rule::Storage,
            field,
            format!("{} does not fit HCS's 32-bit QoS value", v),
            format!("use at most {}", i32::MAX),
        ));
    }
    Ok(v)
}

/// Storage QoS from annotations `iops_key`/`bps_key` or the spec.
pub(crate) fn storage_qos(
    spec: &Spec,
    a: &Annotations<'_>,
    iops_key: &str,
    bps_key: &str,
) -> Result<Option<StorageQos>, SpecError> {
    let storage = spec.windows.as_ref().and_then(|w| w.resources.as_ref()).and_then(|r| r.storage.as_ref());
    let iops = match a.u64(iops_key)? {
        Some(v) => Some(check_qos_value(format!("annotations[{:?}]", iops_key), v)?),
        None => match storage.and_then(|s| s.iops).filter(|v| *v > 0) {
            Some(v) => Some(check_qos_value("windows.resources.storage.iops".to_string(), v)?),
            None => None,
        },
    };
    let bps = match a.u64(bps_key)? {
        Some(v) => Some(check_qos_value(format!("annotations[{:?}]", bps_key), v)?),
        None => match storage.and_then(|s| s.bps).filter(|v| *v > 0) {
            Some(v) => Some(check_qos_value("windows.resources.storage.bps".to_string(), v)?),
            None => None,
        },
    };
    if iops.is_none() && bps.is_none() {
        return Ok(None);
    }
    Ok(Some(StorageQos { iops_maximum: iops.unwrap_or(0), bandwidth_maximum: bps.unwrap_or(0) }))
}

/// `windows.network` to `Networking`.
pub(crate) fn networking(windows: &Windows) -> Result<Option<Networking>, SpecError> {
    let net = match &windows.network {
        Some(n) => n,
        None => return Ok(None),
    };
    let others: Vec<&str> = [
        ("endpointList", !net.endpoint_list.is_empty()),
        ("allowUnqualifiedDNSQuery", net.allow_unqualified_dns_query),
        ("DNSSearchList", !net.dns_search_list.is_empty()),
        ("networkSharedContainerName", !net.network_shared_container_name.is_empty()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    if !net.network_namespace.is_empty() {
        if !others.is_empty() {
            return Err(SpecError::new(
                Rule::NetworkExclusive,
                "windows.network",
                format!(
                    "sets networkNamespace together with {}, but with a network namespace no other member may be set",
                    others.join(", ")
                ),
                "configure DNS and endpoints on the HNS namespace and keep only networkNamespace",
            ));
        }
        if !paths::is_guid(&net.network_namespace) {
            return Err(SpecError::new(
                Rule::NetworkNamespace,
                "windows.network.networkNamespace",
                format!("{:?} is not a GUID", net.network_namespace),
                "give the id of an HNS namespace (Get-HnsNamespace), e.g. 8e9b6f2c-...",
            ));
        }
    } else if !net.endpoint_list.is_empty() {
        return Err(SpecError::new(
            Rule::NetworkEndpointList,
            "windows.network.endpointList",
            "is only understood by HCS schema v1, which hako does not speak",
            "attach the endpoints to an HNS namespace and set windows.network.networkNamespace instead",
        ));
    }
    Ok(Some(Networking {
        allow_unqualified_dns_query: net.allow_unqualified_dns_query,
        dns_search_list: net.dns_search_list.join(","),
        network_shared_container_name: net.network_shared_container_name.clone(),
        namespace: net.network_namespace.clone(),
        network_adapters: Vec::new(),
    }))
}

/// `windows.credentialSpec` to the credential guard state hako registers with HCS. The cookie and
/// RPC endpoint come back from HCS when the instance is added (at create time, on Windows).
pub(crate) fn credential_guard(
    windows: &Windows,
    hyperv: bool,
) -> Result<Option<ContainerCredentialGuardState>, SpecError> {
    let value = match &windows.credential_spec {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(_) => value.to_string(),
        other => {
            return Err(SpecError::new(
                Rule::CredentialSpec,
                "windows.credentialSpec",
                format!("is a JSON {}, not a credential spec", json_kind(other)),
                "give the content of the gMSA credential spec file (New-CredentialSpec) as a string or object",
            ))
        }
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map))
            if map.contains_key("CmsPlugins") || map.contains_key("DomainJoinConfig") => {}
        _ => {
            return Err(SpecError::new(
                Rule::CredentialSpec,
                "windows.credentialSpec",
                "is not a gMSA credential spec (a JSON object with CmsPlugins and DomainJoinConfig)",
                "give the content of the credential spec file written by New-CredentialSpec",
            ))
        }
    }
    Ok(Some(ContainerCredentialGuardState {
        credential_spec: text,
        transport: if hyperv { "HvSocket".to_string() } else { "LRPC".to_string() },
        ..ContainerCredentialGuardState::default()
    }))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `windows.devices` to `AssignedDevices` (hcsshim `parseAssignedDevices`).
pub(crate) fn assigned_devices(windows: &Windows) -> Result<Vec<Device>, SpecError> {
    let mut out = Vec::new();
    for (i, d) in windows.devices.iter().enumerate() {
        let field = format!("windows.devices[{}]", i);
        match d.id_type.as_str() {
            "class" | "vpci-class-guid" => {
                if !paths::is_guid(&d.id) {
                    return Err(SpecError::new(
                        Rule::Device,
                        format!("{}.id", field),
                        format!("{:?} is not a device interface class GUID", d.id),
                        "give a GUID such as 5B45201D-F2F2-4F3B-85BB-30FF1F953599 (GUID_DEVINTERFACE_DISPLAY_ADAPTER)",
                    ));
                }
                out.push(Device {
                    device_type: None,
                    interface_class_guid: d.id.clone(),
                    location_path: String::new(),
                });
            }
            "vpci-location-path" => {
                if d.id.is_empty() {
                    return Err(SpecError::new(
                        Rule::Device,
                        format!("{}.id", field),
                        "is empty",
                        "give the device's location path",
                    ));
                }
                out.push(Device {
                    device_type: Some(DeviceType::DeviceInstance),
                    interface_class_guid: String::new(),
                    location_path: d.id.clone(),
                });
            }
            other => {
                return Err(SpecError::new(
                    Rule::Device,
                    format!("{}.idType", field),
                    format!("{:?} is not a device id type hako knows", other),
                    "use \"class\" with a device interface class GUID",
                ))
            }
        }
    }
    Ok(out)
}

/// The utility VM's size and memory options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmSizing {
    pub(crate) memory_mb: u64,
    pub(crate) processors: u32,
    pub(crate) processor_limit: u64,
    pub(crate) processor_weight: u64,
    pub(crate) allow_overcommit: bool,
    pub(crate) deferred_commit: bool,
    pub(crate) cold_discard_hint: bool,
    pub(crate) qos: Option<StorageQos>,
}

/// The utility VM's size: annotations, else the spec's resources, else hcsshim's defaults
/// (1024 MiB; 2 processors, 1 on a single-processor host). Memory is aligned up to an even
/// number of MiB; processors above the host's are lowered to it.
pub(crate) fn vm_sizing(
    spec: &Spec,
    a: &Annotations<'_>,
    host_processors: Option<u32>,
    warnings: &mut Vec<String>,
) -> Result<VmSizing, SpecError> {
    check_spec_cpu(spec)?;
    let cpu = cpu_field(spec);
    let requested_mb = match a.u64(ann::VM_MEMORY_SIZE_MB)? {
        Some(mb) => mb,
        None => spec_memory_mb(spec)?.unwrap_or(1024),
    };
    let memory_mb = (requested_mb + 1) & !1;
    if memory_mb != requested_mb {
        warnings.push(format!("utility VM memory {} MiB aligned up to {} MiB", requested_mb, memory_mb));
    }
    let default_processors = if host_processors == Some(1) { 1 } else { 2 };
    let mut processors = match a.u32(ann::VM_PROCESSOR_COUNT)? {
        Some(n) => n,
        None => match cpu.and_then(|c| c.count) {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => default_processors,
        },
    };
    if let Some(host) = host_processors {
        if processors > host {
            warnings.push(format!("utility VM processor count {} lowered to the host's {}", processors, host));
            processors = host;
        }
    }
    let processor_limit = match a.u64(ann::VM_PROCESSOR_LIMIT)? {
        Some(n) => n,
        None => cpu.and_then(|c| c.maximum).map(u64::from).unwrap_or(0),
    };
    let processor_weight = match a.u64(ann::VM_PROCESSOR_WEIGHT)? {
        Some(n) => n,
        None => cpu.and_then(|c| c.shares).map(u64::from).unwrap_or(0),
    };
    let fully_physical = a.bool(ann::VM_FULLY_PHYSICALLY_BACKED, false)?;
    let allow_overcommit = a.bool(ann::VM_ALLOW_OVERCOMMIT, true)? && !fully_physical;
    Ok(VmSizing {
        memory_mb,
        processors,
        processor_limit,
        processor_weight,
        allow_overcommit,
        deferred_commit: a.bool(ann::VM_ENABLE_DEFERRED_COMMIT, false)?,
        cold_discard_hint: a.bool(ann::VM_ENABLE_COLD_DISCARD_HINT, false)?,
        qos: storage_qos(spec, a, ann::VM_STORAGE_IOPS_MAX, ann::VM_STORAGE_BANDWIDTH_MAX)?,
    })
}
