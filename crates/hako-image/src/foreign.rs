//! Images this host cannot unpack or run: Windows images on Linux (and any other OS's), refused before
//! anything is written, with the host that would run them.
//!
//! The Windows rules are the two stated by Microsoft's version-compatibility page (see
//! shared/reference/windows-containers.md): process isolation needs a host of the image's build, Hyper-V
//! isolation a host of that build or newer. The full engine (LTSC and Annual Channel, Windows 11's
//! exceptions, lifecycle dates) is `hako compat`'s; this module only words the refusal.

use crate::store::ImageRecord;

/// An image for another operating system than this host's.
#[derive(Debug, thiserror::Error)]
#[error("image {image} is a {platform} image and this is a {host} host: hako reads its manifest and config (`hako image inspect {image}`) but does not unpack or run it{hint}")]
pub struct ForeignImage {
    /// The image.
    pub image: String,
    /// Its platform, as `os/architecture[/variant] [os.version]`.
    pub platform: String,
    /// This host's OS.
    pub host: String,
    /// Which host would run it, and how.
    pub hint: String,
}

/// The build number (third field) of a Windows `os.version` such as `10.0.20348.2113`.
pub fn windows_build(os_version: &str) -> Option<u32> {
    os_version.split('.').nth(2).and_then(|b| b.parse().ok())
}

/// Refuses an image whose OS is not this host's (an image that states no OS is taken as this host's).
pub fn check_host(image: &ImageRecord) -> Result<(), ForeignImage> {
    let os = image.platform.os.as_str();
    let host = std::env::consts::OS;
    if os.is_empty() || os == host {
        return Ok(());
    }
    let hint = if os == "windows" {
        let version = image.platform.os_version.as_deref();
        let foreign = image.layers.iter().filter(|l| l.is_foreign()).count();
        let foreign = if foreign > 0 {
            format!(
                "; its {foreign} foreign layer(s) are fetched by that host from their URLs, hako did not download them"
            )
        } else {
            String::new()
        };
        match version.and_then(|v| windows_build(v).map(|b| (v, b))) {
            Some((v, build)) => format!(
                ": it runs on a Windows host of build {build} with process isolation (the host's build must be \
                 the image's: {}), or on a Windows host of build {build} or newer with Hyper-V isolation \
                 (`--isolation vm`){foreign}",
                v.rsplitn(2, '.').last().unwrap_or(v)
            ),
            None => format!(
                ": it states no os.version, so the Windows build that runs it is unknown (a host of the same build \
                 as its base image runs it with process isolation, a newer one with Hyper-V isolation){foreign}"
            ),
        }
    } else {
        format!(": run it on a {os} host")
    };
    Err(ForeignImage { image: image.name.clone(), platform: image.platform.to_string(), host: host.to_string(), hint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Descriptor;
    use crate::platform::Platform;
    use crate::Digest;

    fn record(os: &str, version: Option<&str>, foreign: bool) -> ImageRecord {
        let d = |c: u8| Digest::of(&[c]);
        let media =
            if foreign { crate::manifest::FOREIGN_LAYERS[0] } else { "application/vnd.oci.image.layer.v1.tar+gzip" };
        let layer = Descriptor {
            media_type: media.into(),
            digest: d(2),
            size: 10,
            platform: None,
            urls: vec![],
            annotations: Default::default(),
        };
        ImageRecord {
            name: "r/x:1".into(),
            digest: d(0),
            index_digest: None,
            media_type: crate::manifest::OCI_MANIFEST.into(),
            platform: Platform {
                os: os.into(),
                architecture: "amd64".into(),
                os_version: version.map(str::to_string),
                ..Platform::default()
            },
            config: Descriptor { digest: d(1), ..layer.clone() },
            layers: vec![layer],
            size: 10,
            pulled: 0,
        }
    }

    #[test]
    fn windows_images_name_the_build_and_mode_that_run_them() {
        let e = check_host(&record("windows", Some("10.0.20348.2113"), true)).unwrap_err().to_string();
        assert!(
            e.contains("windows/amd64 10.0.20348.2113 image")
                && e.contains("build 20348 with process isolation")
                && e.contains("image's: 10.0.20348)")
                && e.contains("build 20348 or newer with Hyper-V isolation")
                && e.contains("1 foreign layer(s)"),
            "{e}"
        );
        let e = check_host(&record("windows", None, false)).unwrap_err().to_string();
        assert!(e.contains("states no os.version") && !e.contains("foreign"), "{e}");
        assert!(check_host(&record(std::env::consts::OS, None, false)).is_ok());
        assert!(check_host(&record("", None, false)).is_ok());
        assert_eq!(windows_build("10.0.17763.5576"), Some(17763));
        assert_eq!(windows_build("10.0"), None);
    }
}
