//! HCS HRESULTs and what to do about them.
//!
//! HCS errors come as HRESULTs `0x8037xxxx` (`HCSHResult.md`); Docker and hcsshim often show
//! the NTSTATUS form `0xC037xxxx` of the same code, which [`lookup`] accepts too. The v1 API's
//! `0xC0370103` (vmcompute "operation pending") is a code of its own, not `0x80370103`.
//! Every known code carries a fix; [`HcsCallError`] puts the code, HCS's own words and the fix
//! into one message.

use std::fmt;

use crate::osversion::builds;
use crate::schema::ResultDocument;

/// A known HRESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownHresult {
    /// The HRESULT (`0x8037....` form).
    pub code: u32,
    /// Its symbolic name.
    pub name: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// What to do (a `{host_build}` placeholder is filled in by [`fix_for`]).
    pub fix: &'static str,
}

/// `HCS_E_TERMINATED_DURING_START`.
pub const HCS_E_TERMINATED_DURING_START: u32 = 0x8037_0100;
/// `HCS_E_IMAGE_MISMATCH`.
pub const HCS_E_IMAGE_MISMATCH: u32 = 0x8037_0101;
/// `HCS_E_SYSTEM_NOT_FOUND`.
pub const HCS_E_SYSTEM_NOT_FOUND: u32 = 0x8037_010E;
/// `HCS_E_SYSTEM_ALREADY_EXISTS`.
pub const HCS_E_SYSTEM_ALREADY_EXISTS: u32 = 0x8037_010F;
/// `HCS_E_SYSTEM_ALREADY_STOPPED`.
pub const HCS_E_SYSTEM_ALREADY_STOPPED: u32 = 0x8037_0110;
/// `HCS_E_OPERATION_PENDING`.
pub const HCS_E_OPERATION_PENDING: u32 = 0x8037_0117;
/// `HCS_E_PROCESS_ALREADY_STOPPED`.
pub const HCS_E_PROCESS_ALREADY_STOPPED: u32 = 0x8037_011F;
/// `HRESULT_FROM_WIN32(ERROR_TIMEOUT)`: what `HcsWaitForOperationResult` returns when the wait times out.
pub const HRESULT_TIMEOUT: u32 = 0x8007_05B4;
/// The v1 (vmcompute.dll) "operation pending" code (hcsshim `ErrVmcomputeOperationPending`).
pub const VMCOMPUTE_OPERATION_PENDING: u32 = 0xC037_0103;

