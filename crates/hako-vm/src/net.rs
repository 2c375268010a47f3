//! The container's network, carried into its VM. An engine (podman, containerd's CNI) prepares a network
//! namespace with an interface, addresses and routes, and names it in `linux.namespaces` by path. A VM cannot
//! join a host namespace, so hako takes the interfaces over instead, as Kata Containers does: for each
//! Ethernet interface of that namespace the supervisor creates a tap device there, and tc mirrors every frame
//! between the two (ingress of one becomes egress of the other); QEMU gets the tap as a virtio-net device, and
//! the agent gives the guest's interface the same name, MAC address, MTU, addresses and routes. The container
//! then runs in the guest's own network namespace, which holds that interface: the engine's port mappings,
//! DNS and routes work unchanged, because the guest now answers for the namespace's address.
//!
//! The namespace is read and changed with iproute2's `ip` and `tc`, run in it; taps are opened through
//! /dev/net/tun by a thread that entered the namespace, so they vanish with the last descriptor (QEMU's).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use hako_proto::{NetIf, NetRoute};
use serde_json::Value;

use crate::VmError;

/// The name of the tap for interface `i`.
pub fn tap_name(i: usize) -> String {
    format!("hako{i}")
}

fn setup_err(what: impl std::fmt::Display) -> VmError {
    VmError::Setup(format!("VM networking: {what}"))
}

/// Runs `f` on a thread that entered the network namespace at `netns`, or a new empty one when `None`.
fn in_netns<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T, VmError> + Send + 'static,
) -> Result<T, VmError> {
    let ns = match netns {
        Some(p) => {
            Some(File::open(p).map_err(|e| setup_err(format!("opening the network namespace {}: {e}", p.display())))?)
        }
        None => None,
    };
    std::thread::spawn(move || {
        // Either changes only this thread's network namespace.
        let r = match &ns {
            Some(f) => nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET),
            None => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET),
        };
        if let Err(e) = r {
            return Err(setup_err(format!("entering the network namespace: {}", std::io::Error::from(e))));
        }
        f()
    })
    .join()
    .map_err(|_| setup_err("the network thread panicked"))?
}

/// Runs an iproute2 command (`ip` or `tc`) in the calling thread's network namespace and returns its output.
fn iproute(prog: &str, args: &[&str]) -> Result<String, VmError> {
    let out = Command::new(prog).args(args).output().map_err(|e| {
        setup_err(format!("running {prog}: {e}: VM networking needs iproute2 (apt-get install iproute2)"))
    })?;
    if !out.status.success() {
        return Err(setup_err(format!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Ethernet interfaces of `links` (`ip -j addr show`), their global addresses, and the routes of `routes`
/// (`ip -j route show` for IPv4 and IPv6) that are not the kernel's own (those come with the addresses).
pub fn parse(links: &str, routes: &[&str]) -> Result<Vec<NetIf>, VmError> {
    let bad = |what: &str, e: serde_json::Error| setup_err(format!("reading {what}: {e}"));
    let links: Vec<Value> = serde_json::from_str(links).map_err(|e| bad("ip -j addr", e))?;
    let mut out = Vec::new();
    for l in links {
        if l["link_type"] != "ether" {
            continue;
        }
        let name = l["ifname"].as_str().unwrap_or_default().to_string();
        let addresses = l["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
            .collect();
        out.push(NetIf {
            name,
            mac: l["address"].as_str().unwrap_or_default().to_string(),
            mtu: l["mtu"].as_u64().unwrap_or(1500) as u32,
            addresses,
            routes: Vec::new(),
        });
    }
    for table in routes {
        let table: Vec<Value> = serde_json::from_str(table).map_err(|e| bad("ip -j route", e))?;
        for r in table {
            if r["protocol"] == "kernel" {
                continue;
            }
            let Some(iface) = out.iter_mut().find(|i| r["dev"].as_str() == Some(i.name.as_str())) else { continue };
            let Some(dst) = r["dst"].as_str() else { continue };
            iface
                .routes
                .push(NetRoute { destination: dst.to_string(), gateway: r["gateway"].as_str().map(str::to_string) });
        }
    }
    Ok(out)
}

/// The interfaces of the network namespace at `netns` that a VM takes over. The host's own namespace is
/// refused: taking its interfaces over would cut the host off its network.
pub fn inspect(netns: &Path) -> Result<Vec<NetIf>, VmError> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let theirs = id(netns).map_err(|e| {
        VmError::Config(format!(
            "linux.namespaces: the network namespace {}: {e}: give the path of an existing network namespace",
            netns.display()
        ))
    })?;
    if id(Path::new("/proc/self/ns/net")).ok() == Some(theirs) {
        return Err(VmError::Config(format!(
            "linux.namespaces: the network namespace {} is the host's: a VM would take the host's interfaces over; \
             give the container a network namespace of its own (or none, for loopback only), or use process isolation",
            netns.display()
        )));
    }
    in_netns(Some(netns), || {
        let links = iproute("ip", &["-j", "addr", "show"])?;
        let v4 = iproute("ip", &["-j", "-4", "route", "show"])?;
        let v6 = iproute("ip", &["-j", "-6", "route", "show"])?;
        parse(&links, &[&v4, &v6])
    })
    .map_err(|e| match e {
        VmError::Setup(m) if !m.contains(&netns.display().to_string()) => {
            VmError::Setup(format!("{m} (network namespace {})", netns.display()))
        }
        other => other,
    })
}

/// Opens tap `name` in the calling thread's network namespace (created for this descriptor; it goes away
/// with the last one).
fn open_tap(name: &str) -> Result<OwnedFd, VmError> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| setup_err(format!("opening /dev/net/tun: {e}")))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads the ifreq we own (nix has no wrapper for it).
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &req) } != 0 {
        return Err(setup_err(format!("creating tap {name}: {}", std::io::Error::last_os_error())));
    }
    Ok(OwnedFd::from(tun))
}

