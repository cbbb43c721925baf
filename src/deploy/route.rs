//! Route strings (`host.domain[:port][/path]`) and their resolution against known domains.
//!
//! Mirrors the cf CLI's lookup (cf-v3-api.md 3.6): the whole host part is tried as a domain
//! first (host ""), then everything after the first label (host = first label).
//!
//! Depends on: deploy::api (Domain), deploy::request (an app's routes). Must not: call the API
//! (pure).

use std::fmt;

use super::api::{Domain, DomainGuid, NewRoute};
use super::request::{AppSpec, RouteSpec};

/// A route resolved to a domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteAddress {
    /// Host (may be empty).
    pub host: String,
    /// Domain name.
    pub domain: String,
    pub domain_guid: DomainGuid,
    /// Path (empty or starting with `/`).
    pub path: String,
    /// TCP port.
    pub port: Option<u16>,
}

impl RouteAddress {
    /// The CC `url` form: `host.domain[:port]/path`.
    pub fn url(&self) -> String {
        let mut s = String::new();
        if !self.host.is_empty() {
            s.push_str(&self.host);
            s.push('.');
        }
        s.push_str(&self.domain);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s.push_str(&self.path);
        s
    }

    /// The body of a route creation or lookup.
    pub fn new_route(&self) -> NewRoute {
        NewRoute {
            domain_guid: self.domain_guid.clone(),
            host: self.host.clone(),
            path: self.path.clone(),
            port: self.port,
        }
    }

    /// The `cf` CLI flags naming this route after the domain (`--hostname h --path p --port n`).
    pub fn cf_flags(&self) -> String {
        let mut s = self.domain.clone();
        if !self.host.is_empty() {
            s.push_str(&format!(" --hostname {}", self.host));
        }
        if !self.path.is_empty() {
            s.push_str(&format!(" --path {}", self.path));
        }
        if let Some(p) = self.port {
            s.push_str(&format!(" --port {p}"));
        }
        s
    }
}

impl fmt::Display for RouteAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// A route string split into its parts, before domain resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteParts {
    /// Everything before the port/path (`host.domain`).
    pub fqdn: String,
    /// The port, if any.
    pub port: Option<u16>,
    /// The path, if any (empty or starting with `/`).
    pub path: String,
}

/// Splits `host.domain[:port][/path]`; `None` when the port is not a number or the name is empty.
pub fn split_route(s: &str) -> Option<RouteParts> {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let (hostport, path) = match s.find('/') {
        Some(i) => (&s[..i], s[i..].trim_end_matches('/').to_string()),
        None => (s, String::new()),
    };
    let (fqdn, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (hostport, None),
    };
    if fqdn.is_empty() {
        return None;
    }
    Some(RouteParts {
        fqdn: fqdn.to_ascii_lowercase(),
        port,
        path,
    })
}

/// The domain names a route string could belong to, most specific first.
pub fn candidate_domains(s: &str) -> Vec<String> {
    let Some(parts) = split_route(s) else {
        return Vec::new();
    };
    let mut v = vec![parts.fqdn.clone()];
    if let Some((_, rest)) = parts.fqdn.split_once('.')
        && !rest.is_empty()
    {
        v.push(rest.to_string());
    }
    v
}

/// Resolves a route string against known domains (cf CLI order: whole name, then parent).
pub fn resolve_route(s: &str, domains: &[Domain]) -> Option<RouteAddress> {
    let parts = split_route(s)?;
    let find = |name: &str| domains.iter().find(|d| d.name.eq_ignore_ascii_case(name));
    let (host, domain) = if let Some(d) = find(&parts.fqdn) {
        (String::new(), d)
    } else {
        let (host, rest) = parts.fqdn.split_once('.')?;
        (host.to_string(), find(rest)?)
    };
    Some(RouteAddress {
        host,
        domain: domain.name.clone(),
        domain_guid: domain.guid.clone(),
        path: parts.path,
        port: parts.port,
    })
}

/// A host name derived from an app name (cf CLI: lowercase, non-alphanumerics become `-`).
pub fn hostname_for(app: &str) -> String {
    let mut s: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

/// The route strings the flow needs for an app: its production routes, or the default route.
pub(crate) fn production_route_strings<B>(
    spec: &AppSpec<B>,
    default: Option<&Domain>,
) -> Vec<String> {
    match &spec.routes {
        RouteSpec::Routes(r) => r.clone(),
        RouteSpec::Default => default
            .map(|d| vec![format!("{}.{}", hostname_for(&spec.name), d.name)])
            .unwrap_or_default(),
        RouteSpec::Random | RouteSpec::NoRoute => Vec::new(),
    }
}

/// The temp route string for an app: `<host><suffix>.<domain>` of the first production route
/// resolved against `domains` (app-derived host and the `default` domain when there is none,
/// or it is an apex or TCP route).
pub(crate) fn temp_route_string<B>(
    spec: &AppSpec<B>,
    suffix: &str,
    domains: &[Domain],
    default: Option<&Domain>,
) -> Option<String> {
    let first = production_route_strings(spec, default)
        .into_iter()
        .find_map(|r| resolve_route(&r, domains))
        .filter(|a| a.port.is_none());
    let (host, domain) = match first {
        Some(a) if !a.host.is_empty() && a.host != "*" => (a.host, a.domain),
        Some(a) => (hostname_for(&spec.name), a.domain),
        None => (hostname_for(&spec.name), default?.name.clone()),
    };
    Some(format!("{host}{suffix}.{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<Domain> {
        vec![
            Domain {
                guid: "d1".into(),
                name: "example.com".into(),
                internal: false,
            },
            Domain {
                guid: "d2".into(),
                name: "api.example.com".into(),
                internal: false,
            },
        ]
    }

    #[test]
    fn routes_resolve_whole_name_first_then_parent() {
        let r = resolve_route("api.example.com", &domains()).unwrap();
        assert_eq!((r.host.as_str(), r.domain_guid.as_str()), ("", "d2"));
        let r = resolve_route("myapp.example.com/v1/", &domains()).unwrap();
        assert_eq!(r.host, "myapp");
        assert_eq!(r.path, "/v1");
        assert_eq!(r.url(), "myapp.example.com/v1");
        let r = resolve_route("tcp.example.com:1234", &domains()).unwrap();
        assert_eq!(r.port, Some(1234));
        assert_eq!(r.url(), "tcp.example.com:1234");
        assert!(resolve_route("x.other.org", &domains()).is_none());
        assert!(resolve_route("x.example.com:abc", &domains()).is_none());
    }

    #[test]
    fn candidate_domains_lists_whole_then_parent() {
        assert_eq!(
            candidate_domains("a.b.c/p"),
            vec!["a.b.c".to_string(), "b.c".to_string()]
        );
        assert!(candidate_domains("").is_empty());
    }

    #[test]
    fn hostnames_are_sanitized() {
        assert_eq!(hostname_for("My_App v2"), "my-app-v2");
    }

    #[test]
    fn cf_flags_name_every_part() {
        let r = resolve_route("h.example.com/p", &domains()).unwrap();
        assert_eq!(r.cf_flags(), "example.com --hostname h --path /p");
    }
}