/// Every HRESULT hako explains.
pub const KNOWN: &[KnownHresult] = &[
    KnownHresult {
        code: HCS_E_TERMINATED_DURING_START,
        name: "HCS_E_TERMINATED_DURING_START",
        meaning: "the compute system exited while it was starting",
        fix: "check the Microsoft-Windows-Hyper-V-Compute-Operational event log; for Hyper-V isolation check that the \
              utility VM image in the base layer matches the image",
    },
    KnownHresult {
        code: HCS_E_IMAGE_MISMATCH,
        name: "HCS_E_IMAGE_MISMATCH",
        meaning: "the container operating system does not match the host operating system (the image build does not match the host)",
        fix: "use VM isolation (hako --isolation hyperv, or windows.hyperv in config.json) or an image of build {host_build}",
    },
    KnownHresult {
        code: 0x8037_0102,
        name: "HCS_E_HYPERV_NOT_INSTALLED",
        meaning: "Hyper-V is not installed",
        fix: "enable the Hyper-V and Containers features (Install-WindowsFeature Hyper-V,Containers on Windows Server; \
              Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V,Containers -All on Windows 10/11) and reboot",
    },
    KnownHresult {
        code: 0x8037_0105,
        name: "HCS_E_INVALID_STATE",
        meaning: "the compute system is not in a state that allows this operation",
        fix: "check the container with hako state ID; delete and recreate it if it is stuck",
    },
    KnownHresult {
        code: 0x8037_0106,
        name: "HCS_E_UNEXPECTED_EXIT",
        meaning: "the compute system exited unexpectedly",
        fix: "check the Hyper-V-Compute event log; ltsc2022 images under process isolation on Windows 11 are known to hit this \
              (docker/for-win#14287): try Hyper-V isolation",
    },
    KnownHresult {
        code: 0x8037_0107,
        name: "HCS_E_TERMINATED",
        meaning: "the compute system was terminated",
        fix: "the container is gone: remove it with hako delete --force ID",
    },
    KnownHresult {
        code: 0x8037_0108,
        name: "HCS_E_CONNECT_FAILED",
        meaning: "HCS could not connect to the compute service inside the utility VM",
        fix: "check that the utility VM image (windows.hyperv.utilityVMPath or the base layer's UtilityVM folder) comes from \
              the same image as the container, and that the utility VM has enough memory",
    },
    KnownHresult {
        code: 0x8037_0109,
        name: "HCS_E_CONNECTION_TIMEOUT",
        meaning: "the utility VM did not answer in time",
        fix: "give the utility VM more memory (annotation io.microsoft.virtualmachine.computetopology.memory.sizeinmb) or retry",
    },
    KnownHresult {
        code: 0x8037_010D,
        name: "HCS_E_INVALID_JSON",
        meaning: "HCS rejected the JSON document",
        fix: "inspect the document with hako hcs-doc BUNDLE; a member may be unknown to this host build's schema",
    },
    KnownHresult {
        code: HCS_E_SYSTEM_NOT_FOUND,
        name: "HCS_E_SYSTEM_NOT_FOUND",
        meaning: "no compute system has this id",
        fix: "it was deleted or never created: check hako list and hcsdiag list",
    },
    KnownHresult {
        code: HCS_E_SYSTEM_ALREADY_EXISTS,
        name: "HCS_E_SYSTEM_ALREADY_EXISTS",
        meaning: "a compute system with this id already exists",
        fix: "choose another container id, or remove the leftover system (hako delete --force ID, or hcsdiag kill ID)",
    },
    KnownHresult {
        code: HCS_E_SYSTEM_ALREADY_STOPPED,
        name: "HCS_E_SYSTEM_ALREADY_STOPPED",
        meaning: "the compute system is already stopped",
        fix: "nothing to do: it has stopped",
    },
    KnownHresult {
        code: 0x8037_0112,
        name: "HCS_E_INVALID_LAYER",
        meaning: "a layer is not a valid Windows layer or its format is not recognised by this host",
        fix: "check windows.layerFolders (topmost first, scratch last) and re-pull the image; ltsc2025 layers on \
              Windows 11 25H2 are a known case (hcsshim#2566)",
    },
    KnownHresult {
        code: HCS_E_OPERATION_PENDING,
        name: "HCS_E_OPERATION_PENDING",
        meaning: "the operation is still in progress",
        fix: "hako waits for operations to finish; seeing this is a hako bug: report it",
    },
    KnownHresult {
        code: 0x8037_011B,
        name: "HCS_E_ACCESS_DENIED",
        meaning: "access to the Host Compute Service was denied",
        fix: "run hako from an elevated (Administrator) prompt or as a member of Hyper-V Administrators",
    },
    KnownHresult {
        code: 0x8037_011E,
        name: "HCS_E_SERVICE_DISCONNECT",
        meaning: "the Host Compute Service disconnected",
        fix: "restart the service (Restart-Service vmcompute) and retry",
    },
    KnownHresult {
        code: HCS_E_PROCESS_ALREADY_STOPPED,
        name: "HCS_E_PROCESS_ALREADY_STOPPED",
        meaning: "the process has already exited",
        fix: "nothing to do: it has exited",
    },
    KnownHresult {
        code: VMCOMPUTE_OPERATION_PENDING,
        name: "VMCOMPUTE_E_OPERATION_PENDING (v1)",
        meaning: "a legacy vmcompute.dll (HCS v1) operation is pending",
        fix: "hako uses the v2 API (computecore.dll); this code comes from a v1 caller: wait for it or restart vmcompute",
    },
    KnownHresult {
        code: 0x8007_0005,
        name: "E_ACCESSDENIED",
        meaning: "access denied",
        fix: "run hako from an elevated (Administrator) prompt; layer folders also need the backup and restore privileges",
    },
    KnownHresult {
        code: 0x8007_0002,
        name: "ERROR_FILE_NOT_FOUND",
        meaning: "a file named in the document does not exist",
        fix: "check windows.layerFolders, the scratch folder and the mount sources of the bundle",
    },
    KnownHresult {
        code: 0x8007_0003,
        name: "ERROR_PATH_NOT_FOUND",
        meaning: "a path named in the document does not exist",
        fix: "check windows.layerFolders, the scratch folder and the mount sources of the bundle",
    },
    KnownHresult {
        code: 0x8007_007E,
        name: "ERROR_MOD_NOT_FOUND",
        meaning: "computecore.dll (the Host Compute Service) cannot be loaded",
        fix: "enable the Windows feature Containers (Install-WindowsFeature Containers on Windows Server; \
              Enable-WindowsOptionalFeature -Online -FeatureName Containers -All on Windows 10/11), and Hyper-V as well \
              for Hyper-V isolation and Linux containers, then reboot",
    },
    KnownHresult {
        code: HRESULT_TIMEOUT,
        name: "ERROR_TIMEOUT",
        meaning: "the operation timed out",
        fix: "hako cancelled it; retry, and check the Hyper-V-Compute event log if it keeps happening",
    },
];

