//! The guest's side of the container's network (see hako-vm's `net` module): the host took the interfaces of
//! the engine's network namespace over, each as a virtio-net device, and sends what they were: name, MAC
//! address, MTU, addresses, routes. The agent gives the guest's interfaces (in device order) exactly that, in
//! the guest's own network namespace, which the container then shares. Classic ioctls do all of it, so the
//! agent needs no netlink code: names, MAC, MTU and link state through `SIOCSIF*`, IPv4 addresses through
//! `SIOCSIFADDR`/`SIOCSIFNETMASK` (further ones on `name:N` aliases), IPv6 ones through `in6_ifreq`, routes
//! through `SIOCADDRT`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use hako_proto::{NetIf, NetRoute};

use crate::sys::{ifreq, set_link, socket};

/// What failed, for the error of the Create that asked.
fn err(what: impl std::fmt::Display, e: io::Error) -> String {
    format!("{what}: {e}")
}

fn ioctl<T>(fd: &OwnedFd, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
    // SAFETY: every caller passes the structure `request` reads or writes, owned for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as *mut T) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; reading one as the other is what the API expects.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    bytes.try_into().ok()
}

/// `10.0.0.5/16` as an address and a prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let p: u8 = p.parse().ok().filter(|p| *p <= max)?;
    Some((addr, p))
}

fn v4_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) })
}

/// The guest's interfaces other than loopback with their MAC addresses, in the order the guest found them.
fn guest_interfaces() -> io::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/net")? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}")).map(|s| s.trim().to_string());
        let index: u32 = sys("ifindex")?.parse().unwrap_or(0);
        found.push((index, name.clone(), sys("address").unwrap_or_default()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, n, mac)| (n, mac)).collect())
}

/// Which guest interface stands for the host's `i`-th: the one with the device's MAC address
/// ([`hako_proto::device_mac`]), else the `i`-th found (a guest whose MACs were set already).
fn pick(guest: &[(String, String)], i: usize) -> Option<&str> {
    let mac = hako_proto::device_mac(i);
    guest.iter().find(|(_, m)| *m == mac).or_else(|| guest.get(i)).map(|(n, _)| n.as_str())
}

fn add_v4_address(fd: &OwnedFd, label: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let mut req = ifreq(label)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    ioctl(fd, libc::SIOCSIFADDR, &mut req)?;
    let mut req = ifreq(label)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(v4_mask(prefix));
    ioctl(fd, libc::SIOCSIFNETMASK, &mut req)
}

fn ifindex(name: &str) -> io::Result<i32> {
    Ok(nix::net::if_::if_nametoindex(name)? as i32)
}

fn add_v6_address(name: &str, addr: Ipv6Addr, prefix: u8) -> io::Result<()> {
    // The namespace already did duplicate address detection for this address: do not wait for it again.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
    let fd = socket(nix::sys::socket::AddressFamily::Inet6)?;
    let mut req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr { s6_addr: addr.octets() },
        ifr6_prefixlen: prefix as u32,
        ifr6_ifindex: ifindex(name)?,
    };
    ioctl(&fd, libc::SIOCSIFADDR, &mut req)
}

/// struct rtentry of <net/route.h> (the libc crate has it only for musl).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// struct in6_rtmsg of <linux/ipv6_route.h> (the libc crate keeps its fields private).
#[repr(C)]
struct In6Rtmsg {
    rtmsg_dst: [u8; 16],
    rtmsg_src: [u8; 16],
    rtmsg_gateway: [u8; 16],
    rtmsg_type: u32,
    rtmsg_dst_len: u16,
    rtmsg_src_len: u16,
    rtmsg_metric: u32,
    rtmsg_info: libc::c_ulong,
    rtmsg_flags: u32,
    rtmsg_ifindex: libc::c_int,
}

fn add_route(fd4: &OwnedFd, dev: &str, route: &NetRoute) -> Result<(), String> {
    let what = format!("route {} via {} on {dev}", route.destination, route.gateway.as_deref().unwrap_or("the link"));
    let bad = || format!("{what}: not an address");
    let (dst, prefix) = match route.destination.as_str() {
        "default" => (None, 0),
        d => parse_cidr(d).map(|(a, p)| (Some(a), p)).ok_or_else(bad)?,
    };
    let gateway: Option<IpAddr> = match &route.gateway {
        Some(g) => Some(g.parse().map_err(|_| bad())?),
        None => None,
    };
    let v6 = dst.map(|d| d.is_ipv6()).or(gateway.map(|g| g.is_ipv6())).unwrap_or(false);
    let flags = libc::RTF_UP | if gateway.is_some() { libc::RTF_GATEWAY } else { 0 };
    let mixed = || format!("{what}: the destination and the gateway are not of one address family");
    let result = if v6 {
        let d = match dst {
            Some(IpAddr::V6(d)) => d,
            Some(IpAddr::V4(_)) => return Err(mixed()),
            None => Ipv6Addr::UNSPECIFIED,
        };
        let g = match gateway {
            Some(IpAddr::V6(g)) => g,
            Some(IpAddr::V4(_)) => return Err(mixed()),
            None => Ipv6Addr::UNSPECIFIED,
        };
        let fd6 = socket(nix::sys::socket::AddressFamily::Inet6).map_err(|e| err(&what, e))?;
        let mut rt = In6Rtmsg {
            rtmsg_dst: d.octets(),
            rtmsg_src: [0; 16],
            rtmsg_gateway: g.octets(),
            rtmsg_type: 0,
            rtmsg_dst_len: prefix as u16,
            rtmsg_src_len: 0,
            rtmsg_metric: 1,
            rtmsg_info: 0,
            rtmsg_flags: flags as u32,
            rtmsg_ifindex: ifindex(dev).map_err(|e| err(&what, e))?,
        };
        ioctl(&fd6, libc::SIOCADDRT, &mut rt)
    } else {
        let d = match dst {
            Some(IpAddr::V4(d)) => d,
            Some(IpAddr::V6(_)) => return Err(mixed()),
            None => Ipv4Addr::UNSPECIFIED,
        };
        let g = match gateway {
            Some(IpAddr::V4(g)) => g,
            Some(IpAddr::V6(_)) => return Err(mixed()),
            None => Ipv4Addr::UNSPECIFIED,
        };
        let mut dev_c: Vec<libc::c_char> = dev.bytes().map(|b| b as libc::c_char).chain([0]).collect();
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_in(d),
            rt_gateway: sockaddr_in(g),
            rt_genmask: sockaddr_in(v4_mask(prefix)),
            rt_flags: flags,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: dev_c.as_mut_ptr(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        ioctl(fd4, libc::SIOCADDRT, &mut rt)
    };
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r.map_err(|e| err(&what, e)),
    }
}

