//! Device access rules (linux.resources.devices): validation, the v1 `devices.allow`/`devices.deny`
//! lines, and on cgroup v2 (which has no devices controller) an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program generated from the same rules and attached to the container's cgroup.
//!
//! Semantics follow cgroup v1: a cgroup starts allowing everything, rules apply in order, and a rule
//! of type `a` replaces everything before it. The program evaluates the rules last-first and the first
//! match decides; an allow rule matches when every requested access is allowed by it, a deny rule when
//! any requested access is denied by it; no match allows (as the inherited v1 default does).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;
use crate::fsutil;

/// Access bits as the kernel passes them to a device program (`BPF_DEVCG_ACC_*`).
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) allow: bool,
    /// 'a', 'b' or 'c'.
    pub(crate) kind: char,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    /// `ACC_*` bits.
    pub(crate) access: u8,
}

impl Rule {
    /// The v1 devices.allow / devices.deny line, e.g. `c 1:3 rwm`.
    pub(crate) fn v1_line(&self) -> String {
        let num = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_else(|| "*".to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        format!("{} {}:{} {}", self.kind, num(self.major), num(self.minor), acc)
    }
}

/// Validates the spec's rules. Type `p` (FIFO) is skipped: the device cgroup never controls FIFOs.
pub(crate) fn parse_rules(devs: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, CgroupError> {
    let mut out = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let bad = |problem: String| CgroupError::InvalidValue {
            resource: format!("devices[{i}]"),
            value: d.to_string(),
            problem,
        };
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::P) => continue,
        };
        let num = |n: Option<i64>, what: &str| -> Result<Option<u32>, CgroupError> {
            match n {
                None | Some(-1) => Ok(None),
                Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(u32::try_from(v).ok()),
                Some(v) => Err(bad(format!("{what} {v} is out of range (0..{})", i32::MAX))),
            }
        };
        let major = num(d.major(), "major")?;
        let minor = num(d.minor(), "minor")?;
        let access_str = d.access().as_deref().unwrap_or("");
        let mut access = 0;
        for c in access_str.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                other => {
                    return Err(bad(format!(
                        "access {access_str:?} has {other:?}; only the letters r, w and m are allowed"
                    )))
                }
            };
        }
        if access == 0 {
            access = ACC_ALL;
        }
        let (major, minor) = if kind == 'a' { (None, None) } else { (major, minor) };
        out.push(Rule { allow: d.allow(), kind, major, minor, access });
    }
    Ok(out)
}

/// Applies rules through the v1 devices controller, in order.
pub(crate) fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    for r in rules {
        let file = if r.allow { "devices.allow" } else { "devices.deny" };
        fsutil::write(dir, file, &r.v1_line())?;
    }
    Ok(())
}

/// Applies rules on cgroup v2 by attaching a generated device program to `dir` (replacing the
/// program of an earlier apply).
pub(crate) fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let insns = program(rules);
    let prog = crate::sys::load_device_program(&insns).map_err(|(err, log)| CgroupError::Bpf {
        path: dir.to_path_buf(),
        op: "load".to_string(),
        log: match (err.raw_os_error(), log.is_empty()) {
            (Some(libc::EPERM), _) => "; loading eBPF programs needs CAP_SYS_ADMIN (or CAP_BPF)".to_string(),
            (_, false) => format!("; verifier log: {log}"),
            _ => String::new(),
        },
        err,
    })?;
    let cg = File::open(dir).map_err(|err| CgroupError::Read { path: dir.to_path_buf(), err })?;
    crate::sys::attach_device_program(cg.as_raw_fd(), &prog).map_err(|err| CgroupError::Bpf {
        path: dir.to_path_buf(),
        op: "attach".to_string(),
        log: match err.raw_os_error() {
            Some(libc::EPERM) => "; a parent cgroup has a non-overridable device program, or hako \
                                  lacks CAP_SYS_ADMIN"
                .to_string(),
            Some(libc::EINVAL) => "; the kernel lacks CONFIG_CGROUP_BPF".to_string(),
            _ => String::new(),
        },
        err,
    })
}

