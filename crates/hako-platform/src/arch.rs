//! CPU architectures in Go's names (what image indexes use) and which image architecture/variant a host
//! runs. Shared by Linux and Windows images: the architecture and variant rules do not depend on the OS.

/// Go's architecture name and variant for the common aliases (`x86_64` is `amd64`, `aarch64` is `arm64`,
/// `armhf` is `arm/v7`), lowercase, with arm64's default variant `v8` folded away.
pub fn normalize(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_lowercase();
    let arch = match arch.as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "i386" | "i686" => "386".to_string(),
        "armhf" => return ("arm".into(), Some("v7".into())),
        "armel" => return ("arm".into(), Some("v6".into())),
        _ => arch,
    };
    let is_default = |v: &String| v.is_empty() || (arch == "arm64" && v == "v8");
    let variant = variant.map(str::to_lowercase).filter(|v| !is_default(v));
    (arch, variant)
}

/// The architecture and variant of the machine this code runs on, in Go's names.
pub fn this_host() -> (String, Option<String>) {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    (arch.to_string(), variant.map(str::to_string))
}

/// How well an image of `image` architecture/variant suits a host of `host` architecture/variant:
/// `None` when the host cannot run it natively, higher is better (3: same variant, 2: neither has one,
/// 1: an image without a variant, or an older arm variant on a newer arm host).
pub fn score(image: (&str, Option<&str>), host: (&str, Option<&str>)) -> Option<u32> {
    let (i_arch, i_var) = normalize(image.0, image.1);
    let (h_arch, h_var) = normalize(host.0, host.1);
    if i_arch != h_arch {
        // A 64-bit x86 host runs 386 binaries too, but hako does not offer that as a match.
        return None;
    }
    match (&i_var, &h_var) {
        (None, None) => Some(2),
        (Some(i), Some(h)) if i == h => Some(3),
        (None, Some(_)) => Some(1),
        // A host of arm/v7 runs arm/v6 and arm/v5 images too.
        (Some(i), Some(h)) if i_arch == "arm" => {
            let n = |v: &str| v.trim_start_matches('v').parse::<u32>().ok();
            match (n(i), n(h)) {
                (Some(i), Some(h)) if i < h => Some(1),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `arch` or `arch/variant`.
pub fn describe(arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{}/{}", arch, v),
        None => arch.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_variants() {
        assert_eq!(normalize("x86_64", None), ("amd64".to_string(), None));
        assert_eq!(normalize("aarch64", Some("v8")), ("arm64".to_string(), None));
        assert_eq!(normalize("armhf", None), ("arm".to_string(), Some("v7".to_string())));
        assert_eq!(score(("amd64", None), ("x86_64", None)), Some(2));
        assert_eq!(score(("arm64", Some("v8")), ("arm64", None)), Some(2));
        assert_eq!(score(("arm", Some("v7")), ("arm", Some("v7"))), Some(3));
        assert_eq!(score(("arm", Some("v6")), ("arm", Some("v7"))), Some(1));
        assert_eq!(score(("arm", Some("v7")), ("arm", Some("v6"))), None);
        assert_eq!(score(("arm", None), ("arm", Some("v7"))), Some(1));
        assert_eq!(score(("arm64", None), ("amd64", None)), None);
        assert_eq!(score(("s390x", None), ("amd64", None)), None);
    }
}
