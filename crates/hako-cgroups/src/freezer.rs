//! Pause and resume: the v1 freezer (freezer.state, polled until FROZEN, re-requested while it reads
//! FREEZING) or cgroup v2's cgroup.freeze (polled through cgroup.events `frozen`). A freeze that does
//! not finish in time is undone and reported.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::error::CgroupError;
use crate::fsutil;
use crate::resolve::Version;

/// How long a freeze may take before it is undone.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which freezer the cgroup uses.
enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

fn freezer(cg: &Cgroup) -> Result<Freezer<'_>, CgroupError> {
    if let Some(h) = cg.v1("freezer") {
        return Ok(Freezer::V1(&h.dir));
    }
    if let Some(h) = cg.hierarchies().iter().find(|h| h.version == Version::V2) {
        if fsutil::exists(&h.dir, "cgroup.freeze") || !h.dir.exists() {
            return Ok(Freezer::V2(&h.dir));
        }
    }
    Err(CgroupError::NoFreezer { cgroup: cg.path() })
}

/// Whether cgroup.events says `frozen 1`.
fn v2_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let events = fsutil::read_flat_keyed(&dir.join("cgroup.events"))?;
    Ok(events.get("frozen").copied() == Some(1))
}

/// Freezes (`true`) or thaws (`false`) and waits for the kernel to finish.
pub(crate) fn set(cg: &Cgroup, freeze: bool) -> Result<(), CgroupError> {
    match freezer(cg)? {
        Freezer::V1(dir) => {
            let (want, value) = if freeze { ("FROZEN", "FROZEN") } else { ("THAWED", "THAWED") };
            fsutil::write(dir, "freezer.state", value)?;
            let path = dir.join("freezer.state");
            let start = Instant::now();
            let mut delay = Duration::from_micros(100);
            let mut tries = 0u32;
            loop {
                let state = fsutil::read(&path)?;
                let state = state.trim();
                if state == want {
                    return Ok(());
                }
                if start.elapsed() > FREEZE_TIMEOUT {
                    if freeze {
                        let _ = fsutil::write(dir, "freezer.state", "THAWED");
                    }
                    return Err(CgroupError::FreezeTimeout {
                        path,
                        wanted: want.to_string(),
                        last: state.to_string(),
                        waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                }
                tries += 1;
                // Tasks that were forking while the freeze started can leave it at FREEZING: ask again.
                if tries == 10 {
                    tries = 0;
                    fsutil::write(dir, "freezer.state", value)?;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(10));
            }
        }
        Freezer::V2(dir) => {
            fsutil::write(dir, "cgroup.freeze", if freeze { "1" } else { "0" })?;
            let start = Instant::now();
            let mut delay = Duration::from_micros(100);
            loop {
                if v2_frozen(dir)? == freeze {
                    return Ok(());
                }
                if start.elapsed() > FREEZE_TIMEOUT {
                    if freeze {
                        let _ = fsutil::write(dir, "cgroup.freeze", "0");
                    }
                    return Err(CgroupError::FreezeTimeout {
                        path: dir.join("cgroup.events"),
                        wanted: if freeze { "frozen 1" } else { "frozen 0" }.to_string(),
                        last: fsutil::read(&dir.join("cgroup.events")).unwrap_or_default(),
                        waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Whether the cgroup is frozen. A missing cgroup is not frozen.
pub(crate) fn is_frozen(cg: &Cgroup) -> Result<bool, CgroupError> {
    match freezer(cg)? {
        Freezer::V1(dir) => {
            Ok(fsutil::read_opt(&dir.join("freezer.state"))?.map(|s| s.trim() == "FROZEN").unwrap_or(false))
        }
        Freezer::V2(dir) => Ok(fsutil::read_opt(&dir.join("cgroup.freeze"))?.map(|s| s.trim() == "1").unwrap_or(false)),
    }
}
