//! The gateway route map: which permission a proxied request needs, by method and
//! path pattern, for `/auth/verify`.
//!
//! Written as `METHOD PATTERN PERMISSION` entries separated by `;` (or as TOML
//! `[[verify.routes]]` tables with `method`, `path`, `permission`). `METHOD` may be
//! `*`. In a pattern, `*` or `{name}` matches one path segment and a final `**` any
//! rest (including nothing). The first matching entry wins.
//!
//! A request is judged as the backend behind the gateway will serve it, and where
//! backends disagree on what a path means, it is refused rather than guessed at
//! ([`normalize`]): `HEAD` is judged as `GET`, and a path that matches a different
//! rule when case is ignored is refused unless the map is case-insensitive.

use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// As written, and folded for case-insensitive matching.
    Literal(String, String),
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
    /// Match paths ignoring case (for backends that do, such as IIS/ASP.NET).
    case_insensitive: bool,
}

/// The request headers through which many backends serve another method than the
/// request line's (Express `method-override`, Rails, Laravel/Symfony, ASP.NET), lower
/// case.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// The query parameter that does the same (Laravel/Symfony, Express `method-override`).
pub const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Whether a request header named `name` is a method override: one of
/// [`METHOD_OVERRIDE_HEADERS`] in any case, `_` read as `-` (CGI and PHP backends read
/// `X_HTTP_Method_Override` as `X-HTTP-Method-Override`).
pub fn is_method_override_header(name: &str) -> bool {
    METHOD_OVERRIDE_HEADERS.iter().any(|known| {
        known.len() == name.len()
            && known
                .bytes()
                .zip(name.bytes())
                .all(|(k, n)| k == n.to_ascii_lowercase() || (k == b'-' && n == b'_'))
    })
}

/// Whether a query parameter named `key` (decoded) is `_method` as a backend reads it:
/// PHP turns ` `, `.` and `[` in parameter names into `_`, so `.method` is `_method`
/// to Laravel and Symfony.
fn is_method_override_param(key: &str) -> bool {
    key.len() == METHOD_OVERRIDE_PARAM.len()
        && key
            .bytes()
            .zip(METHOD_OVERRIDE_PARAM.bytes())
            .all(|(k, p)| k == p || (p == b'_' && matches!(k, b' ' | b'.' | b'[')))
}

/// What a forwarded request is judged as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged<'a> {
    /// The method judged (`HEAD` as `GET`), upper case.
    pub method: String,
    /// The path as the backend reads it.
    pub path: String,
    /// The permission the first matching rule requires; None when no rule matches.
    pub permission: Option<&'a str>,
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
}

/// A path segment as a case-insensitive backend may compare it: compatibility
/// characters replaced (`ｆｕｌｌ` width, `ſ`), then each character lower-cased, a
/// character whose upper or lower case is ASCII (`ı`, `İ`, the Kelvin sign) taken as
/// that letter, as .NET's and Java's ignore-case comparisons do.
fn fold(segment: &str) -> String {
    segment
        .nfkc()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_lowercase();
            }
            [c.to_lowercase().next(), c.to_uppercase().next()]
                .into_iter()
                .flatten()
                .find(char::is_ascii)
                .map_or(c, |a| a.to_ascii_lowercase())
        })
        .collect()
}

/// Characters no path is judged with, raw or percent-encoded, each for the backends
/// that read it differently from the rest.
fn forbidden(c: char) -> Option<&'static str> {
    Some(match c {
        ';' => "holds ; (servlet containers strip path parameters: /a;x/ is /a/)",
        '\\' => "holds a backslash (IIS, ASP.NET and some frameworks read it as /)",
        '%' => "holds an encoded % (%25): a backend that decodes twice reads another path",
        '?' | '#' => "holds an encoded ? or # (a backend that decodes first cuts the path there)",
        c if c.is_control() => "holds a control character",
        _ => return None,
    })
}

/// The shape every reading of a path must have: no forbidden character, no dot
/// segment, no segment a Windows server would trim.
fn plain(decoded: &str) -> Result<(), &'static str> {
    if let Some(why) = decoded.chars().find_map(forbidden) {
        return Err(why);
    }
    for seg in decoded.split('/') {
        if seg == "." || seg == ".." {
            return Err("holds a dot segment (. or .., also encoded)");
        }
        if seg.ends_with(['.', ' ']) {
            return Err("holds a segment ending in . or space (Windows servers trim them)");
        }
    }
    Ok(())
}

