//! Linux capabilities of the container process: `process.capabilities` of config.json.
//!
//! [`validate`] runs at `create` in the parent: it refuses sets the kernel would refuse later
//! (effective outside permitted, inheritable outside bounding) with a message naming the
//! capability, and warns about (then ignores, like runc) capabilities the running kernel does
//! not know. [`check_host`] also refuses capabilities hako itself does not hold when the
//! container shares the host's user namespace (on this project's machines root lacks
//! `CAP_SYS_RESOURCE`); inside a user namespace the init holds every capability, so it skips
//! that check.
//!
//! [`apply`] runs in the container init, after it switched to the container's user and before
//! `execve`. It sets the five sets in this order: bounding (dropped first), then effective,
//! permitted and inheritable in one `capset(2)`, then ambient last.
//!
//! Contract for the caller of [`apply`]: the init must still hold, in its permitted set, every
//! capability the container asks for, plus `CAP_SETPCAP` to drop bounding capabilities. A
//! `setuid` from root to another user clears the permitted set unless the init set
//! `prctl(PR_SET_KEEPCAPS, 1)` first (or `SECBIT_NO_SETUID_FIXUP`); the effective set is
//! cleared either way and [`apply`] raises it again from the permitted set. Capabilities are
//! per thread: call it from the thread that will `execve`.
//!
//! Names and the list of capabilities for `hako features` ([`known_capabilities`], [`parse`])
//! are here too. Raw `capget`/`capset`/`prctl` calls stay in this file.

use std::str::FromStr;
use std::sync::OnceLock;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// What went wrong while checking or applying capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A name that is not a Linux capability.
    #[error(
        "unknown capability {name} in {what}: use a name such as CAP_NET_ADMIN (`hako features` \
         lists them)"
    )]
    UnknownName {
        /// Where the name was found (e.g. `process.capabilities.bounding`).
        what: String,
        /// The name as given.
        name: String,
    },
    /// The raw JSON has the wrong shape.
    #[error("{what}: {problem}")]
    Malformed {
        /// The JSON path of the value.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A capability is effective but not permitted: the kernel refuses that.
    #[error(
        "capability {cap} is in process.capabilities.effective but not in permitted: add it to \
         permitted or remove it from effective"
    )]
    EffectiveNotPermitted {
        /// The capability name.
        cap: String,
    },
    /// A capability is inheritable but not in the bounding set: the kernel refuses that.
    #[error(
        "capability {cap} is in process.capabilities.inheritable but not in bounding: add it \
         to bounding or remove it from inheritable"
    )]
    InheritableNotBounding {
        /// The capability name.
        cap: String,
    },
    /// Capabilities requested that hako does not hold in the host's user namespace.
    #[error(
        "capabilities {caps} requested in process.capabilities are not held by hako on this \
         host: remove them from config.json or run the container in a user namespace"
    )]
    NotHeldByHost {
        /// The capability names, comma separated.
        caps: String,
    },
    /// Capabilities the init process no longer holds when it applies the sets.
    #[error(
        "cannot grant capabilities {caps}: the container init does not hold them (keep them \
         across setuid with PR_SET_KEEPCAPS, or remove them from process.capabilities)"
    )]
    NotGranted {
        /// The capability names, comma separated.
        caps: String,
    },
    /// The bounding set must shrink but the init cannot drop from it.
    #[error(
        "cannot drop {cap} from the bounding set: the container init lacks CAP_SETPCAP in its \
         permitted set"
    )]
    NoSetpcap {
        /// The first capability that had to be dropped.
        cap: String,
    },
    /// A capability system call failed.
    #[error("failed to {op}")]
    Syscall {
        /// The operation, naming the capability or set.
        op: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
}

/// A capability set as a bit mask (bit n = capability number n).
type Mask = u64;

