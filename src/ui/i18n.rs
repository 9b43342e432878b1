//! The pages' message catalogue: every visible string, in English and German, chosen
//! by `Accept-Language`. A unit test fails when a key is missing in a language.
//!
//! A language's catalogue comes in parts: the strings every page shares are here, and
//! a page module may keep its own `EN`/`DE` lists beside its handlers; `LANGUAGES`
//! names each language's parts.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::request::Parts;

use super::Messages;

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
];

/// Each language and the parts of its catalogue (the same parts, in the same order).
const LANGUAGES: &[(&str, &[Messages])] = &[
    (
        "en",
        &[
            EN,
            super::step_up::EN,
            super::error_page::EN,
            super::api_keys::EN,
            super::identities::EN,
            super::providers::EN,
            super::two_factor::EN,
            super::profile::EN,
            super::sessions::EN,
        ],
    ),
    (
        "de",
        &[
            DE,
            super::step_up::DE,
            super::error_page::DE,
            super::api_keys::DE,
            super::identities::DE,
            super::providers::DE,
            super::two_factor::DE,
            super::profile::DE,
            super::sessions::DE,
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

    /// The language a request's `Accept-Language` asks for, English when none matches.
    pub fn of_request(headers: &HeaderMap) -> Self {
        headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map_or_else(Lang::english, Lang::negotiate)
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
        Ok(Lang::of_request(&parts.headers))
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
