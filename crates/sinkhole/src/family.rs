//! Attribution of check-ins to botnet families by name and by port.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use takedown_event::Family;

use crate::Error;

/// A family and optional tag that a check-in is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The botnet family.
    pub family: Family,
    /// A free-form tag from the config, such as a campaign or C2 generation.
    pub tag: Option<String>,
}

/// A seized-name pattern: an exact name (`c2.example`) or every name strictly
/// below a domain (`*.example.com`).
///
/// Patterns are stored lower-case without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name below this domain, at any depth, but not the domain itself.
    Below(String),
}

impl DomainPattern {
    /// The domain the pattern is rooted at: the zone a DNS listener is
    /// authoritative for because of this pattern.
    pub fn base(&self) -> &str {
        match self {
            DomainPattern::Exact(d) | DomainPattern::Below(d) => d,
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => f.write_str(d),
            DomainPattern::Below(d) => write!(f, "*.{d}"),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &'static str| Error::Domain {
            pattern: s.to_owned(),
            why,
        };
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, rest) = match t.strip_prefix("*.") {
            Some(r) => (true, r.to_owned()),
            None => (false, t),
        };
        if rest.is_empty() {
            return Err(bad("the name is empty"));
        }
        if rest.len() > 253 {
            return Err(bad("the name is longer than 253 characters"));
        }
        for label in rest.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("every label must have 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    "labels may use only letters, digits, '-' and '_' (a '*' only as the whole first label)",
                ));
            }
        }
        Ok(if wild {
            DomainPattern::Below(rest)
        } else {
            DomainPattern::Exact(rest)
        })
    }
}

/// Looks up the family of a check-in from its host name or destination port.
///
/// Name lookups walk the name's suffixes: an exact entry wins over a wildcard,
/// and a longer wildcard base wins over a shorter one. A name is *in zone*
/// when it equals or lies below any pattern's base; DNS answers NXDOMAIN for
/// in-zone names that no pattern matches and REFUSED for the rest.
#[derive(Debug, Clone, Default)]
pub struct FamilyMap {
    attributions: Vec<Attribution>,
    exact: HashMap<Box<str>, usize>,
    below: HashMap<Box<str>, usize>,
    zones: HashMap<Box<str>, ()>,
    ports: HashMap<u16, usize>,
}

impl FamilyMap {
    /// An empty map that attributes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an attribution for the given patterns and ports.
    ///
    /// # Errors
    /// [`Error::Duplicate`] if a pattern or port is already mapped.
    pub fn insert(
        &mut self,
        attribution: Attribution,
        domains: &[DomainPattern],
        ports: &[u16],
    ) -> Result<(), Error> {
        let idx = self.attributions.len();
        for d in domains {
            let table = match d {
                DomainPattern::Exact(_) => &mut self.exact,
                DomainPattern::Below(_) => &mut self.below,
            };
            if table.insert(d.base().into(), idx).is_some() {
                return Err(Error::Duplicate(format!("domain {d}")));
            }
            self.zones.insert(d.base().into(), ());
        }
        for &p in ports {
            if self.ports.insert(p, idx).is_some() {
                return Err(Error::Duplicate(format!("port {p}")));
            }
        }
        self.attributions.push(attribution);
        Ok(())
    }

    /// The attribution for a host name, if any pattern matches.
    ///
    /// The name is matched case-insensitively; a trailing dot and a `:port`
    /// suffix are ignored, so raw `Host` header values can be passed as they are.
    pub fn by_name(&self, name: &str) -> Option<&Attribution> {
        let mut buf = [0u8; 256];
        let name = normalize(name, &mut buf)?;
        if let Some(&i) = self.exact.get(name) {
            return self.attributions.get(i);
        }
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(&i) = self.below.get(parent) {
                return self.attributions.get(i);
            }
            rest = parent;
        }
        None
    }

    /// The attribution for a destination port, if the port is mapped.
    pub fn by_port(&self, port: u16) -> Option<&Attribution> {
        self.ports
            .get(&port)
            .and_then(|&i| self.attributions.get(i))
    }

    /// The attribution by name when the name matches, else by port.
    pub fn attribute(&self, name: Option<&str>, port: u16) -> Option<&Attribution> {
        name.and_then(|n| self.by_name(n))
            .or_else(|| self.by_port(port))
    }

    /// Whether the name equals or lies below the base of any pattern.
    pub fn in_zone(&self, name: &str) -> bool {
        let mut buf = [0u8; 256];
        let Some(mut rest) = normalize(name, &mut buf) else {
            return false;
        };
        loop {
            if self.zones.contains_key(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => return false,
            }
        }
    }

    /// Whether the name is itself a zone apex: the base of some pattern.
    pub fn is_zone_apex(&self, name: &str) -> bool {
        let mut buf = [0u8; 256];
        normalize(name, &mut buf).is_some_and(|n| self.zones.contains_key(n))
    }

    /// Whether no domain patterns are configured.
    pub fn has_domains(&self) -> bool {
        !self.zones.is_empty()
    }
}

