//! Which platforms of an index a load takes.

use super::archive::PlatformSpec;

/// Which platforms of an index to load: all of them unless `os` or `arch` (or both) are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformFilter {
    /// `linux`, `windows`, ...
    pub os: Option<String>,
    /// `amd64`, `arm64`, ... (`arm64/v8`: with a variant).
    pub arch: Option<String>,
}

impl PlatformFilter {
    /// Whether a manifest of this platform is loaded (one that names none only when no platform is asked for).
    pub(crate) fn accepts(&self, p: Option<&PlatformSpec>) -> bool {
        let Some(p) = p else { return self.os.is_none() && self.arch.is_none() };
        let os_ok = self.os.as_deref().is_none_or(|os| os == p.os);
        let arch_ok = self.arch.as_deref().is_none_or(|want| {
            let (arch, variant) = want.split_once('/').map_or((want, None), |(a, v)| (a, Some(v)));
            arch == p.architecture && variant.is_none_or(|v| p.variant.as_deref() == Some(v))
        });
        os_ok && arch_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_filter() {
        let p = |os: &str, arch: &str, variant: Option<&str>| PlatformSpec {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        };
        let all = PlatformFilter::default();
        assert!(all.accepts(Some(&p("linux", "arm64", Some("v8")))) && all.accepts(None));
        let arm = PlatformFilter { os: Some("linux".into()), arch: Some("arm64".into()) };
        assert!(arm.accepts(Some(&p("linux", "arm64", Some("v8")))));
        assert!(!arm.accepts(Some(&p("linux", "amd64", None))) && !arm.accepts(None));
        let v7 = PlatformFilter { os: None, arch: Some("arm/v7".into()) };
        assert!(v7.accepts(Some(&p("linux", "arm", Some("v7")))) && !v7.accepts(Some(&p("linux", "arm", Some("v6")))));
    }
}