/// The capability number of an OCI capability, `None` if the caps crate does not know it.
fn cap_index(cap: &Capability) -> Option<u8> {
    caps::Capability::from_str(&cap_name(cap)).ok().map(|c| c.index())
}

/// The config.json spelling of a capability (`CAP_CHOWN`).
fn cap_name(cap: &Capability) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("CAP_{cap}"),
    }
}

/// The name of capability number `index` (`CAP_CHOWN`), or `capability N` if unnamed.
fn index_name(index: u8) -> String {
    caps::all()
        .into_iter()
        .find(|c| c.index() == index)
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("capability {index}"))
}

/// Comma-separated names of the capabilities in `mask`.
fn mask_names(mask: Mask) -> String {
    (0..64u8).filter(|i| mask & (1 << i) != 0).map(index_name).collect::<Vec<_>>().join(", ")
}

/// Whether the running kernel knows capability number `index`, probed with
/// `PR_CAPBSET_READ` (works without /proc, so also inside a fresh mount namespace).
fn kernel_knows(index: u8) -> bool {
    // SAFETY: PR_CAPBSET_READ only reads the calling thread's bounding set; it fails with
    // EINVAL for a capability number the kernel does not know.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(index), 0, 0, 0) >= 0 }
}

/// The highest capability number the running kernel knows.
fn last_cap() -> u8 {
    static LAST: OnceLock<u8> = OnceLock::new();
    *LAST.get_or_init(|| (0..64u8).take_while(|i| kernel_knows(*i)).last().unwrap_or(0))
}

/// The five sets as masks, with capabilities above `last_cap` left out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sets {
    bounding: Mask,
    effective: Mask,
    permitted: Mask,
    inheritable: Mask,
    ambient: Mask,
}

/// Turns one OCI set into a mask, warning about and leaving out capabilities the kernel
/// (whose last capability is `last_cap`) or hako does not know.
fn mask_of(set: &Option<Capabilities>, which: &str, last_cap: u8) -> Mask {
    let mut mask = 0;
    for cap in set.iter().flatten() {
        match cap_index(cap) {
            Some(i) if i <= last_cap => mask |= 1 << i,
            _ => tracing::warn!(
                capability = %cap_name(cap),
                set = which,
                "capability unknown to the running kernel: ignored"
            ),
        }
    }
    mask
}

impl Sets {
    fn from_spec(c: &LinuxCapabilities, last_cap: u8) -> Self {
        Sets {
            bounding: mask_of(c.bounding(), "bounding", last_cap),
            effective: mask_of(c.effective(), "effective", last_cap),
            permitted: mask_of(c.permitted(), "permitted", last_cap),
            inheritable: mask_of(c.inheritable(), "inheritable", last_cap),
            ambient: mask_of(c.ambient(), "ambient", last_cap),
        }
    }
}

/// The structural checks of [`validate`], for a kernel whose last capability is `last_cap`.
fn validate_sets(c: &LinuxCapabilities, last_cap: u8) -> Result<Sets, CapsError> {
    let s = Sets::from_spec(c, last_cap);
    let bad = s.effective & !s.permitted;
    if bad != 0 {
        return Err(CapsError::EffectiveNotPermitted { cap: mask_names(bad & bad.wrapping_neg()) });
    }
    let bad = s.inheritable & !s.bounding;
    if bad != 0 {
        return Err(CapsError::InheritableNotBounding { cap: mask_names(bad & bad.wrapping_neg()) });
    }
    let lost = s.ambient & !(s.permitted & s.inheritable);
    if lost != 0 {
        tracing::debug!(
            capabilities = %mask_names(lost),
            "ambient capabilities not in both permitted and inheritable cannot be raised: ignored"
        );
    }
    Ok(s)
}

/// Checks `process.capabilities` at `create`: capabilities unknown to the running kernel are
/// logged and ignored (as runc does); an effective capability outside permitted or an
/// inheritable one outside bounding is an error naming it. Unknown names never get here: they
/// fail when config.json is parsed (see [`validate_json`] for a clearer message).
pub fn validate(c: &LinuxCapabilities) -> Result<(), CapsError> {
    validate_sets(c, last_cap()).map(|_| ())
}