/// The path a backend serves for the request target `raw`: the query dropped,
/// percent-escapes decoded, empty segments (`//`) dropped. Anything backends read in
/// different ways is refused, with the reason: a target not starting with `/`, a
/// broken escape or escapes that are not UTF-8 (overlong forms included), an encoded
/// slash (`%2F`), `;`, a backslash, an encoded `%`, `?` or `#`, a control character
/// (NUL included), a `.` or `..` segment, a segment ending in `.` or space, raw or
/// encoded; and the same again after Unicode compatibility folding (`．．`, `／`).
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    let path = raw.split('?').next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err("does not start with /");
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let byte = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .filter(|hex| hex.bytes().all(|h| h.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("does not decode: a broken percent-escape")?;
            if byte == b'/' {
                return Err("holds an encoded slash (%2F), which backends read either way");
            }
            bytes.push(byte);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let decoded = String::from_utf8(bytes).map_err(|_| "does not decode: escapes that are not UTF-8")?;
    plain(&decoded)?;
    let compatible: String = decoded.nfkc().collect();
    if compatible != decoded {
        plain(&compatible)?;
        if compatible.matches('/').count() != decoded.matches('/').count() {
            return Err("holds a character that Unicode folding turns into /");
        }
    }
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    Ok(format!("/{}", segments.join("/")))
}

/// The decoded values of every `_method` parameter in the query of the request
/// target `raw` (`+` as space, as form decoding reads it); an error for one that does
/// not decode.
fn override_params(raw: &str) -> Result<Vec<String>, String> {
    let Some((_, query)) = raw.split_once('?') else {
        return Ok(Vec::new());
    };
    let query = query.split('#').next().unwrap_or_default();
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8()
            .map(|d| d.into_owned())
            .map_err(|_| format!("the query parameter {METHOD_OVERRIDE_PARAM} does not decode to UTF-8"))
    };
    let mut found = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key).is_ok_and(|k| is_method_override_param(&k)) {
            found.push(decode(value)?);
        }
    }
    Ok(found)
}

/// A method as sent: an HTTP token of reasonable length.
fn is_method(m: &str) -> bool {
    (1..=32).contains(&m.len())
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RouteRule {
    fn matches(&self, method: &str, parts: &[String], folded: bool) -> bool {
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return false;
        }
        let mut parts = parts.iter();
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(exact, fold) => {
                    let lit = if folded { fold } else { exact };
                    if parts.next() != Some(lit) {
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
                m if m.eq_ignore_ascii_case("HEAD") => {
                    return Err(format!(
                        "entry {entry:?}: HEAD is judged as GET; write the entry for GET"
                    ));
                }
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
                    s => Segment::Literal(s.to_string(), fold(s)),
                });
            }
            rules.push(RouteRule {
                method,
                segments,
                permission: permission.to_string(),
            });
        }
        Ok(Self {
            rules,
            case_insensitive: false,
        })
    }

    /// The same rules, matched ignoring case (`VERIFY_CASE_INSENSITIVE`).
    pub fn case_insensitive(self, yes: bool) -> Self {
        Self {
            case_insensitive: yes,
            ..self
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every permission a rule requires (once per rule).
    pub fn permissions(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.permission.as_str())
    }

    fn first(&self, method: &str, parts: &[String], folded: bool) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(method, parts, folded))
    }

    /// Judges the request a gateway forwards, `method` and request target `raw` as the
    /// client sent them: the path as [`normalize`] reads it (or why it is refused),
    /// `HEAD` as `GET`, and the permission of the first matching rule. Case-sensitive
    /// (the default), a path whose rule would differ were case ignored is refused: a
    /// backend that ignores case would serve it as the guarded path.
    pub fn judge(&self, method: &str, raw: &str) -> Result<Judged<'_>, String> {
        self.judge_path(method, &NormalPath::of(raw)?)
    }

    /// `judge`, for a path already normalized (judging several methods reads it once).
    fn judge_path(&self, method: &str, path: &NormalPath) -> Result<Judged<'_>, String> {
        if !is_method(method) {
            return Err("the original method is not an HTTP method".into());
        }
        let method = if method.eq_ignore_ascii_case("HEAD") {
            "GET"
        } else {
            method
        };
        let by_fold = self.first(method, &path.folded, true);
        let rule = if self.case_insensitive {
            by_fold
        } else {
            let rule = self.first(method, &path.exact, false);
            if rule != by_fold {
                return Err(format!(
                    "{} differs only in case from a path another route rule covers (VERIFY_CASE_INSENSITIVE matches ignoring case)",
                    path.text
                ));
            }
            rule
        };
        Ok(Judged {
            method: method.to_ascii_uppercase(),
            path: path.text.clone(),
            permission: rule.map(|i| self.rules[i].permission.as_str()),
        })
    }

    /// Judges the request a gateway forwards (see [`Self::judge`]) under its request line's
    /// own `method`, each method-override header value in `overrides` (empty ones are
    /// ignored, as backends do) and each `_method` parameter in the query of `raw`.
    /// One judgement per distinct method; forward auth allows the request only if each
    /// of them allows it, so an override can never reach a rule the request line's method
    /// would not. An override that is not an HTTP method refuses the request.
    pub fn judge_served(&self, method: &str, overrides: &[&str], raw: &str) -> Result<Vec<Judged<'_>>, String> {
        let params = override_params(raw)?;
        let mut methods = vec![method];
        for m in overrides.iter().copied().chain(params.iter().map(String::as_str)) {
            let m = m.trim();
            if m.is_empty() {
                continue;
            }
            if !is_method(m) {
                return Err(format!("the method override {m:?} is not an HTTP method"));
            }
            methods.push(m);
        }
        let path = NormalPath::of(raw)?;
        let mut judged: Vec<Judged<'_>> = Vec::with_capacity(methods.len());
        for m in methods {
            let j = self.judge_path(m, &path)?;
            if !judged.iter().any(|seen| seen.method == j.method) {
                judged.push(j);
            }
        }
        Ok(judged)
    }

    /// The permission the first matching rule requires for `method` and `path`; None
    /// when none matches or the request is refused.
    pub fn permission_for(&self, method: &str, path: &str) -> Option<&str> {
        self.judge(method, path).ok().and_then(|j| j.permission)
    }
}