// eBPF encoding (x86_64 and aarch64 are little-endian: dst_reg is the low nibble of byte 1).
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

/// One `struct bpf_insn`, as the 8 bytes the kernel reads.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    u64::from_le_bytes(b)
}

/// Generates the device program for `rules` (see the module docs for the semantics).
pub(crate) fn program(rules: &[Rule]) -> Vec<u64> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    /// A block instruction: plain, or a conditional jump to the end of the block.
    enum Step {
        Raw(u64),
        JumpOut(u8, u8, u8, i32),
    }
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        match r.kind {
            'b' => block.push(Step::JumpOut(JMP_JNE_K, 2, 0, 1)),
            'c' => block.push(Step::JumpOut(JMP_JNE_K, 2, 0, 2)),
            _ => {}
        }
        if r.access != ACC_ALL {
            block.push(Step::Raw(insn(ALU32_MOV_X, 1, 3, 0, 0)));
            block.push(Step::Raw(insn(ALU32_AND_K, 1, 0, 0, i32::from(r.access))));
            block.push(if r.allow {
                // allow: every requested access must be in the rule (r1 == r3)
                Step::JumpOut(JMP_JNE_X, 1, 3, 0)
            } else {
                // deny: some requested access is in the rule (r1 != 0)
                Step::JumpOut(JMP_JEQ_K, 1, 0, 0)
            });
        }
        if let Some(m) = r.major {
            block.push(Step::JumpOut(JMP_JNE_K, 4, 0, i32::try_from(m).unwrap_or(i32::MAX)));
        }
        if let Some(m) = r.minor {
            block.push(Step::JumpOut(JMP_JNE_K, 5, 0, i32::try_from(m).unwrap_or(i32::MAX)));
        }
        block.push(Step::Raw(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow))));
        block.push(Step::Raw(insn(JMP_EXIT, 0, 0, 0, 0)));
        let len = block.len();
        let always_matches = block.iter().all(|s| matches!(s, Step::Raw(_)));
        for (i, step) in block.into_iter().enumerate() {
            p.push(match step {
                Step::Raw(x) => x,
                Step::JumpOut(code, dst, src, imm) => {
                    let off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
                    insn(code, dst, src, off, imm)
                }
            });
        }
        if always_matches {
            // Everything after an unconditional rule is unreachable, which the verifier rejects.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Runs a generated program on one request (a tiny interpreter of the instructions `program`
/// emits), so that tests check the semantics of the real bytes.
#[cfg(test)]
pub(crate) fn evaluate(prog: &[u64], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
    let mut reg = [0u64; 11];
    let ctx = [(access << 16) | kind, major, minor];
    let mut pc = 0usize;
    loop {
        let b = prog[pc].to_le_bytes();
        let (code, dst, src) = (b[0], usize::from(b[1] & 0x0f), usize::from(b[1] >> 4));
        let off = i16::from_le_bytes([b[2], b[3]]);
        let imm = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let imm64 = i64::from(imm) as u64;
        pc += 1;
        match code {
            LDX_MEM_W => reg[dst] = u64::from(ctx[(off / 4) as usize]),
            ALU32_AND_K => reg[dst] = (reg[dst] as u32 & imm as u32) as u64,
            ALU32_RSH_K => reg[dst] = ((reg[dst] as u32) >> imm) as u64,
            ALU32_MOV_X => reg[dst] = reg[src] as u32 as u64,
            ALU64_MOV_K => reg[dst] = imm64,
            JMP_JNE_K if reg[dst] != imm64 => pc += off as usize,
            JMP_JNE_X if reg[dst] != reg[src] => pc += off as usize,
            JMP_JEQ_K if reg[dst] == imm64 => pc += off as usize,
            JMP_JNE_K | JMP_JNE_X | JMP_JEQ_K => {}
            JMP_EXIT => return reg[0],
            other => panic!("unknown opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn dev(
        allow: bool,
        t: Option<LinuxDeviceType>,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(acc.to_string());
        if let Some(t) = t {
            b = b.typ(t);
        }
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().expect("device rule")
    }

    /// The usual runtime default: deny all, then allow a few character devices.
    fn default_rules() -> Vec<Rule> {
        parse_rules(&[
            dev(false, None, None, None, "rwm"),
            dev(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            dev(true, Some(LinuxDeviceType::C), Some(1), Some(5), "r"),
            dev(true, Some(LinuxDeviceType::C), Some(136), None, "rw"),
            dev(false, Some(LinuxDeviceType::C), Some(136), Some(7), "w"),
            dev(true, Some(LinuxDeviceType::P), Some(1), Some(1), "rwm"),
        ])
        .expect("rules")
    }

    #[test]
    fn v1_lines() {
        let r = default_rules();
        assert_eq!(r.len(), 5, "the FIFO rule is skipped");
        let lines: Vec<String> = r.iter().map(Rule::v1_line).collect();
        assert_eq!(lines, ["a *:* rwm", "c 1:3 rwm", "c 1:5 r", "c 136:* rw", "c 136:7 w"]);
        let u = parse_rules(&[dev(true, Some(LinuxDeviceType::U), Some(4), Some(1), "")]).expect("u");
        assert_eq!(u[0].v1_line(), "c 4:1 rwm");
    }

    #[test]
    fn bad_access_and_numbers_are_errors() {
        let err = parse_rules(&[dev(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rx")]).expect_err("x");
        assert!(err.to_string().contains("devices[0]") && err.to_string().contains("'x'"), "{err}");
        let err = parse_rules(&[dev(true, Some(LinuxDeviceType::C), Some(1 << 40), Some(3), "r")]).expect_err("big");
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn program_follows_v1_semantics() {
        let p = program(&default_rules());
        const B: u32 = 1;
        const C: u32 = 2;
        let (r, w, m) = (u32::from(ACC_READ), u32::from(ACC_WRITE), u32::from(ACC_MKNOD));
        assert_eq!(evaluate(&p, C, r | w, 1, 3), 1, "/dev/null rw");
        assert_eq!(evaluate(&p, C, m, 1, 3), 1, "/dev/null mknod");
        assert_eq!(evaluate(&p, B, r, 1, 3), 0, "block 1:3 is not /dev/null");
        assert_eq!(evaluate(&p, C, r, 1, 5), 1, "/dev/zero read");
        assert_eq!(evaluate(&p, C, r | w, 1, 5), 0, "/dev/zero write is not allowed");
        assert_eq!(evaluate(&p, C, r, 1, 8), 0, "/dev/random is denied by default");
        assert_eq!(evaluate(&p, C, r | w, 136, 0), 1, "pts any minor");
        assert_eq!(evaluate(&p, C, r, 136, 7), 1, "pts 7 read");
        assert_eq!(evaluate(&p, C, w, 136, 7), 0, "pts 7 write denied by the later rule");
        assert_eq!(evaluate(&p, B, r, 8, 0), 0, "disks denied");
    }

    #[test]
    fn no_wildcard_means_allow_by_default_and_a_later_wildcard_wins() {
        let rules = parse_rules(&[dev(false, Some(LinuxDeviceType::B), Some(8), None, "w")]).expect("r");
        let p = program(&rules);
        assert_eq!(evaluate(&p, 1, u32::from(ACC_WRITE), 8, 1), 0);
        assert_eq!(evaluate(&p, 1, u32::from(ACC_READ), 8, 1), 1);
        assert_eq!(evaluate(&p, 2, u32::from(ACC_WRITE), 8, 1), 1);
        let rules = parse_rules(&[
            dev(false, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            dev(true, None, None, None, "rwm"),
        ])
        .expect("r");
        assert_eq!(evaluate(&program(&rules), 2, u32::from(ACC_READ), 1, 3), 1);
        assert_eq!(evaluate(&program(&[]), 2, u32::from(ACC_READ), 1, 3), 1);
        // The wildcard is evaluated first and always matches: nothing may follow it.
        assert_eq!(program(&rules).len(), 6 + 2);
    }
}
