//! What the backend reads about the Windows host: version (build and UBR from the registry,
//! `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion`), edition, processors, file existence.
//! Only built on Windows.

use crate::compat::HostInfo;
use crate::ffi;
use crate::osversion::OsVersion;

const CURRENT_VERSION: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";

/// The host's version and edition.
pub fn read_host_info() -> std::io::Result<HostInfo> {
    let build_text = ffi::reg_string(CURRENT_VERSION, "CurrentBuildNumber")?;
    let build = build_text.trim().parse::<u32>().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("registry value {}\\CurrentBuildNumber is {:?}, not a number", CURRENT_VERSION, build_text),
        )
    })?;
    let major = ffi::reg_dword(CURRENT_VERSION, "CurrentMajorVersionNumber").unwrap_or(10);
    let minor = ffi::reg_dword(CURRENT_VERSION, "CurrentMinorVersionNumber").unwrap_or(0);
    let ubr = ffi::reg_dword(CURRENT_VERSION, "UBR").unwrap_or(0);
    let installation = ffi::reg_string(CURRENT_VERSION, "InstallationType").unwrap_or_default();
    Ok(HostInfo {
        version: OsVersion { major, minor, build, revision: ubr },
        is_client: installation.eq_ignore_ascii_case("Client"),
    })
}

/// Logical processors available to hako (hcsshim asks HCS for the topology; this counts the
/// processors of hako's processor group).
pub fn logical_processors() -> Option<u32> {
    std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok())
}

/// Whether a path exists on the host.
pub fn path_exists(path: &str) -> bool {
    std::path::Path::new(path).exists()
}