/// Creates one tap per interface of `ifs` in the namespace at `netns` and mirrors each interface and its tap
/// into each other; with no namespace (a VM template), the taps go into a new empty namespace and nothing is
/// mirrored. Returns the taps' descriptors, for QEMU.
pub fn connect(netns: Option<&Path>, ifs: &[NetIf]) -> Result<Vec<OwnedFd>, VmError> {
    if ifs.is_empty() {
        return Ok(Vec::new());
    }
    let ifs = ifs.to_vec();
    let mirror = netns.is_some();
    in_netns(netns, move || {
        let mut taps = Vec::new();
        for (i, iface) in ifs.iter().enumerate() {
            let tap = tap_name(i);
            taps.push(open_tap(&tap)?);
            if !mirror {
                continue;
            }
            iproute("ip", &["link", "set", &tap, "mtu", &iface.mtu.to_string(), "up"])?;
            for (from, to) in [(iface.name.as_str(), tap.as_str()), (tap.as_str(), iface.name.as_str())] {
                // A qdisc left by an earlier VM in this namespace is replaced.
                let _ = iproute("tc", &["qdisc", "del", "dev", from, "ingress"]);
                iproute("tc", &["qdisc", "add", "dev", from, "ingress"])?;
                iproute(
                    "tc",
                    &[
                        "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match", "u8", "0",
                        "0", "action", "mirred", "egress", "redirect", "dev", to,
                    ],
                )?;
            }
        }
        Ok(taps)
    })
}

/// `n` unconnected taps in a new empty namespace: the network devices of a VM template.
pub fn scratch_taps(n: usize) -> Result<Vec<OwnedFd>, VmError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    in_netns(None, move || (0..n).map(|i| open_tap(&tap_name(i))).collect())
}