/// Gives the guest's interfaces what `ifs` says, in device order.
pub(crate) fn configure(ifs: &[NetIf]) -> Result<(), String> {
    let guest = guest_interfaces().map_err(|e| err("listing /sys/class/net", e))?;
    if guest.len() < ifs.len() {
        return Err(format!(
            "the host sent {} network interfaces but the VM has {} ({guest:?}): the VM was started without its network devices",
            ifs.len(),
            guest.len()
        ));
    }
    let fd = socket(nix::sys::socket::AddressFamily::Inet).map_err(|e| err("socket", e))?;
    let order: Vec<String> = (0..ifs.len()).filter_map(|i| pick(&guest, i).map(str::to_string)).collect();
    for (current, want) in order.iter().zip(ifs) {
        let name = want.name.as_str();
        let mac = parse_mac(&want.mac).ok_or_else(|| format!("{name}: bad MAC address {:?}", want.mac))?;
        set_link(current, false).map_err(|e| err(format!("taking {current} down"), e))?;
        if current != name {
            let mut req = ifreq(current).map_err(|e| err(current, e))?;
            let new = ifreq(name).map_err(|e| err(name, e))?;
            req.ifr_ifru.ifru_newname = new.ifr_name;
            ioctl(&fd, libc::SIOCSIFNAME, &mut req).map_err(|e| err(format!("renaming {current} to {name}"), e))?;
        }
        let mut req = ifreq(name).map_err(|e| err(name, e))?;
        // SAFETY: sockaddr is plain data; all-zero is a valid value.
        let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
        hw.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in hw.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = hw;
        ioctl(&fd, libc::SIOCSIFHWADDR, &mut req).map_err(|e| err(format!("setting the MAC address of {name}"), e))?;
        let mut req = ifreq(name).map_err(|e| err(name, e))?;
        req.ifr_ifru.ifru_mtu = want.mtu as libc::c_int;
        ioctl(&fd, libc::SIOCSIFMTU, &mut req).map_err(|e| err(format!("setting the MTU of {name}"), e))?;
        set_link(name, true).map_err(|e| err(format!("bringing {name} up"), e))?;
        let mut v4 = 0;
        for a in &want.addresses {
            match parse_cidr(a) {
                Some((IpAddr::V4(addr), p)) => {
                    let label = if v4 == 0 { name.to_string() } else { format!("{name}:{v4}") };
                    add_v4_address(&fd, &label, addr, p).map_err(|e| err(format!("adding {a} to {label}"), e))?;
                    v4 += 1;
                }
                Some((IpAddr::V6(addr), p)) => {
                    add_v6_address(name, addr, p).map_err(|e| err(format!("adding {a} to {name}"), e))?
                }
                None => return Err(format!("{name}: bad address {a:?}")),
            }
        }
        for r in &want.routes {
            add_route(&fd, name, r)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_masks_and_macs_parse() {
        assert_eq!(parse_cidr("10.88.0.5/16"), Some(("10.88.0.5".parse().unwrap(), 16)));
        assert_eq!(parse_cidr("fd00::5/64"), Some(("fd00::5".parse().unwrap(), 64)));
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("10.0.0.1"), None);
        assert_eq!(v4_mask(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(v4_mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(v4_mask(32), Ipv4Addr::BROADCAST);
        assert_eq!(parse_mac("6e:8d:5a:bb:59:d6"), Some([0x6e, 0x8d, 0x5a, 0xbb, 0x59, 0xd6]));
        assert_eq!(parse_mac("6e:8d:5a"), None);
    }

    #[test]
    fn devices_are_matched_by_their_mac_address_else_by_order() {
        let g = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let found = g(&[("eth0", "52:54:00:68:6b:01"), ("eth1", "52:54:00:68:6b:00")]);
        assert_eq!(pick(&found, 0), Some("eth1"));
        assert_eq!(pick(&found, 1), Some("eth0"));
        let set = g(&[("eth0", "6e:8d:5a:bb:59:d6"), ("eth1", "6e:8d:5a:bb:59:d7")]);
        assert_eq!(pick(&set, 1), Some("eth1"));
        assert_eq!(pick(&set, 2), None);
    }

    #[test]
    fn the_route_entry_has_the_kernels_layout() {
        // struct rtentry on x86_64: 120 bytes, rt_dev at offset 88.
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        // SAFETY: RtEntry is plain data (integers and raw pointers); all-zero is a valid value.
        let rt: RtEntry = unsafe { std::mem::zeroed() };
        let base = &rt as *const RtEntry as usize;
        assert_eq!(&rt.rt_dev as *const _ as usize - base, 88);
        // struct in6_rtmsg: 80 bytes, rtmsg_ifindex last.
        assert_eq!(std::mem::size_of::<In6Rtmsg>(), 80);
    }
}
