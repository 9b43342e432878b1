//! The pages' message catalogue: every visible string, in English and German, chosen
//! by the person (the switcher's `?lang=`, remembered in the `portcullis-lang`
//! cookie), else by `Accept-Language`. A unit test fails when a key is missing in a
//! language.
//!
//! A language's catalogue comes in parts: the strings every page shares are here, and
//! a page module may keep its own `EN`/`DE` lists beside its handlers; `LANGUAGES`
//! names each language's parts.

use axum::extract::FromRequestParts;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use super::Messages;

/// The cookie that remembers the language picked with the switcher; it wins over
/// `Accept-Language` on every page until another is picked.
pub const LANG_COOKIE: &str = "portcullis-lang";

const EN: Messages = &[
    ("product", "Portcullis"),
    ("sign_in_title", "Sign in"),
    ("login_label", "Username or e-mail"),
    ("password_label", "Password"),
    ("sign_in", "Sign in"),
    ("login_failed", "Invalid username or password."),
    ("too_many_one", "Too many attempts, try again in 1 minute."),
    ("too_many_other", "Too many attempts, try again in {n} minutes."),
    ("code_title", "Two-factor authentication"),
    ("code_label", "Code from your authenticator app, or a recovery code"),
    ("verify", "Verify"),
    ("code_failed", "That code is not valid."),
    ("code_expired", "Your sign-in has expired. Please sign in again."),
    ("account_title", "Your account"),
    ("username", "Username"),
    ("email", "E-mail"),
    ("sign_out", "Sign out"),
    ("sign_out_everywhere", "Sign out everywhere"),
    ("signed_out", "You have been signed out."),
    ("main_nav", "Main"),
    ("language_name", "English"),
    ("language_nav", "Language"),
];

const DE: Messages = &[
    ("product", "Portcullis"),
    ("sign_in_title", "Anmelden"),
    ("login_label", "Benutzername oder E-Mail"),
    ("password_label", "Passwort"),
    ("sign_in", "Anmelden"),
    ("login_failed", "Benutzername oder Passwort ist falsch."),
    ("too_many_one", "Zu viele Versuche, bitte in 1 Minute erneut versuchen."),
    (
        "too_many_other",
        "Zu viele Versuche, bitte in {n} Minuten erneut versuchen.",
    ),
    ("code_title", "Zwei-Faktor-Authentifizierung"),
    (
        "code_label",
        "Code aus Ihrer Authenticator-App oder ein Wiederherstellungscode",
    ),
    ("verify", "Bestätigen"),
    ("code_failed", "Dieser Code ist ungültig."),
    (
        "code_expired",
        "Ihre Anmeldung ist abgelaufen. Bitte melden Sie sich erneut an.",
    ),
    ("account_title", "Ihr Konto"),
    ("username", "Benutzername"),
    ("email", "E-Mail"),
    ("sign_out", "Abmelden"),
    ("sign_out_everywhere", "Überall abmelden"),
    ("signed_out", "Sie wurden abgemeldet."),
    ("main_nav", "Hauptmenü"),
    ("language_name", "Deutsch"),
    ("language_nav", "Sprache"),
];

/// Each language and the parts of its catalogue (the same parts, in the same order).
const LANGUAGES: &[(&str, &[Messages])] = &[
    (
        "en",
        &[
            EN,
            super::step_up::EN,
            super::errors::EN,
            super::register::EN,
            super::api_keys::EN,
            super::identities::EN,
            super::providers::EN,
            super::two_factor::EN,
            super::profile::EN,
            super::sessions::EN,
            super::device::EN,
            super::apps::EN,
            super::logout::EN,
            super::field_errors::EN,
            super::authorize::EN,
        ],
    ),
    (
        "de",
        &[
            DE,
            super::step_up::DE,
            super::errors::DE,
            super::register::DE,
            super::api_keys::DE,
            super::identities::DE,
            super::providers::DE,
            super::two_factor::DE,
            super::profile::DE,
            super::sessions::DE,
            super::device::DE,
            super::apps::DE,
            super::logout::DE,
            super::field_errors::DE,
            super::authorize::DE,
        ],
    ),
];

