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

/// The path a backend serves for the request target `raw`: the query dropped,
/// percent-escapes decoded, empty and `.` segments dropped, `..` removing the segment
/// before it. None when the result is not UTF-8, holds a control character, or climbs
/// above the root: no rule could be trusted to match such a path as the backend reads
/// it.
pub fn normalize(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let decoded = String::from_utf8(bytes).ok()?;
    if decoded.chars().any(char::is_control) {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    Some(format!("/{}", segments.join("/")))
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
            if !super::names::is_valid_grant_name(permission) {
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
    fn paths_are_matched_as_the_backend_reads_them() {
        let m = RouteMap::parse("* /admin/** users:manage; GET /projects/** projects:read").unwrap();
        let required = |raw: &str| normalize(raw).and_then(|p| m.permission_for("GET", &p).map(str::to_string));
        for disguised in [
            "/%61dmin/users",
            "/ADMIN/../admin/users",
            "//admin//users",
            "/./admin/users",
            "/projects/..%2Fadmin/users",
            "/projects/%2e%2e/admin/users?x=1",
        ] {
            assert_eq!(required(disguised).as_deref(), Some("users:manage"), "{disguised}");
        }
        assert_eq!(normalize("/a/b?c=%zz#f").as_deref(), Some("/a/b"));
        assert_eq!(normalize("/"), Some("/".into()));
        for bad in ["/%zz", "/%4", "/%ff", "/a%00b", "/..", "/a/../../b"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
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