/// Finds a known HRESULT, accepting the NTSTATUS form `0xC037xxxx` of `0x8037xxxx` codes.
pub fn lookup(code: u32) -> Option<&'static KnownHresult> {
    if let Some(k) = KNOWN.iter().find(|k| k.code == code) {
        return Some(k);
    }
    if code & 0xFFFF_0000 == 0xC037_0000 {
        let hr = 0x8037_0000 | (code & 0xFFFF);
        return KNOWN.iter().find(|k| k.code == hr);
    }
    None
}

/// The fix for `code`, with the host build filled in where the fix names one.
pub fn fix_for(code: u32, host_build: Option<u32>) -> Option<String> {
    let known = lookup(code)?;
    let build = match host_build {
        Some(b) => builds::describe(b),
        None => "the host's build (see winver)".to_string(),
    };
    Some(known.fix.replace("{host_build}", &build))
}

/// A failed HCS call: the operation, the object, the HRESULT, HCS's result document, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcsCallError {
    /// The API call, e.g. `HcsCreateComputeSystem`.
    pub operation: String,
    /// The compute system or process it was about.
    pub object: String,
    /// The HRESULT as returned (either form).
    pub code: u32,
    /// HCS's result document, when it sent one.
    pub result: Option<ResultDocument>,
    /// Result text that was not a result document.
    pub raw_result: String,
    /// The host build, to name the image build that would match.
    pub host_build: Option<u32>,
    /// The call was about a process-isolated container: no utility VM is involved, so no fix may name one.
    pub process_isolated: bool,
}

impl HcsCallError {
    /// Whether this is one of the given codes (either form).
    pub fn is(&self, code: u32) -> bool {
        let norm = |c: u32| {
            if c & 0xFFFF_0000 == 0xC037_0000 && c != VMCOMPUTE_OPERATION_PENDING {
                0x8037_0000 | (c & 0xFFFF)
            } else {
                c
            }
        };
        norm(self.code) == norm(code)
    }
}

impl fmt::Display for HcsCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.operation, self.object)?;
        match lookup(self.code) {
            Some(k) => write!(f, "{} ({:#010x}): {}", k.name, self.code, k.meaning)?,
            None => write!(f, "HRESULT {:#010x}", self.code)?,
        }
        if let Some(doc) = &self.result {
            if !doc.error_message.is_empty() {
                write!(f, "; hcs says: {}", doc.error_message.trim())?;
            }
            for m in doc.event_messages() {
                write!(f, "; event: {}", m)?;
            }
        } else if !self.raw_result.trim().is_empty() {
            write!(f, "; hcs says: {}", self.raw_result.trim())?;
        }
        if self.process_isolated && self.is(HCS_E_TERMINATED_DURING_START) {
            return write!(
                f,
                ": check the Microsoft-Windows-Hyper-V-Compute-Operational event log; for a process-isolated container \
                 the usual causes are an image whose build is not the host's ({}) and a damaged or incomplete base layer",
                self.host_build.map_or_else(|| "see winver".to_string(), builds::describe)
            );
        }
        match fix_for(self.code, self.host_build) {
            Some(fix) => write!(f, ": {}", fix),
            None => write!(f, ": see the Microsoft-Windows-Hyper-V-Compute-Operational event log for details"),
        }
    }
}