/// The language of a response, from the request's `Accept-Language` (English when
/// nothing matches).
#[derive(Debug, Clone, Copy)]
pub struct Lang {
    pub code: &'static str,
    messages: &'static [Messages],
}

impl Lang {
    pub fn english() -> Self {
        Self {
            code: "en",
            messages: LANGUAGES[0].1,
        }
    }

    /// The best of our languages for an `Accept-Language` value.
    pub fn negotiate(header: &str) -> Self {
        let mut wanted: Vec<(f32, &str)> = header
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let tag = it.next()?.trim();
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (q, tag) in wanted {
            let primary = tag.split('-').next().unwrap_or(tag);
            if let Some(&(code, messages)) = LANGUAGES.iter().find(|(c, _)| c.eq_ignore_ascii_case(primary))
                && q > 0.0
            {
                return Self { code, messages };
            }
        }
        Self::english()
    }

    /// Our language named `code` (any case), if we have it.
    pub fn named(code: &str) -> Option<Self> {
        LANGUAGES
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|&(code, messages)| Self { code, messages })
    }

    /// Every language we have, in the catalogue's order.
    pub fn all() -> impl Iterator<Item = Self> {
        LANGUAGES.iter().map(|&(code, messages)| Self { code, messages })
    }

    /// The language of a request: one picked with the switcher now (`?lang=`), else
    /// the one picked before (the cookie), else `Accept-Language`.
    pub fn of_request(headers: &HeaderMap, uri: &Uri) -> Self {
        picked_in_query(uri)
            .or_else(|| super::cookie(headers, LANG_COOKIE).and_then(Self::named))
            .or_else(|| {
                headers
                    .get(ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .map(Self::negotiate)
            })
            .unwrap_or_else(Self::english)
    }

    /// The text of `key` (the key itself if missing, which a test forbids).
    pub fn get(&self, key: &str) -> &'static str {
        self.messages
            .iter()
            .flat_map(|part| part.iter())
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or("?")
    }

    /// "Too many attempts" for a wait of `seconds`, in whole minutes (rounded up).
    pub fn too_many(&self, seconds: u64) -> String {
        let minutes = seconds.div_ceil(60).max(1);
        if minutes == 1 {
            self.get("too_many_one").to_string()
        } else {
            self.get("too_many_other").replace("{n}", &minutes.to_string())
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of_request(&parts.headers, &parts.uri))
    }
}

/// The language a request's `?lang=` picks, if it names one of ours.
pub fn picked_in_query(uri: &Uri) -> Option<Lang> {
    query_pairs(uri)
        .find(|(k, _)| *k == "lang")
        .and_then(|(_, v)| Lang::named(v))
}

fn query_pairs(uri: &Uri) -> impl Iterator<Item = (&str, &str)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// A link of the language switcher.
#[derive(Debug, Clone)]
pub struct LangLink {
    pub code: &'static str,
    /// The language's name in itself ("Deutsch").
    pub name: &'static str,
    /// The page itself with `lang=` set; its other parameters (a `return_to`) kept.
    pub href: String,
    pub current: bool,
}

tokio::task_local! {
    /// The query of the page request being answered, without `lang` (set by
    /// `ui::page_layer` around the handler), so that every page's switcher links back
    /// to the same page with the same parameters without each handler passing it on.
    static PAGE_QUERY: String;
}

/// Runs a page's handler with its request's query at hand for the switcher.
pub async fn with_page_query<F: std::future::Future>(uri: &Uri, page: F) -> F::Output {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && *p != "lang" && !p.starts_with("lang="))
        .collect();
    PAGE_QUERY.scope(rest.join("&"), page).await
}

