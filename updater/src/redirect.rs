//! Which HTTP redirects a download follows (pure; no I/O). A mirror may send the client on to
//! its own origin by default; to other hosts only between https URLs and only where the
//! mirror's configuration says so; never from https down to http. A redirect decides where the
//! bytes come from, not whether they are trusted (TUF checks every byte), but a downgrade or a
//! hop to an unexpected host leaks the device's requests and defeats TLS that the operator
//! controls.

use serde::Deserialize;
use url::Url;

/// Redirects a client follows for one request, at most.
pub const MAX_REDIRECTS: usize = 5;

/// The redirects a mirror may answer with (`redirects` of a mirror in `repository.mirrors`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Redirects {
    /// Only to the same scheme, host and port (the default).
    #[default]
    SameOrigin,
    /// Also from https to https on any host (CDNs, object stores).
    Https,
    /// None at all.
    Never,
}

impl std::fmt::Display for Redirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redirects::SameOrigin => "same-origin",
            Redirects::Https => "https",
            Redirects::Never => "never",
        })
    }
}

/// The redirect setting of each HTTP mirror; any other URL gets [`Redirects::SameOrigin`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedirectRules {
    mirrors: Vec<(Url, Redirects)>,
}

impl RedirectRules {
    /// Adds the setting of the mirror whose base URL is `base`.
    pub fn set(&mut self, base: Url, redirects: Redirects) {
        self.mirrors.push((base, redirects));
    }

    /// The setting of the mirror `url` belongs to (the longest base it starts with).
    pub fn for_url(&self, url: &Url) -> Redirects {
        self.mirrors
            .iter()
            .filter(|(base, _)| url.as_str().starts_with(base.as_str()))
            .max_by_key(|(base, _)| base.as_str().len())
            .map_or(Redirects::SameOrigin, |(_, r)| *r)
    }
}

/// Why a redirect was not followed (URLs as text: the error stays small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{from} redirected {hops} times; at most {MAX_REDIRECTS} are followed: fix the mirror URL to name the repository itself")]
    TooMany { from: String, hops: usize },
    #[error("{from} redirected to {to}, and the mirror's setting is redirects = \"never\": use the URL it redirects to as the mirror, or allow redirects for it in repository.mirrors")]
    Never { from: String, to: String },
    #[error("{from} redirected to {to}, from https down to http: refused whatever the settings; fix the server or the mirror URL")]
    Downgrade { from: String, to: String },
    #[error("{from} redirected to {to}, another origin, and the mirror allows {allowed} redirects only: use the URL it redirects to as the mirror{}", if from.starts_with("https:") && to.starts_with("https:") { ", or set redirects = \"https\" for this mirror in repository.mirrors" } else { "" })]
    CrossOrigin {
        from: String,
        to: String,
        allowed: Redirects,
    },
}

/// Whether a request first sent to `first` may follow its `hops`-th redirect to `next`.
pub fn check(rule: Redirects, first: &Url, next: &Url, hops: usize) -> Result<(), Refusal> {
    let (from, to) = (first.to_string(), next.to_string());
    if hops > MAX_REDIRECTS {
        return Err(Refusal::TooMany { from, hops });
    }
    if rule == Redirects::Never {
        return Err(Refusal::Never { from, to });
    }
    if first.scheme() == "https" && next.scheme() != "https" {
        return Err(Refusal::Downgrade { from, to });
    }
    let same_origin = first.origin() == next.origin();
    let https_hop = rule == Redirects::Https && first.scheme() == "https";
    if same_origin || https_hop {
        Ok(())
    } else {
        Err(Refusal::CrossOrigin {
            from,
            to,
            allowed: rule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// Every rule against every kind of hop: same origin, other path, other port, other host,
    /// upgrade, downgrade.
    #[test]
    fn each_rule_against_each_kind_of_hop() {
        use Redirects::*;
        let hops = [
            // (from, to, same-origin allows, https allows)
            ("https://a.example/r/", "https://a.example/s/x", true, true),
            (
                "https://a.example/r/",
                "https://a.example:8443/x",
                false,
                true,
            ),
            ("https://a.example/r/", "https://cdn.example/x", false, true),
            ("https://a.example/r/", "http://a.example/x", false, false),
            ("https://a.example/r/", "http://cdn.example/x", false, false),
            ("http://a.example/r/", "http://a.example/s/x", true, true),
            ("http://a.example/r/", "http://a.example:81/x", false, false),
            ("http://a.example/r/", "http://cdn.example/x", false, false),
            ("http://a.example/r/", "https://a.example/x", false, false),
            ("http://a.example/r/", "https://cdn.example/x", false, false),
        ];
        for (from, to, same, https) in hops {
            let (from, to) = (url(from), url(to));
            assert_eq!(
                check(SameOrigin, &from, &to, 1).is_ok(),
                same,
                "{from} -> {to}"
            );
            assert_eq!(check(Https, &from, &to, 1).is_ok(), https, "{from} -> {to}");
            assert!(
                matches!(check(Never, &from, &to, 1), Err(Refusal::Never { .. })),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn a_downgrade_is_named_and_too_many_hops_are_refused() {
        let from = url("https://a.example/r/");
        let err = check(Redirects::Https, &from, &url("http://a.example/x"), 1).unwrap_err();
        assert!(matches!(err, Refusal::Downgrade { .. }), "{err:?}");
        assert!(err.to_string().contains("down to http"), "{err}");
        let same = url("https://a.example/r/x");
        assert!(check(Redirects::SameOrigin, &from, &same, MAX_REDIRECTS).is_ok());
        let err = check(Redirects::SameOrigin, &from, &same, MAX_REDIRECTS + 1).unwrap_err();
        assert!(matches!(err, Refusal::TooMany { .. }), "{err:?}");
    }

    #[test]
    fn the_hint_names_the_setting_only_where_it_would_help() {
        let https = check(
            Redirects::SameOrigin,
            &url("https://a.example/r/"),
            &url("https://cdn.example/x"),
            1,
        )
        .unwrap_err();
        assert!(
            https.to_string().contains("set redirects = \"https\""),
            "{https}"
        );
        let http = check(
            Redirects::Https,
            &url("http://a.example/r/"),
            &url("http://cdn.example/x"),
            1,
        )
        .unwrap_err();
        assert!(!http.to_string().contains("set redirects"), "{http}");
    }

    #[test]
    fn rules_apply_to_urls_below_their_mirror() {
        let mut rules = RedirectRules::default();
        rules.set(url("https://a.example/repo/"), Redirects::Https);
        rules.set(url("https://a.example/repo/beta/"), Redirects::Never);
        let r = |s: &str| rules.for_url(&url(s));
        assert_eq!(r("https://a.example/repo/targets/x"), Redirects::Https);
        assert_eq!(
            r("https://a.example/repo/beta/metadata/1.root.json"),
            Redirects::Never
        );
        assert_eq!(r("https://a.example/other/x"), Redirects::SameOrigin);
        assert_eq!(r("https://b.example/repo/x"), Redirects::SameOrigin);
    }
}
