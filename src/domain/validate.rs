//! Input rules for accounts, each failure naming its field.
//!
//! Usernames and emails are folded with NFKC first, then restricted to ASCII: width and
//! compatibility variants ("ａｄｍｉｎ", "ﬁle") fold to the plain name they look like, at
//! registration and at login alike, and what remains non-ASCII (look-alikes such as
//! "аdmin" with a Cyrillic а) is refused outright. That also makes case-insensitive
//! uniqueness mean the same thing on SQLite and PostgreSQL.

use unicode_normalization::UnicodeNormalization;

use crate::error::{AppError, FieldError, INVALID};

/// Every reason (`FieldError::code`) the rules here, the account operations and the
/// request readers give: the pages' catalogue has words for each but `INVALID` (a
/// unit test in `ui::field_errors` checks), whose English message is shown as is.
pub const CODES: &[&str] = &[
    INVALID,
    REQUIRED,
    INCORRECT,
    "username_length",
    "username_characters",
    "username_start",
    "username_at",
    "email_length",
    "email_invalid",
    "email_must_stay",
    "text_too_long",
    "control_characters",
    "instant_range",
    "number_range",
    "password_too_short",
    "password_too_long",
    "password_contains_username",
    "password_contains_email",
    "password_guessable",
    "password_unchanged",
];

/// A field that must be given and was not.
pub const REQUIRED: &str = "required";
/// A current password (or similar secret) that does not match.
pub const INCORRECT: &str = "incorrect";

/// NFKC form of a login name or email, the one form stored and looked up.
pub fn fold(value: &str) -> String {
    if value.is_ascii() {
        value.to_string()
    } else {
        value.nfkc().collect()
    }
}

/// The form a login name is looked up and counted under: folded, then ASCII
/// lower-cased (the same on both backends and under any database collation). None
/// for a name no account can have: non-ASCII after folding, or neither a valid
/// username nor a valid email. Such a name reaches neither the lockout count nor the
/// database, so no other folding (PostgreSQL's `lower('İ')` is `i`) can make it
/// another spelling of an account's name with a count of its own.
pub fn login_name(value: &str) -> Option<String> {
    let folded = fold(value);
    (username(&folded).is_ok() || email(&folded).is_ok()).then(|| folded.to_ascii_lowercase())
}

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 64;
pub const EMAIL_MAX: usize = 254;
pub const FULL_NAME_MAX: usize = 200;

/// Letters, digits and `. _ - @ +`, starting with a letter or digit. `@` is allowed
/// because some clients register with the email as username.
pub fn username(value: &str) -> Result<(), FieldError> {
    let err = |code, m: &str| FieldError::new("username", code, m);
    if value.len() < USERNAME_MIN || value.len() > USERNAME_MAX {
        return Err(err(
            "username_length",
            &format!("must be {USERNAME_MIN} to {USERNAME_MAX} characters"),
        )
        .arg("min", USERNAME_MIN)
        .arg("max", USERNAME_MAX));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
    {
        return Err(err(
            "username_characters",
            "may contain only ASCII letters, digits and . _ - @ +",
        ));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(err("username_start", "must start with a letter or digit"));
    }
    Ok(())
}

/// A username with an `@` must be the account's own email (as clients that register
/// with the email as username send it): otherwise anyone could take someone's address
/// as a username, and a login by that address would find the squatter. Emails are
/// unique, so no account's email can then equal another account's username.
pub fn username_for(username: &str, email: &str) -> Result<(), FieldError> {
    if username.contains('@') && !username.eq_ignore_ascii_case(email) {
        return Err(FieldError::new(
            "username",
            "username_at",
            "may contain @ only as your own email address",
        ));
    }
    Ok(())
}

/// A practical subset of RFC 5321 addresses: ASCII local part without quoting, and a
/// domain of at least two dot-separated labels.
pub fn email(value: &str) -> Result<(), FieldError> {
    let invalid = || FieldError::new("email", "email_invalid", "is not a valid email address");
    if value.is_empty() || value.len() > EMAIL_MAX {
        return Err(
            FieldError::new("email", "email_length", format!("must be 1 to {EMAIL_MAX} characters"))
                .arg("max", EMAIL_MAX),
        );
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(invalid());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if local_ok && domain_ok { Ok(()) } else { Err(invalid()) }
}

pub fn full_name(value: &str) -> Result<(), FieldError> {
    text("full_name", value, FULL_NAME_MAX)
}

pub const DESCRIPTION_MAX: usize = 500;

/// Free text a person reads (names, descriptions): at most `max` characters and no
/// control characters (a NUL would not even fit in a PostgreSQL text column).
pub fn text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(field, "text_too_long", format!("must be at most {max} characters")).arg("n", max));
    }
    if value.chars().any(char::is_control) {
        return Err(control_characters(field));
    }
    Ok(())
}

