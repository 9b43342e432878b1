//! The gateway route map: which permission a proxied request needs, by method and
//! path pattern, for `/auth/verify`.
//!
//! Written as `METHOD PATTERN PERMISSION` entries separated by `;` (or as TOML
//! `[[verify.routes]]` tables with `method`, `path`, `permission`). `METHOD` may be
//! `*`. In a pattern, `*` or `{name}` matches one path segment and a final `**` any
//! rest (including nothing). The first matching entry wins.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// None matches any method.
    method: Option<String>,
    segments: Vec<Segment>,
    pub permission: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMap {
    rules: Vec<RouteRule>,
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
}

impl RouteRule {
    fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return false;
        }
        let mut parts = split(path);
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl RouteMap {
    /// Parses `METHOD PATTERN PERMISSION; ...`; the error says which entry is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let parts: Vec<&str> = entry.split_whitespace().collect();
            let [method, pattern, permission] = parts[..] else {
                return Err(format!("entry {entry:?} is not METHOD PATTERN PERMISSION"));
            };
            if !pattern.starts_with('/') {
                return Err(format!("entry {entry:?}: the pattern must start with /"));
            }
            if super::rbac::check_name("permission", permission).is_err() {
                return Err(format!("entry {entry:?}: {permission:?} is not a permission name"));
            }
            let method = match method {
                "*" => None,
                m if m.chars().all(|c| c.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
                m => return Err(format!("entry {entry:?}: {m:?} is not an HTTP method")),
            };
            let raw: Vec<&str> = split(pattern).collect();
            let mut segments = Vec::with_capacity(raw.len());
            for (i, seg) in raw.iter().enumerate() {
                segments.push(match *seg {
                    "**" if i + 1 == raw.len() => Segment::Rest,
                    "**" => return Err(format!("entry {entry:?}: ** may only end a pattern")),
                    "*" => Segment::One,
                    s if s.starts_with('{') && s.ends_with('}') => Segment::One,
                    s => Segment::Literal(s.to_string()),
                });
            }
            rules.push(RouteRule {
                method,
                segments,
                permission: permission.to_string(),
            });
        }
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The permission the first matching rule requires.
    pub fn permission_for(&self, method: &str, path: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.matches(method, path))
            .map(|r| r.permission.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let m = RouteMap::parse(
            "GET /projects/** projects:read; POST /projects projects:create; DELETE /projects/{id} projects:delete; * /admin/* users:manage",
        )
        .unwrap();
        assert_eq!(m.permission_for("GET", "/projects"), Some("projects:read"));
        assert_eq!(m.permission_for("GET", "/projects/1/runs?x=1"), Some("projects:read"));
        assert_eq!(m.permission_for("POST", "/projects/"), Some("projects:create"));
        assert_eq!(m.permission_for("post", "/projects/7"), None);
        assert_eq!(m.permission_for("DELETE", "/projects/7"), Some("projects:delete"));
        assert_eq!(m.permission_for("DELETE", "/projects/7/x"), None);
        assert_eq!(m.permission_for("PATCH", "/admin/users"), Some("users:manage"));
        assert_eq!(m.permission_for("PATCH", "/admin"), None);
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "GET /x",
            "GET x perm",
            "G3T /x perm",
            "GET /** /y perm",
            "GET /a/**/b perm",
            "GET /x Bad",
        ] {
            assert!(RouteMap::parse(bad).is_err(), "{bad}");
        }
        assert!(RouteMap::parse("").unwrap().is_empty());
    }
}