impl std::error::Error for HcsCallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_code_is_known_with_a_fix() {
        let codes = [
            0x8037_0100u32,
            0x8037_0101,
            0x8037_0102,
            0x8037_0105,
            0x8037_0106,
            0x8037_0107,
            0x8037_0108,
            0x8037_0109,
            0x8037_010D,
            0x8037_010E,
            0x8037_010F,
            0x8037_0110,
            0x8037_0112,
            0x8037_0117,
            0x8037_011B,
            0x8037_011E,
            0x8037_011F,
            0xC037_0103,
        ];
        for code in codes {
            let k = lookup(code).unwrap_or_else(|| panic!("{:#x} unknown", code));
            assert!(!k.fix.is_empty() && !k.meaning.is_empty());
        }
        let names: Vec<_> = KNOWN.iter().map(|k| k.code).collect();
        let mut dedup = names.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len(), "duplicate codes in KNOWN");
    }

    #[test]
    fn ntstatus_form_maps_to_the_hresult_but_v1_pending_stays_itself() {
        assert_eq!(lookup(0xC037_0101).map(|k| k.name), Some("HCS_E_IMAGE_MISMATCH"));
        assert_eq!(lookup(0xC037_0112).map(|k| k.name), Some("HCS_E_INVALID_LAYER"));
        assert_eq!(lookup(0xC037_0103).map(|k| k.name), Some("VMCOMPUTE_E_OPERATION_PENDING (v1)"));
        assert!(lookup(0x8037_0103).is_none());
        assert!(lookup(0x1234_5678).is_none());
    }

    #[test]
    fn image_mismatch_names_vm_isolation_and_the_host_build() {
        let e = HcsCallError {
            operation: "HcsCreateComputeSystem".into(),
            object: "web".into(),
            code: 0xC037_0101,
            result: ResultDocument::parse(
                r#"{"Error":-1070137087,"ErrorMessage":"The container operating system does not match the host operating system.","ErrorEvents":[{"Message":"layer mismatch"}]}"#,
            ),
            raw_result: String::new(),
            host_build: Some(20348),
            process_isolated: true,
        };
        let text = e.to_string();
        assert!(text.starts_with("HcsCreateComputeSystem web: HCS_E_IMAGE_MISMATCH (0xc0370101)"), "{}", text);
        assert!(text.contains("hcs says: The container operating system does not match"), "{}", text);
        assert!(text.contains("event: layer mismatch"), "{}", text);
        assert!(text.contains("use VM isolation"), "{}", text);
        assert!(text.ends_with("or an image of build 20348 (ltsc2022)"), "{}", text);
        assert!(e.is(HCS_E_IMAGE_MISMATCH));
    }

    #[test]
    fn unknown_codes_still_say_where_to_look() {
        let e = HcsCallError {
            operation: "HcsStartComputeSystem".into(),
            object: "x".into(),
            code: 0x8000_4005,
            result: None,
            raw_result: "boom".into(),
            host_build: None,
            process_isolated: false,
        };
        assert_eq!(
            e.to_string(),
            "HcsStartComputeSystem x: HRESULT 0x80004005; hcs says: boom: see the \
             Microsoft-Windows-Hyper-V-Compute-Operational event log for details"
        );
        let k = fix_for(HCS_E_IMAGE_MISMATCH, None).unwrap_or_default();
        assert!(k.contains("the host's build"));
    }

    #[test]
    fn a_process_isolated_container_that_dies_starting_is_not_told_about_a_utility_vm() {
        let e = |process_isolated| HcsCallError {
            operation: "HcsStartComputeSystem".into(),
            object: "web".into(),
            code: 0xC037_0100,
            result: None,
            raw_result: String::new(),
            host_build: Some(20348),
            process_isolated,
        };
        let process = e(true).to_string();
        assert!(process.contains("HCS_E_TERMINATED_DURING_START"), "{}", process);
        assert!(process.contains("Hyper-V-Compute-Operational event log"), "{}", process);
        assert!(process.contains("20348 (ltsc2022)"), "{}", process);
        assert!(!process.contains("utility VM"), "{}", process);
        let hyperv = e(false).to_string();
        assert!(hyperv.contains("utility VM image"), "{}", hyperv);
    }
}