/// Lower-cases `name` into `buf`, dropping a `:port` suffix and a trailing dot.
///
/// Returns `None` for names that cannot match any pattern (too long, or an
/// IPv6 literal), which saves a lookup.
fn normalize<'b>(name: &str, buf: &'b mut [u8; 256]) -> Option<&'b str> {
    let name = name.trim();
    if name.starts_with('[') {
        return None;
    }
    let name = match name.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => name,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let bytes = name.as_bytes();
    let out = buf.get_mut(..bytes.len())?;
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(f: &str) -> Attribution {
        Attribution {
            family: f.parse().unwrap(),
            tag: None,
        }
    }

    fn map() -> FamilyMap {
        let mut m = FamilyMap::new();
        m.insert(
            att("alpha"),
            &[
                "*.evil.example".parse().unwrap(),
                "evil.example".parse().unwrap(),
            ],
            &[8080],
        )
        .unwrap();
        m.insert(att("beta"), &["*.deep.evil.example".parse().unwrap()], &[])
            .unwrap();
        m.insert(att("gamma"), &["C2.Other.Example.".parse().unwrap()], &[])
            .unwrap();
        m
    }

    #[test]
    fn exact_and_wildcard_precedence() {
        let m = map();
        let fam = |n: &str| m.by_name(n).map(|a| a.family.as_str().to_owned());
        assert_eq!(fam("evil.example").as_deref(), Some("alpha"));
        assert_eq!(fam("www.EVIL.example.").as_deref(), Some("alpha"));
        assert_eq!(fam("x.deep.evil.example").as_deref(), Some("beta"));
        assert_eq!(fam("deep.evil.example").as_deref(), Some("alpha"));
        assert_eq!(fam("c2.other.example:8443").as_deref(), Some("gamma"));
        assert_eq!(fam("www.c2.other.example"), None);
        assert_eq!(fam("notevil.example"), None);
        assert_eq!(fam("[::1]:80"), None);
    }

    #[test]
    fn zones_cover_bases_and_below() {
        let m = map();
        assert!(m.in_zone("evil.example"));
        assert!(m.in_zone("a.b.evil.example"));
        assert!(m.in_zone("www.c2.other.example"));
        assert!(!m.in_zone("other.example"));
        assert!(!m.in_zone("example"));
        assert!(m.is_zone_apex("evil.example"));
        assert!(m.is_zone_apex("Evil.Example."));
        assert!(!m.is_zone_apex("a.evil.example"));
        assert!(!m.is_zone_apex("example"));
    }

    #[test]
    fn port_fallback() {
        let m = map();
        assert_eq!(
            m.attribute(Some("unknown.test"), 8080)
                .map(|a| a.family.as_str()),
            Some("alpha")
        );
        assert!(m.attribute(None, 81).is_none());
    }

    #[test]
    fn rejects_bad_patterns_and_duplicates() {
        assert!("".parse::<DomainPattern>().is_err());
        assert!("a..b".parse::<DomainPattern>().is_err());
        assert!("a.*.b".parse::<DomainPattern>().is_err());
        assert!("*".parse::<DomainPattern>().is_err());
        let mut m = map();
        assert!(
            m.insert(att("delta"), &["evil.example".parse().unwrap()], &[])
                .is_err()
        );
        assert!(m.insert(att("delta"), &[], &[8080]).is_err());
    }
}