/// A request target's path as [`normalize`] reads it, with its segments as matched
/// ignoring case and as written.
struct NormalPath {
    text: String,
    folded: Vec<String>,
    exact: Vec<String>,
}

impl NormalPath {
    fn of(raw: &str) -> Result<Self, String> {
        let text = normalize(raw).map_err(|why| format!("the original path {why}"))?;
        Ok(Self {
            folded: split(&text).map(fold).collect(),
            exact: split(&text).map(str::to_string).collect(),
            text,
        })
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
    fn head_is_judged_as_get() {
        let m = RouteMap::parse("GET /admin/** users:manage").unwrap();
        assert_eq!(m.permission_for("HEAD", "/admin/users"), Some("users:manage"));
        assert_eq!(m.permission_for("head", "/admin/users"), Some("users:manage"));
        assert_eq!(m.permission_for("OPTIONS", "/admin/users"), None);
        assert!(RouteMap::parse("HEAD /admin/** users:read").is_err());
        for bad in ["", "GE T", "GET\n", "G(ET"] {
            assert!(m.judge(bad, "/admin/users").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn method_overrides_are_judged_too() {
        let m = RouteMap::parse("GET /projects/** projects:read; POST /projects/** projects:create").unwrap();
        let permissions = |overrides: &[&str], raw: &str| {
            m.judge_served("GET", overrides, raw)
                .map(|all| all.iter().map(|j| (j.method.clone(), j.permission)).collect::<Vec<_>>())
        };
        let read = ("GET".to_string(), Some("projects:read"));
        let create = ("POST".to_string(), Some("projects:create"));
        assert_eq!(permissions(&[], "/projects/1"), Ok(vec![read.clone()]));
        assert_eq!(
            permissions(&["POST"], "/projects/1"),
            Ok(vec![read.clone(), create.clone()])
        );
        assert_eq!(
            permissions(&["post", " "], "/projects/1"),
            Ok(vec![read.clone(), create.clone()])
        );
        assert_eq!(permissions(&["GET", "HEAD"], "/projects/1"), Ok(vec![read.clone()]));
        for query in ["_method=POST", "a=1&_method=post", "%5Fmethod=P%4FST", "_method=POST&x"] {
            assert_eq!(
                permissions(&[], &format!("/projects/1?{query}")),
                Ok(vec![read.clone(), create.clone()]),
                "{query}"
            );
        }
        for query in [".method=POST", "+method=POST", "%20method=POST", "[method=POST"] {
            assert_eq!(
                permissions(&[], &format!("/projects/1?{query}")),
                Ok(vec![read.clone(), create.clone()]),
                "PHP reads {query} as _method"
            );
        }
        assert_eq!(
            permissions(&[], "/projects/1?method=POST&x_method=POST&_methods=POST"),
            Ok(vec![read.clone()])
        );
        for name in [
            "x-http-method-override",
            "X-HTTP-Method-Override",
            "X_HTTP_METHOD_OVERRIDE",
            "x_method-override",
            "X-HTTP-Method",
        ] {
            assert!(is_method_override_header(name), "{name}");
        }
        for name in [
            "x-http-method-overrides",
            "x-http-methods",
            "x-forwarded-method",
            "x.http.method",
        ] {
            assert!(!is_method_override_header(name), "{name}");
        }
        assert_eq!(
            permissions(&["DELETE"], "/projects/1"),
            Ok(vec![read.clone(), ("DELETE".to_string(), None)])
        );
        for bad in ["POST, DELETE", "P(OST"] {
            assert!(permissions(&[bad], "/projects/1").is_err(), "{bad:?}");
        }
        assert!(permissions(&[], "/projects/1?_method=%ff").is_err());
        assert!(permissions(&[], "/projects/1?_method=PO%20ST").is_err());
    }

    #[test]
    fn paths_are_matched_as_the_backend_reads_them() {
        let m = RouteMap::parse("* /admin/** users:manage; GET /projects/** projects:read").unwrap();
        let required = |raw: &str| m.permission_for("GET", raw);
        for disguised in ["/%61dmin/users", "//admin//users", "/admin/users?x=/projects"] {
            assert_eq!(required(disguised), Some("users:manage"), "{disguised}");
        }
        assert_eq!(normalize("/a/b?c=%zz#f").as_deref(), Ok("/a/b"));
        assert_eq!(normalize("/"), Ok("/".into()));
        assert_eq!(
            normalize("/files/r%C3%A9sum%C3%A9/x%20y").as_deref(),
            Ok("/files/résumé/x y")
        );
    }

    /// Every form some common backend reads as another path is refused.
    #[test]
    fn ambiguous_paths_are_refused() {
        for bad in [
            "/%zz",
            "/%4",
            "/%ff",
            "/%c0%af",
            "/%e0%80%ae%e0%80%ae/admin",
            "/a%00b",
            "/a%0a",
            "/..",
            "/a/../../b",
            "/ADMIN/../admin/users",
            "/./admin/users",
            "/projects/../admin/users",
            "/projects/%2e%2e/admin/users",
            "/projects/.%2E/admin",
            "/projects/..%2Fadmin/users",
            "/projects%2fadmin",
            "/projects/..;/admin/users",
            "/projects;x=1/../admin",
            "/admin;/users",
            "/admin%3b/users",
            "/projects/..\\admin\\users",
            "/projects\\..\\admin",
            "/projects/..%5Cadmin",
            "/projects/%5c..%5cadmin",
            "/projects/%252e%252e/admin",
            "/projects%252Fadmin",
            "/admin%3F/x",
            "/admin%23/x",
            "/admin#x",
            "/admin./users",
            "/admin%20/users",
            "/projects/%EF%BC%8E%EF%BC%8E/admin",
            "/projects%EF%BC%8Fadmin",
            "/projects/%EF%BC%BCadmin",
            "admin/users",
            "http://host/admin/users",
            "*",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn case_variants_of_a_guarded_path_are_refused_or_guarded() {
        let text = "* /admin/** users:manage; GET /projects/** projects:read";
        let sensitive = RouteMap::parse(text).unwrap();
        let insensitive = RouteMap::parse(text).unwrap().case_insensitive(true);
        for variant in [
            "/ADMIN/users",
            "/Admin/users",
            "/%41dmin/users",
            "/adm%C4%B1n/users",
            "/%EF%BD%81dmin/users",
            "/ADM%C4%B0N/users",
        ] {
            assert!(sensitive.judge("GET", variant).is_err(), "{variant}");
            let judged = insensitive.judge("GET", variant).unwrap();
            assert_eq!(judged.permission, Some("users:manage"), "{variant}");
        }
        // A case variant of an unguarded path, or of nothing, is not refused.
        assert_eq!(
            sensitive.judge("GET", "/projects/ADMIN").unwrap().permission,
            Some("projects:read")
        );
        assert_eq!(sensitive.judge("GET", "/Other").unwrap().permission, None);
        assert_eq!(
            insensitive.judge("GET", "/PROJECTS/1").unwrap().permission,
            Some("projects:read")
        );
        let k = RouteMap::parse("* /kiosk/** kiosk:use").unwrap();
        assert!(k.judge("GET", "/%E2%84%AAiosk").is_err(), "the Kelvin sign");
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
            "HEAD /x perm",
        ] {
            assert!(RouteMap::parse(bad).is_err(), "{bad}");
        }
        assert!(RouteMap::parse("").unwrap().is_empty());
    }
}