/// The instants a query may name: from the Unix epoch (no record is older) up to
/// 3000-01-01, inclusive. Anything else is a mistake, and far enough out (year 1, 9999,
/// or beyond what a backend can store) used to reach the database as a 500.
pub fn query_instant(field: &str, value: Option<chrono::DateTime<chrono::Utc>>) -> Result<(), FieldError> {
    const LATEST: i64 = 32_503_680_000; // 3000-01-01T00:00:00Z
    match value {
        Some(v) if !(0..=LATEST).contains(&v.timestamp()) => Err(FieldError::new(
            field,
            "instant_range",
            "must be between 1970-01-01T00:00:00Z and 3000-01-01T00:00:00Z",
        )),
        _ => Ok(()),
    }
}

/// A number in a query (a page size, an offset, a status, a cursor) within its range.
pub fn query_number(field: &str, value: Option<i64>, range: std::ops::RangeInclusive<i64>) -> Result<(), FieldError> {
    match value {
        Some(v) if !range.contains(&v) => Err(FieldError::new(
            field,
            "number_range",
            format!("must be between {} and {}", range.start(), range.end()),
        )
        .arg("min", *range.start())
        .arg("max", *range.end())),
        _ => Ok(()),
    }
}

/// The offsets a listing accepts.
pub const OFFSET_MAX: i64 = 1_000_000_000;

/// The password policy: length bounds, no control characters, not containing the
/// username or email, and strong enough by zxcvbn's estimate.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub min_score: u8,
}

impl PasswordPolicy {
    pub fn check(&self, field: &str, password: &str, username: &str, email: &str) -> Result<(), FieldError> {
        let err = |code, m: String| FieldError::new(field, code, m);
        let len = password.chars().count();
        if len < self.min_length {
            return Err(err(
                "password_too_short",
                format!("must be at least {} characters", self.min_length),
            )
            .arg("n", self.min_length));
        }
        if len > self.max_length {
            return Err(err(
                "password_too_long",
                format!("must be at most {} characters", self.max_length),
            )
            .arg("n", self.max_length));
        }
        if password.chars().any(char::is_control) {
            return Err(control_characters(field));
        }
        let lower = password.to_lowercase();
        let local = email.split('@').next().unwrap_or_default();
        for (what, code, value) in [
            ("username", "password_contains_username", username),
            ("email", "password_contains_email", email),
            ("email", "password_contains_email", local),
        ] {
            if value.len() >= 3 && lower.contains(&value.to_lowercase()) {
                return Err(err(code, format!("must not contain your {what}")));
            }
        }
        let estimate = zxcvbn::zxcvbn(password, &[username, email, local]);
        if (estimate.score() as u8) < self.min_score {
            let mut why = String::from("is too easy to guess");
            let mut advice = Vec::new();
            if let Some(feedback) = estimate.feedback() {
                if let Some(w) = feedback.warning() {
                    why.push_str(&format!(": {w}"));
                    advice.push(warning_code(w));
                }
                if let Some(&s) = feedback.suggestions().first() {
                    why.push_str(&format!(" ({s})"));
                    advice.push(suggestion_code(s));
                }
            }
            return Err(err("password_guessable", why).advice(advice));
        }
        Ok(())
    }
}

fn control_characters(field: &str) -> FieldError {
    FieldError::new(field, "control_characters", "must not contain control characters")
}

/// Every code `warning_code` and `suggestion_code` give (zxcvbn's feedback).
pub const ADVICE_CODES: &[&str] = &[
    "warning_straight_rows",
    "warning_short_keyboard_patterns",
    "warning_repeats_aaa",
    "warning_repeats_abcabc",
    "warning_top10",
    "warning_top100",
    "warning_common",
    "warning_similar_to_common",
    "warning_sequences",
    "warning_recent_years",
    "warning_word_by_itself",
    "warning_dates",
    "warning_names_by_themselves",
    "warning_common_names",
    "suggestion_few_words",
    "suggestion_no_symbols_needed",
    "suggestion_add_word",
    "suggestion_capitalization",
    "suggestion_all_uppercase",
    "suggestion_reversed_words",
    "suggestion_substitutions",
    "suggestion_longer_keyboard_pattern",
    "suggestion_avoid_repeats",
    "suggestion_avoid_sequences",
    "suggestion_avoid_recent_years",
    "suggestion_avoid_your_years",
    "suggestion_avoid_your_dates",
];

/// zxcvbn's warning as a code (exhaustive: a new variant in a zxcvbn upgrade fails
/// the build here rather than showing English on a German page).
fn warning_code(w: zxcvbn::feedback::Warning) -> &'static str {
    use zxcvbn::feedback::Warning as W;
    match w {
        W::StraightRowsOfKeysAreEasyToGuess => "warning_straight_rows",
        W::ShortKeyboardPatternsAreEasyToGuess => "warning_short_keyboard_patterns",
        W::RepeatsLikeAaaAreEasyToGuess => "warning_repeats_aaa",
        W::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => "warning_repeats_abcabc",
        W::ThisIsATop10Password => "warning_top10",
        W::ThisIsATop100Password => "warning_top100",
        W::ThisIsACommonPassword => "warning_common",
        W::ThisIsSimilarToACommonlyUsedPassword => "warning_similar_to_common",
        W::SequencesLikeAbcAreEasyToGuess => "warning_sequences",
        W::RecentYearsAreEasyToGuess => "warning_recent_years",
        W::AWordByItselfIsEasyToGuess => "warning_word_by_itself",
        W::DatesAreOftenEasyToGuess => "warning_dates",
        W::NamesAndSurnamesByThemselvesAreEasyToGuess => "warning_names_by_themselves",
        W::CommonNamesAndSurnamesAreEasyToGuess => "warning_common_names",
    }
}