/// [`validate`], plus: when the container stays in the host's user namespace
/// (`in_user_namespace` false: no new or joined user namespace), every capability requested
/// in effective, permitted, inheritable or ambient must be in hako's own permitted set, or the
/// init could not grant it. Bounding capabilities hako lacks are fine: they are simply absent.
pub fn check_host(c: &LinuxCapabilities, in_user_namespace: bool) -> Result<(), CapsError> {
    let s = validate_sets(c, last_cap())?;
    if in_user_namespace {
        return Ok(());
    }
    let held = capget()?.permitted;
    let missing = (s.effective | s.permitted | s.inheritable | s.ambient) & !held;
    if missing != 0 {
        return Err(CapsError::NotHeldByHost { caps: mask_names(missing) });
    }
    Ok(())
}

/// The effective, permitted and inheritable sets of the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Base {
    effective: Mask,
    permitted: Mask,
    inheritable: Mask,
}

/// `struct __user_cap_header_struct` of `<linux/capability.h>`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` of `<linux/capability.h>`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit words.
const CAP_VERSION_3: u32 = 0x2008_0522;

fn capget() -> Result<Base, CapsError> {
    let mut hdr = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 makes the kernel write exactly two CapData entries into `data`;
    // both pointers are valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) };
    if r != 0 {
        return Err(CapsError::Syscall {
            op: "read the capability sets (capget)".to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(Base {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn capset(b: Base) -> Result<(), CapsError> {
    let mut hdr = CapHeader { version: CAP_VERSION_3, pid: 0 };
    // Truncation is the point: each word holds 32 bits of the 64-bit mask.
    let split = |m: Mask| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(b.effective);
    let (p0, p1) = split(b.permitted);
    let (i0, i1) = split(b.inheritable);
    let data = [
        CapData { effective: e0, permitted: p0, inheritable: i0 },
        CapData { effective: e1, permitted: p1, inheritable: i1 },
    ];
    // SAFETY: version 3 makes the kernel read exactly two CapData entries from `data`;
    // both pointers are valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(CapsError::Syscall {
            op: format!(
                "set capabilities (capset) effective [{}] permitted [{}] inheritable [{}]",
                mask_names(b.effective),
                mask_names(b.permitted),
                mask_names(b.inheritable)
            ),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// One `prctl` with integer arguments, as an `io::Result` of its return value.
fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> std::io::Result<libc::c_int> {
    // SAFETY: the capability prctls used here take integer arguments only.
    let r = unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Sets the calling thread's five capability sets from `process.capabilities`: bounding
/// first, then effective/permitted/inheritable at once, ambient last. See the module comment
/// for what the caller must hold. Ambient capabilities the kernel refuses are skipped with a
/// warning, as runc does.
pub fn apply(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap();
    let want = validate_sets(c, last)?;
    let cur = capget()?;
    let missing = (want.effective | want.permitted) & !cur.permitted;
    if missing != 0 {
        return Err(CapsError::NotGranted { caps: mask_names(missing) });
    }
    // Raise everything we hold, so CAP_SETPCAP is effective for the bounding drop and for
    // inheritable capabilities outside the permitted set.
    if cur.effective != cur.permitted {
        capset(Base { effective: cur.permitted, ..cur })?;
    }
    let setpcap = 1u64 << caps::Capability::CAP_SETPCAP.index();
    for i in 0..=last {
        let bit = 1u64 << i;
        if want.bounding & bit != 0 {
            continue;
        }
        let present = prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(i), 0).map_err(|e| CapsError::Syscall {
            op: format!("read {} from the bounding set", index_name(i)),
            source: e,
        })?;
        if present == 0 {
            continue;
        }
        if cur.permitted & setpcap == 0 {
            return Err(CapsError::NoSetpcap { cap: index_name(i) });
        }
        prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(i), 0).map_err(|e| CapsError::Syscall {
            op: format!("drop {} from the bounding set", index_name(i)),
            source: e,
        })?;
    }
    capset(Base { effective: want.effective, permitted: want.permitted, inheritable: want.inheritable })?;
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0)
        .map_err(|e| CapsError::Syscall { op: "clear the ambient set".to_string(), source: e })?;
    for i in (0..=last).filter(|i| want.ambient & (1 << i) != 0) {
        if let Err(e) = prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, libc::c_ulong::from(i))
        {
            tracing::warn!(capability = %index_name(i), error = %e, "cannot raise ambient capability: ignored");
        }
    }
    Ok(())
}

/// Every capability both hako and the running kernel know, in capability-number order, as
/// config.json spells them (`CAP_CHOWN`, ...). For `hako features`.
pub fn known_capabilities() -> Vec<String> {
    let last = last_cap();
    let mut all: Vec<caps::Capability> = caps::all().into_iter().filter(|c| c.index() <= last).collect();
    all.sort_by_key(|c| c.index());
    all.into_iter()
        .map(|c| c.to_string())
        .filter(|n| serde_json::from_value::<Capability>(serde_json::Value::String(n.clone())).is_ok())
        .collect()
}

/// Parses one capability name as config.json accepts it (`CAP_NET_RAW`, `net_raw`), e.g. for
/// `hako exec --cap`. `what` says where the name came from, for the error.
pub fn parse(name: &str, what: &str) -> Result<Capability, CapsError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| CapsError::UnknownName { what: what.to_string(), name: name.to_string() })
}

/// Checks the names in the raw `process.capabilities` JSON object before config.json is parsed
/// into [`LinuxCapabilities`], so that a typo gives an error naming the set and the capability.
/// A missing or null value is fine.
pub fn validate_json(caps: &serde_json::Value) -> Result<(), CapsError> {
    let root = "process.capabilities";
    let obj = match caps {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::Object(o) => o,
        other => {
            return Err(CapsError::Malformed {
                what: root.to_string(),
                problem: format!("expected an object, found {other}"),
            });
        }
    };
    for set in ["bounding", "effective", "inheritable", "permitted", "ambient"] {
        let what = format!("{root}.{set}");
        match obj.get(set) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(names)) => {
                for n in names {
                    match n {
                        serde_json::Value::String(s) => {
                            parse(s, &what)?;
                        }
                        other => {
                            return Err(CapsError::Malformed {
                                what,
                                problem: format!("expected a capability name, found {other}"),
                            });
                        }
                    }
                }
            }
            Some(other) => {
                return Err(CapsError::Malformed { what, problem: format!("expected a list, found {other}") });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::tests::{in_child, run_child};
    use serde_json::json;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn caps_of(v: serde_json::Value) -> LinuxCapabilities {
        serde_json::from_value(v).expect("test capabilities parse")
    }

    fn bit(c: caps::Capability) -> u64 {
        1 << c.index()
    }

    /// The Cap* lines of a /proc/<pid>/status text, as masks.
    fn status_masks(status: &str) -> Result<[u64; 5], String> {
        let get = |key: &str| -> Result<u64, String> {
            let line = status.lines().find_map(|l| l.strip_prefix(key)).ok_or_else(|| format!("no {key} line"))?;
            u64::from_str_radix(line.trim(), 16).map_err(|e| format!("{key}: {e}"))
        };
        Ok([get("CapInh:")?, get("CapPrm:")?, get("CapEff:")?, get("CapBnd:")?, get("CapAmb:")?])
    }

    fn check(what: &str, got: u64, want: u64) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: got {got:016x} [{}], want {want:016x} [{}]", mask_names(got), mask_names(want)))
        }
    }

    #[test]
    fn apply_sets_all_five_sets_as_root() {
        use caps::Capability::*;
        let c = caps_of(json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP"],
            "effective": ["CAP_CHOWN", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_KILL"]
        }));
        in_child(|| {
            apply(&c).map_err(|e| e.to_string())?;
            let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| e.to_string())?;
            let [inh, prm, eff, bnd, amb] = status_masks(&status)?;
            check("CapBnd", bnd, bit(CAP_CHOWN) | bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_SETPCAP))?;
            check("CapEff", eff, bit(CAP_CHOWN) | bit(CAP_KILL))?;
            check("CapPrm", prm, bit(CAP_CHOWN) | bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE))?;
            check("CapInh", inh, bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE))?;
            check("CapAmb", amb, bit(CAP_KILL))
        });
    }

    /// The init's sequence for a non-root user: keep caps across setuid, apply, execve. After
    /// execve a non-root process gets its permitted and effective sets from the ambient set.
    #[test]
    fn ambient_capabilities_survive_setuid_and_execve() {
        use caps::Capability::*;
        let c = caps_of(json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        }));
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        let (status, msg) = run_child(|| {
            nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {e}"))?;
            let nobody = nix::unistd::Uid::from_raw(65534);
            let nogroup = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
            nix::unistd::setresgid(nogroup, nogroup, nogroup).map_err(|e| format!("setresgid: {e}"))?;
            nix::unistd::setresuid(nobody, nobody, nobody).map_err(|e| format!("setresuid: {e}"))?;
            apply(&c).map_err(|e| e.to_string())?;
            nix::unistd::dup2(wr.as_raw_fd(), 1).map_err(|e| format!("dup2: {e}"))?;
            let cat = c"/bin/cat";
            let err = nix::unistd::execv(cat, &[cat, c"/proc/self/status"]);
            Err(format!("execv /bin/cat: {err:?}"))
        });
        drop(wr);
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "{status:?} {msg}");
        let mut out = String::new();
        std::fs::File::from(rd).read_to_string(&mut out).expect("read cat output");
        let [inh, prm, eff, bnd, amb] = status_masks(&out).expect("status of cat");
        assert!(out.contains("Uid:\t65534"), "{out}");
        assert_eq!(amb, bit(CAP_NET_BIND_SERVICE), "CapAmb");
        assert_eq!(prm, bit(CAP_NET_BIND_SERVICE), "CapPrm");
        assert_eq!(eff, bit(CAP_NET_BIND_SERVICE), "CapEff");
        assert_eq!(inh, bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE), "CapInh");
        assert_eq!(bnd, bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW), "CapBnd");
    }

    #[test]
    fn apply_without_keepcaps_after_setuid_names_the_missing_caps() {
        let c = caps_of(json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}));
        in_child(|| {
            let nobody = nix::unistd::Uid::from_raw(65534);
            nix::unistd::setresuid(nobody, nobody, nobody).map_err(|e| format!("setresuid: {e}"))?;
            match apply(&c) {
                Err(e @ CapsError::NotGranted { .. }) if e.to_string().contains("CAP_KILL") => Ok(()),
                other => Err(format!("want NotGranted naming CAP_KILL, got {other:?}")),
            }
        });
    }

    #[test]
    fn apply_refuses_a_capability_the_process_lacks() {
        let c = caps_of(json!({
            "bounding": ["CAP_SYS_NICE"], "effective": ["CAP_SYS_NICE"], "permitted": ["CAP_SYS_NICE"]
        }));
        in_child(|| {
            let mut cur = capget().map_err(|e| e.to_string())?;
            cur.permitted &= !bit(caps::Capability::CAP_SYS_NICE);
            cur.effective = cur.permitted;
            capset(cur).map_err(|e| e.to_string())?;
            let err = apply(&c).map_err(|e| e.to_string()).err().unwrap_or_default();
            if err.contains("CAP_SYS_NICE") && err.contains("PR_SET_KEEPCAPS") {
                Ok(())
            } else {
                Err(format!("unexpected result: {err:?}"))
            }
        });
    }

    #[test]
    fn check_host_refuses_caps_hako_does_not_hold_unless_in_a_user_namespace() {
        let held = capget().expect("capget").permitted;
        let want = caps_of(json!({"bounding": ["CAP_SYS_RESOURCE"], "permitted": ["CAP_SYS_RESOURCE"]}));
        let res = check_host(&want, false);
        if held & bit(caps::Capability::CAP_SYS_RESOURCE) == 0 {
            let e = res.expect_err("host lacks CAP_SYS_RESOURCE").to_string();
            assert!(e.contains("CAP_SYS_RESOURCE") && e.contains("user namespace"), "{e}");
        } else {
            res.expect("host holds CAP_SYS_RESOURCE");
        }
        check_host(&want, true).expect("a user namespace grants every capability");
        // Bounding alone is fine: it can only shrink.
        let bounding_only = caps_of(json!({"bounding": ["CAP_SYS_RESOURCE", "CAP_CHOWN"]}));
        check_host(&bounding_only, false).expect("bounding only");
    }

    #[test]
    fn validate_names_the_capability_the_kernel_would_refuse() {
        let e = validate(&caps_of(json!({"effective": ["CAP_KILL"], "permitted": ["CAP_CHOWN"]})))
            .expect_err("effective outside permitted")
            .to_string();
        assert!(e.contains("CAP_KILL") && e.contains("effective"), "{e}");
        let e = validate(&caps_of(json!({"bounding": ["CAP_CHOWN"], "inheritable": ["CAP_NET_RAW"]})))
            .expect_err("inheritable outside bounding")
            .to_string();
        assert!(e.contains("CAP_NET_RAW") && e.contains("bounding"), "{e}");
        validate(&LinuxCapabilities::default()).expect("oci-spec default sets");
        // Ambient outside permitted/inheritable is only a warning, as in runc.
        validate(&caps_of(json!({"ambient": ["CAP_KILL"]}))).expect("ambient warning only");
    }

    #[test]
    fn capabilities_newer_than_the_kernel_are_ignored() {
        // As on a kernel before 5.8, whose last capability is CAP_AUDIT_READ (37).
        let c = caps_of(json!({
            "bounding": ["CAP_BPF", "CAP_CHOWN"], "effective": ["CAP_PERFMON"], "permitted": []
        }));
        let s = validate_sets(&c, 37).expect("newer capabilities are ignored");
        assert_eq!(s.bounding, bit(caps::Capability::CAP_CHOWN));
        assert_eq!(s.effective, 0);
        assert!(validate_sets(&c, 40).is_err(), "known to a 5.9 kernel: effective outside permitted");
    }

    #[test]
    fn names_parse_and_list() {
        let known = known_capabilities();
        assert_eq!(known.first().map(String::as_str), Some("CAP_CHOWN"));
        assert_eq!(known.len(), usize::from(last_cap()) + 1);
        assert!(known.contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(parse("net_raw", "--cap").expect("short name"), Capability::NetRaw);
        let e = parse("CAP_FLY", "--cap").expect_err("unknown").to_string();
        assert!(e.contains("CAP_FLY") && e.contains("--cap"), "{e}");
        validate_json(&json!({"bounding": ["CAP_CHOWN"], "ambient": null})).expect("valid");
        let e = validate_json(&json!({"bounding": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN", "CAP_TELEPORT"]}))
            .expect_err("unknown name")
            .to_string();
        assert!(e.contains("CAP_TELEPORT") && e.contains("process.capabilities.permitted"), "{e}");
        let e = validate_json(&json!({"effective": "CAP_CHOWN"})).expect_err("not a list").to_string();
        assert!(e.contains("process.capabilities.effective"), "{e}");
    }
}
