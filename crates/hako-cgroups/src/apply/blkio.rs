//! linux.resources.blockIO: v1 blkio (weight through CFQ's blkio.weight or BFQ's blkio.bfq.weight,
//! per-device weights, throttling) and v2 io (io.bfq.weight or io.weight converted from the blkio
//! range, io.max for throttling).

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::{locate, Target};
use crate::cgroup::Cgroup;
use crate::error::CgroupError;
use crate::fsutil;

/// runc's conversion of a blkio weight (10..1000) to io.weight (1..10000).
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn unsupported(cg: &Cgroup, resource: &str, problem: String) -> CgroupError {
    CgroupError::Unsupported {
        resource: resource.to_string(),
        cgroup: cg.path(),
        problem,
        fix: format!("remove linux.resources.{resource} from config.json, or use a kernel/IO scheduler that has it"),
    }
}

/// The throttle lists with their v1 file and v2 io.max key.
fn throttles(b: &LinuxBlockIo) -> [(&'static str, &'static str, &'static str, Option<&Vec<LinuxThrottleDevice>>); 4] {
    [
        (
            "blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            b.throttle_read_bps_device().as_ref(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            b.throttle_write_bps_device().as_ref(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            b.throttle_read_iops_device().as_ref(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            b.throttle_write_iops_device().as_ref(),
        ),
    ]
}

pub(super) fn apply(cg: &Cgroup, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().filter(|w| *w != 0);
    let leaf_weight = b.leaf_weight().filter(|w| *w != 0);
    let weight_devices = b.weight_device().as_deref().unwrap_or(&[]);
    let any_throttle = throttles(b).iter().any(|t| t.3.map(|v| !v.is_empty()).unwrap_or(false));
    let first = if weight.is_some() {
        "blockIO.weight"
    } else if leaf_weight.is_some() {
        "blockIO.leafWeight"
    } else if !weight_devices.is_empty() {
        "blockIO.weightDevice"
    } else if any_throttle {
        "blockIO.throttle"
    } else {
        return Ok(());
    };
    for (i, d) in weight_devices.iter().enumerate() {
        if d.major() < 0 || d.minor() < 0 {
            return Err(CgroupError::InvalidValue {
                resource: format!("blockIO.weightDevice[{i}]"),
                value: format!("{}:{}", d.major(), d.minor()),
                problem: "major and minor must not be negative".to_string(),
            });
        }
    }
    match locate(cg, "blkio", first) {
        Ok(Target::V1(dir)) => v1(cg, dir, b, weight, leaf_weight),
        Ok(Target::V2(dir)) => v2(cg, dir, b, weight, leaf_weight),
        // On cgroup v2 the controller is called io.
        Err(CgroupError::ControllerMissing { .. }) if cg.v2().is_some() => match locate(cg, "io", first)? {
            Target::V1(dir) => v1(cg, dir, b, weight, leaf_weight),
            Target::V2(dir) => v2(cg, dir, b, weight, leaf_weight),
        },
        Err(e) => Err(e),
    }
}

fn v1(cg: &Cgroup, dir: &Path, b: &LinuxBlockIo, weight: Option<u16>, leaf: Option<u16>) -> Result<(), CgroupError> {
    let (weight_file, weight_dev_file) = if fsutil::exists(dir, "blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = weight {
        if !fsutil::exists(dir, weight_file) {
            return Err(unsupported(
                cg,
                "blockIO.weight",
                format!("{} has neither blkio.weight (CFQ) nor blkio.bfq.weight (BFQ)", dir.display()),
            ));
        }
        fsutil::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(l) = leaf {
        if !fsutil::exists(dir, "blkio.leaf_weight") {
            return Err(unsupported(
                cg,
                "blockIO.leafWeight",
                "leaf weights exist only with the CFQ scheduler (blkio.leaf_weight)".to_string(),
            ));
        }
        fsutil::write(dir, "blkio.leaf_weight", &l.to_string())?;
    }
    for d in b.weight_device().as_deref().unwrap_or(&[]) {
        if let Some(w) = d.weight() {
            if !fsutil::exists(dir, weight_dev_file) {
                return Err(unsupported(
                    cg,
                    "blockIO.weightDevice",
                    format!("{} has no per-device weight file", dir.display()),
                ));
            }
            fsutil::write(dir, weight_dev_file, &format!("{}:{} {}", d.major(), d.minor(), w))?;
        }
        if let Some(l) = d.leaf_weight() {
            if !fsutil::exists(dir, "blkio.leaf_weight_device") {
                return Err(unsupported(
                    cg,
                    "blockIO.weightDevice.leafWeight",
                    "leaf weights exist only with the CFQ scheduler".to_string(),
                ));
            }
            fsutil::write(dir, "blkio.leaf_weight_device", &format!("{}:{} {}", d.major(), d.minor(), l))?;
        }
    }
    for (_, file, _, list) in throttles(b) {
        for t in list.map(Vec::as_slice).unwrap_or(&[]) {
            fsutil::write(dir, file, &format!("{}:{} {}", t.major(), t.minor(), t.rate()))?;
        }
    }
    Ok(())
}

fn v2(cg: &Cgroup, dir: &Path, b: &LinuxBlockIo, weight: Option<u16>, leaf: Option<u16>) -> Result<(), CgroupError> {
    if leaf.is_some() || b.weight_device().as_deref().unwrap_or(&[]).iter().any(|d| d.leaf_weight().is_some()) {
        return Err(unsupported(cg, "blockIO.leafWeight", "cgroup v2 has no leaf weights".to_string()));
    }
    let bfq = fsutil::exists(dir, "io.bfq.weight");
    if let Some(w) = weight {
        if bfq {
            fsutil::write(dir, "io.bfq.weight", &w.to_string())?;
        } else if fsutil::exists(dir, "io.weight") {
            fsutil::write(dir, "io.weight", &format!("default {}", blkio_to_io_weight(w)))?;
        } else {
            return Err(unsupported(
                cg,
                "blockIO.weight",
                format!("{} has neither io.bfq.weight nor io.weight", dir.display()),
            ));
        }
    }
    for d in b.weight_device().as_deref().unwrap_or(&[]) {
        if let Some(w) = d.weight() {
            let (file, value) =
                if bfq { ("io.bfq.weight", u64::from(w)) } else { ("io.weight", blkio_to_io_weight(w)) };
            fsutil::write(dir, file, &format!("{}:{} {}", d.major(), d.minor(), value))?;
        }
    }
    for (_, _, key, list) in throttles(b) {
        for t in list.map(Vec::as_slice).unwrap_or(&[]) {
            fsutil::write(dir, "io.max", &io_max_line(t, key))?;
        }
    }
    Ok(())
}

/// One io.max line, e.g. `8:0 rbps=1048576`.
pub(crate) fn io_max_line(t: &LinuxThrottleDevice, key: &str) -> String {
    format!("{}:{} {}={}", t.major(), t.minor(), key, t.rate())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxThrottleDeviceBuilder;

    #[test]
    fn weight_conversion_and_io_max_format() {
        assert_eq!(blkio_to_io_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        let t = LinuxThrottleDeviceBuilder::default().major(8i64).minor(0i64).rate(1_048_576u64).build().expect("t");
        assert_eq!(io_max_line(&t, "wbps"), "8:0 wbps=1048576");
    }
}