/// zxcvbn's suggestion as a code (exhaustive, as `warning_code`).
fn suggestion_code(s: zxcvbn::feedback::Suggestion) -> &'static str {
    use zxcvbn::feedback::Suggestion as S;
    match s {
        S::UseAFewWordsAvoidCommonPhrases => "suggestion_few_words",
        S::NoNeedForSymbolsDigitsOrUppercaseLetters => "suggestion_no_symbols_needed",
        S::AddAnotherWordOrTwo => "suggestion_add_word",
        S::CapitalizationDoesntHelpVeryMuch => "suggestion_capitalization",
        S::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase => "suggestion_all_uppercase",
        S::ReversedWordsArentMuchHarderToGuess => "suggestion_reversed_words",
        S::PredictableSubstitutionsDontHelpVeryMuch => "suggestion_substitutions",
        S::UseALongerKeyboardPatternWithMoreTurns => "suggestion_longer_keyboard_pattern",
        S::AvoidRepeatedWordsAndCharacters => "suggestion_avoid_repeats",
        S::AvoidSequences => "suggestion_avoid_sequences",
        S::AvoidRecentYears => "suggestion_avoid_recent_years",
        S::AvoidYearsThatAreAssociatedWithYou => "suggestion_avoid_your_years",
        S::AvoidDatesAndYearsThatAreAssociatedWithYou => "suggestion_avoid_your_dates",
    }
}

/// Collects field errors into one 422, or passes.
pub fn all(results: impl IntoIterator<Item = Result<(), FieldError>>) -> Result<(), AppError> {
    let errors: Vec<FieldError> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "bob.smith", "user@example.com", "a_1-2+x"] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "аdmin",
            "has space",
            "-lead",
            "x\0y",
            &"a".repeat(65),
            "' OR 1=1 --",
        ] {
            assert!(username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_username_with_an_at_is_the_own_email() {
        assert!(username_for("Ann@Example.com", "ann@example.com").is_ok());
        assert!(username_for("ann", "ann@example.com").is_ok());
        assert!(username_for("bob@example.com", "ann@example.com").is_err());
        assert!(username_for("ann@example", "ann@example.com").is_err());
    }

    #[test]
    fn compatibility_forms_fold_and_look_alikes_stay_refused() {
        assert_eq!(fold("ａｄｍｉｎ"), "admin");
        assert_eq!(fold("ﬁle@example.com"), "file@example.com");
        assert_eq!(fold("admin²"), "admin2");
        assert!(username(&fold("аdmin")).is_err(), "Cyrillic а must not fold to a");
        assert!(username(&fold("admin\u{200b}")).is_err(), "zero-width space");
        assert!(username(&fold("ａｄｍｉｎ")).is_ok());
    }

    #[test]
    fn login_names_fold_to_ascii_or_are_impossible() {
        assert_eq!(login_name("ＡＤＭＩＮ").as_deref(), Some("admin"));
        assert_eq!(login_name("Ann@Example.COM").as_deref(), Some("ann@example.com"));
        for impossible in ["İdris", "ıdris", "idris\u{200b}", "аdmin", "ab", "a b", "x\0y", ""] {
            assert_eq!(login_name(impossible), None, "{impossible:?}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["john@example.com", "a.b+tag@sub.example.co"] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "no-at",
            "a@b",
            "a@@b.com",
            ".a@b.com",
            "a..b@c.com",
            "a@-b.com",
            "ü@b.com",
            "a@b.com\n",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    /// docs/api.md names every code a 422 can carry.
    #[test]
    fn the_api_docs_list_every_code() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
        for code in CODES {
            assert!(doc.contains(&format!("`{code}`")), "docs/api.md does not name {code}");
        }
    }

    #[test]
    fn password_policy() {
        let p = PasswordPolicy {
            min_length: 8,
            max_length: 128,
            min_score: 2,
        };
        assert!(
            p.check("password", "correct horse battery staple", "alice", "alice@example.com")
                .is_ok()
        );
        assert!(
            p.check("password", "short", "alice", "a@example.com")
                .unwrap_err()
                .message
                .contains("at least 8")
        );
        assert!(
            p.check("password", "password123", "alice", "a@example.com")
                .unwrap_err()
                .message
                .contains("guess")
        );
        assert!(
            p.check("password", "xx-alicewonder-77", "alicewonder", "z@example.com")
                .unwrap_err()
                .message
                .contains("username")
        );
        assert!(
            p.check("password", &"Zq9!".repeat(40), "alice", "a@example.com")
                .unwrap_err()
                .message
                .contains("at most")
        );
    }
}