/// Removes the mirroring from the interfaces of `ifs` in the namespace at `netns` (the taps are gone with
/// QEMU). Best effort: the namespace may be gone too.
pub fn disconnect(netns: &Path, ifs: &[NetIf]) {
    let names: Vec<String> = ifs.iter().map(|i| i.name.clone()).collect();
    let _ = in_netns(Some(netns), move || {
        for n in &names {
            let _ = iproute("tc", &["qdisc", "del", "dev", n, "ingress"]);
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: &str = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
        {"ifindex":2,"ifname":"eth0","mtu":1450,"link_type":"ether","address":"6e:8d:5a:bb:59:d6","addr_info":[
            {"family":"inet","local":"10.88.0.5","prefixlen":16,"scope":"global"},
            {"family":"inet6","local":"fd00::5","prefixlen":64,"scope":"global"},
            {"family":"inet6","local":"fe80::6c8d:5aff:febb:59d6","prefixlen":64,"scope":"link"}]}]"#;
    const V4: &str = r#"[{"dst":"default","gateway":"10.88.0.1","dev":"eth0","flags":[]},
        {"dst":"10.88.0.0/16","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.88.0.5","flags":[]}]"#;
    const V6: &str = r#"[{"dst":"fd00::/64","dev":"eth0","protocol":"kernel","metric":256},
        {"dst":"default","gateway":"fd00::1","dev":"eth0","metric":1024},
        {"dst":"default","gateway":"fd00::9","dev":"other0","metric":1024}]"#;

    #[test]
    fn ethernet_interfaces_their_global_addresses_and_own_routes_are_taken() {
        let ifs = parse(LINKS, &[V4, V6]).unwrap();
        assert_eq!(ifs.len(), 1, "{ifs:?}");
        let e = &ifs[0];
        assert_eq!((e.name.as_str(), e.mac.as_str(), e.mtu), ("eth0", "6e:8d:5a:bb:59:d6", 1450));
        assert_eq!(e.addresses, ["10.88.0.5/16", "fd00::5/64"]);
        let routes: Vec<(&str, Option<&str>)> =
            e.routes.iter().map(|r| (r.destination.as_str(), r.gateway.as_deref())).collect();
        assert_eq!(routes, [("default", Some("10.88.0.1")), ("default", Some("fd00::1"))]);
    }

    #[test]
    fn the_hosts_own_namespace_and_a_missing_one_are_refused() {
        let e = inspect(Path::new("/proc/self/ns/net")).unwrap_err().to_string();
        assert!(e.contains("is the host's") && e.contains("use process isolation"), "{e}");
        let e = inspect(Path::new("/run/netns/hako-no-such-namespace")).unwrap_err().to_string();
        assert!(e.contains("hako-no-such-namespace") && e.contains("existing network namespace"), "{e}");
    }

    #[test]
    fn a_namespace_with_only_loopback_gives_no_interfaces_and_bad_json_is_an_error() {
        let lo_only = r#"[{"ifname":"lo","link_type":"loopback","addr_info":[]}]"#;
        assert!(parse(lo_only, &["[]"]).unwrap().is_empty());
        let e = parse("not json", &[]).unwrap_err().to_string();
        assert!(e.contains("ip -j addr"), "{e}");
    }

    #[test]
    fn a_namespace_is_read_and_its_interface_mirrored_to_a_tap() {
        // Root only: a private namespace with a veth pair holding an address and a default route.
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let name = format!("hako-net-test-{}", std::process::id());
        let run = |args: &[&str]| Command::new("ip").args(args).status().map(|s| s.success()).unwrap_or(false);
        assert!(run(&["netns", "add", &name]));
        let ns = format!("/run/netns/{name}");
        let setup = [
            "link add v0 type veth peer name v1",
            "addr add 10.77.0.2/24 dev v0",
            "link set v0 up",
            "link set v1 up",
            "route add default via 10.77.0.1",
        ];
        for s in setup {
            let mut a = vec!["-n", &name];
            a.extend(s.split(' '));
            assert!(run(&a), "ip {s}");
        }
        let result = (|| {
            let ifs = inspect(Path::new(&ns))?;
            let v0 = ifs.iter().find(|i| i.name == "v0").cloned().expect("v0");
            assert_eq!(v0.addresses, ["10.77.0.2/24"]);
            assert_eq!(v0.routes[0].gateway.as_deref(), Some("10.77.0.1"));
            let taps = connect(Some(Path::new(&ns)), std::slice::from_ref(&v0))?;
            assert_eq!(taps.len(), 1);
            let filters =
                in_netns(Some(Path::new(&ns)), || iproute("tc", &["filter", "show", "dev", "v0", "ingress"]))?;
            assert!(filters.contains("hako0"), "{filters}");
            disconnect(Path::new(&ns), &[v0]);
            let qdiscs = in_netns(Some(Path::new(&ns)), || iproute("tc", &["qdisc", "show", "dev", "v0"]))?;
            assert!(!qdiscs.contains("ingress"), "{qdiscs}");
            Ok::<(), VmError>(())
        })();
        run(&["netns", "del", &name]);
        result.unwrap();
    }
}