impl Lang {
    /// The switcher's links for a page shown in this language: relative (`?...`), so
    /// they name the page's own path, base path included.
    pub fn switcher(self) -> Vec<LangLink> {
        let rest = PAGE_QUERY.try_with(|q| q.clone()).unwrap_or_default();
        Lang::all()
            .map(|l| LangLink {
                code: l.code,
                name: l.get("language_name"),
                href: if rest.is_empty() {
                    format!("?lang={}", l.code)
                } else {
                    format!("?{rest}&lang={}", l.code)
                },
                current: l.code == self.code,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_key() {
        let all = |parts: &'static [Messages]| parts.iter().flat_map(|p| p.iter());
        for (code, parts) in LANGUAGES {
            let messages: Vec<_> = all(parts).collect();
            for (other, theirs) in LANGUAGES {
                for (key, _) in all(theirs) {
                    assert!(
                        messages.iter().any(|(k, _)| k == key),
                        "{code} lacks {key:?}, which {other} has"
                    );
                }
            }
            let mut keys: Vec<_> = messages.iter().map(|(k, _)| k).collect();
            keys.sort();
            let n = keys.len();
            keys.dedup();
            assert_eq!(n, keys.len(), "{code} has a key twice");
        }
    }

    /// Every key a template or page module asks for (`get("key")`) is in the catalogue:
    /// a missing one would show as "?".
    #[test]
    fn every_key_used_is_defined() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    files(&path, out);
                } else if path.extension().is_some_and(|e| e == "html" || e == "rs") && !path.ends_with("i18n.rs") {
                    out.push(path);
                }
            }
        }
        let mut paths = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui"),
            &mut paths,
        );
        let english = Lang::english();
        let mut used = 0;
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("get(\"").skip(1) {
                let key = piece.split('"').next().unwrap_or("");
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                {
                    continue;
                }
                used += 1;
                assert_ne!(
                    english.get(key),
                    "?",
                    "{} uses {key:?}, which no catalogue has",
                    path.display()
                );
            }
        }
        assert!(used > 10, "found only {used} keys in use");
    }

    #[test]
    fn the_switcher_wins_then_the_cookie_then_accept_language() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, axum::http::HeaderValue::from_static(v));
            }
            m
        };
        let uri = |u: &'static str| Uri::from_static(u);
        let de = headers(&[("accept-language", "de")]);
        assert_eq!(Lang::of_request(&de, &uri("/login")).code, "de");
        assert_eq!(Lang::of_request(&de, &uri("/login?lang=en")).code, "en");
        assert_eq!(Lang::of_request(&de, &uri("/login?lang=xx")).code, "de");
        let both = headers(&[("accept-language", "de"), ("cookie", "a=b; portcullis-lang=en")]);
        assert_eq!(Lang::of_request(&both, &uri("/login")).code, "en");
        assert_eq!(Lang::of_request(&both, &uri("/login?x=1&lang=DE")).code, "de");
        assert_eq!(Lang::of_request(&headers(&[]), &uri("/")).code, "en");
    }

    #[tokio::test]
    async fn switcher_links_keep_the_other_parameters() {
        let links = with_page_query(&Uri::from_static("/login?return_to=%2Fx&lang=de"), async {
            Lang::named("de").unwrap().switcher()
        })
        .await;
        let hrefs: Vec<_> = links.iter().map(|l| (l.code, l.href.as_str(), l.current)).collect();
        assert_eq!(
            hrefs,
            [
                ("en", "?return_to=%2Fx&lang=en", false),
                ("de", "?return_to=%2Fx&lang=de", true)
            ]
        );
        assert_eq!(Lang::english().switcher()[1].href, "?lang=de");
    }

    #[test]
    fn accept_language_picks_the_best_match() {
        assert_eq!(Lang::negotiate("de-DE,de;q=0.9,en;q=0.8").code, "de");
        assert_eq!(Lang::negotiate("fr, en;q=0.5, de;q=0.4").code, "en");
        assert_eq!(Lang::negotiate("en;q=0.1, de;q=0.9").code, "de");
        assert_eq!(Lang::negotiate("fr").code, "en");
        assert_eq!(Lang::negotiate("de;q=0").code, "en");
        assert_eq!(
            Lang::english().too_many(61),
            "Too many attempts, try again in 2 minutes."
        );
        assert_eq!(Lang::english().too_many(5), "Too many attempts, try again in 1 minute.");
    }
}
