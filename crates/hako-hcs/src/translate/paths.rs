//! Windows path rules, checked as text so that `hako hcs-doc` works on any host: volume GUID
//! paths, absolute drive paths, UNC paths, named pipes, nesting, joining.

/// The named pipe prefix `\\.\pipe\`.
pub(crate) const PIPE_PREFIX: &str = r"\\.\pipe\";

/// The guest path prefix of VSMB shares inside a Windows utility VM (hcsshim `vsmbSharePrefix`).
pub(crate) const VSMB_GUEST_PREFIX: &str = r"\\?\VMSMB\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\";

/// Whether `s` is a GUID `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces.
pub(crate) fn is_guid(s: &str) -> bool {
    let inner = match (s.strip_prefix('{'), s.strip_suffix('}')) {
        (Some(_), Some(_)) if s.len() >= 2 => &s[1..s.len() - 1],
        (None, None) => s,
        _ => return false,
    };
    let groups: Vec<&str> = inner.split('-').collect();
    let lens = [8usize, 4, 4, 4, 12];
    groups.len() == 5
        && groups.iter().zip(lens.iter()).all(|(g, &n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` is a volume GUID path `\\?\Volume{GUID}` with an optional trailing backslash
/// (hcsshim's `volumeGUIDRegex`).
pub(crate) fn is_volume_guid_path(s: &str) -> bool {
    let rest = match s.strip_prefix(r"\\?\Volume") {
        Some(r) => r,
        None => return false,
    };
    let rest = rest.strip_suffix('\\').unwrap_or(rest);
    rest.starts_with('{') && rest.ends_with('}') && is_guid(rest)
}

/// Whether `s` is an absolute drive path `X:\...` (or its `\\?\X:\...` form).
pub(crate) fn is_absolute_drive_path(s: &str) -> bool {
    let s = s.strip_prefix(r"\\?\").unwrap_or(s);
    let b = s.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

/// Whether `s` is a UNC path `\\server\share` (not a `\\?\` or `\\.\` device path).
pub(crate) fn is_unc(s: &str) -> bool {
    (s.starts_with(r"\\") || s.starts_with("//")) && !s.starts_with(r"\\?\") && !s.starts_with(r"\\.\")
        || s.to_ascii_lowercase().starts_with(r"\\?\unc\")
}

/// Whether `s` names a named pipe `\\.\pipe\NAME`.
pub(crate) fn is_pipe(s: &str) -> bool {
    s.len() > PIPE_PREFIX.len() && s[..PIPE_PREFIX.len()].eq_ignore_ascii_case(PIPE_PREFIX)
}

/// A comparable form: lower case, backslashes, no trailing backslash (but `c:\` stays).
pub(crate) fn normalize(s: &str) -> String {
    let mut n = s.replace('/', "\\").to_ascii_lowercase();
    while n.len() > 3 && n.ends_with('\\') {
        n.pop();
    }
    n
}

/// Whether `inner` lies strictly inside `outer` (both normalized with [`normalize`]).
pub(crate) fn is_nested(outer: &str, inner: &str) -> bool {
    let prefix = if outer.ends_with('\\') { outer.to_string() } else { format!("{}\\", outer) };
    inner.len() > prefix.len() && inner.starts_with(&prefix)
}

/// Joins Windows path parts with one backslash between them.
pub(crate) fn join(base: &str, rest: &str) -> String {
    let base = base.trim_end_matches(['\\', '/']);
    let rest = rest.trim_start_matches(['\\', '/']);
    format!("{}\\{}", base, rest)
}

/// The last component of a Windows path.
pub(crate) fn file_name(path: &str) -> &str {
    path.trim_end_matches(['\\', '/']).rsplit(['\\', '/']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_guid_paths() {
        assert!(is_volume_guid_path(r"\\?\Volume{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}\"));
        assert!(is_volume_guid_path(r"\\?\Volume{2C2B6B0C-7D43-4C0A-8D8C-0123456789AB}"));
        assert!(!is_volume_guid_path(r"C:\rootfs"));
        assert!(!is_volume_guid_path(r"\\?\Volume{not-a-guid}\"));
        assert!(!is_volume_guid_path(r"\\?\Volume2c2b6b0c-7d43-4c0a-8d8c-0123456789ab\"));
        assert!(!is_volume_guid_path("rootfs"));
    }

    #[test]
    fn absolute_unc_and_pipes() {
        assert!(is_absolute_drive_path(r"C:\data"));
        assert!(is_absolute_drive_path(r"\\?\D:\x"));
        assert!(!is_absolute_drive_path(r"data"));
        assert!(!is_absolute_drive_path(r"C:data"));
        assert!(!is_absolute_drive_path("/data"));
        assert!(is_unc(r"\\server\share"));
        assert!(is_unc(r"\\?\UNC\server\share"));
        assert!(!is_unc(r"\\?\C:\x"));
        assert!(!is_unc(r"\\.\pipe\x"));
        assert!(is_pipe(r"\\.\pipe\docker_engine"));
        assert!(is_pipe(r"\\.\PIPE\x"));
        assert!(!is_pipe(r"\\.\pipe\"));
    }

    #[test]
    fn nesting_and_joining() {
        assert!(is_nested(&normalize(r"C:\data"), &normalize(r"c:\DATA\sub\")));
        assert!(!is_nested(&normalize(r"C:\data"), &normalize(r"C:\database")));
        assert!(!is_nested(&normalize(r"C:\data"), &normalize(r"C:\data\")));
        assert!(is_nested(&normalize(r"C:\"), &normalize(r"C:\x")));
        assert_eq!(join(r"C:\layers\base\", r"\UtilityVM"), r"C:\layers\base\UtilityVM");
        assert_eq!(file_name(r"C:\layers\abc\"), "abc");
        assert!(is_guid("2c2b6b0c-7d43-4c0a-8d8c-0123456789ab"));
        assert!(is_guid("{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab}"));
        assert!(!is_guid("{2c2b6b0c-7d43-4c0a-8d8c-0123456789ab"));
    }
}
