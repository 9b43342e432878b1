//! A refused field's reason in the reader's language. The domain names each reason
//! with a code (`FieldError::code`, listed in `domain::validate::CODES`) and, for a
//! guessable password, zxcvbn's warning and suggestion as codes too
//! (`validate::ADVICE_CODES`); the words for them live here, so a German page says
//! "muss mindestens 8 Zeichen lang sein" where the API says "must be at least 8
//! characters". The English words are the API's own, so English pages read as before.

use super::{Lang, Messages};
use crate::error::{FieldError, INVALID};

/// The reason `e` gives, in `lang`: the catalogue's words for its code with its
/// numbers filled in, then zxcvbn's warning (after a colon) and suggestion (in
/// brackets), as the API's message puts them. A reason without words of ours
/// (`INVALID`, rare and specific) is the domain's English message.
pub fn reason(lang: Lang, e: &FieldError) -> String {
    let words = match lang.get(&format!("field_error_{}", e.code)) {
        "?" => return e.message.clone(),
        _ if e.code == INVALID => return e.message.clone(),
        words => words,
    };
    let mut out = words.to_string();
    for (name, value) in e.args() {
        out = out.replace(&format!("{{{name}}}"), &value.to_string());
    }
    for code in e.advice_codes() {
        let advice = lang.get(&format!("field_advice_{code}"));
        if advice == "?" {
            continue;
        }
        if code.starts_with("warning_") {
            out.push_str(&format!(": {advice}"));
        } else {
            out.push_str(&format!(" ({advice})"));
        }
    }
    out
}

pub const EN: Messages = &[
    ("field_error_required", "is required"),
    ("field_error_incorrect", "is incorrect"),
    ("field_error_username_length", "must be {min} to {max} characters"),
    (
        "field_error_username_characters",
        "may contain only ASCII letters, digits and . _ - @ +",
    ),
    ("field_error_username_start", "must start with a letter or digit"),
    (
        "field_error_username_at",
        "may contain @ only as your own email address",
    ),
    ("field_error_email_length", "must be 1 to {max} characters"),
    ("field_error_email_invalid", "is not a valid email address"),
    (
        "field_error_email_must_stay",
        "must stay your username while your username is an email address",
    ),
    ("field_error_text_too_long", "must be at most {n} characters"),
    ("field_error_control_characters", "must not contain control characters"),
    (
        "field_error_instant_range",
        "must be between 1970-01-01T00:00:00Z and 3000-01-01T00:00:00Z",
    ),
    ("field_error_number_range", "must be between {min} and {max}"),
    ("field_error_password_too_short", "must be at least {n} characters"),
    ("field_error_password_too_long", "must be at most {n} characters"),
    (
        "field_error_password_contains_username",
        "must not contain your username",
    ),
    ("field_error_password_contains_email", "must not contain your email"),
    ("field_error_password_guessable", "is too easy to guess"),
    (
        "field_error_password_unchanged",
        "must differ from the current password",
    ),
    // zxcvbn's feedback, in zxcvbn's words.
    (
        "field_advice_warning_straight_rows",
        "Straight rows of keys are easy to guess.",
    ),
    (
        "field_advice_warning_short_keyboard_patterns",
        "Short keyboard patterns are easy to guess.",
    ),
    (
        "field_advice_warning_repeats_aaa",
        "Repeats like \"aaa\" are easy to guess.",
    ),
    (
        "field_advice_warning_repeats_abcabc",
        "Repeats like \"abcabcabc\" are only slightly harder to guess than \"abc\".",
    ),
    ("field_advice_warning_top10", "This is a top-10 common password."),
    ("field_advice_warning_top100", "This is a top-100 common password."),
    ("field_advice_warning_common", "This is a very common password."),
    (
        "field_advice_warning_similar_to_common",
        "This is similar to a commonly used password.",
    ),
    (
        "field_advice_warning_sequences",
        "Sequences like abc or 6543 are easy to guess.",
    ),
    ("field_advice_warning_recent_years", "Recent years are easy to guess."),
    (
        "field_advice_warning_word_by_itself",
        "A word by itself is easy to guess.",
    ),
    ("field_advice_warning_dates", "Dates are often easy to guess."),
    (
        "field_advice_warning_names_by_themselves",
        "Names and surnames by themselves are easy to guess.",
    ),
    (
        "field_advice_warning_common_names",
        "Common names and surnames are easy to guess.",
    ),
    (
        "field_advice_suggestion_few_words",
        "Use a few words, avoid common phrases.",
    ),
    (
        "field_advice_suggestion_no_symbols_needed",
        "No need for symbols, digits, or uppercase letters.",
    ),
    (
        "field_advice_suggestion_add_word",
        "Add another word or two. Uncommon words are better.",
    ),
    (
        "field_advice_suggestion_capitalization",
        "Capitalization doesn't help very much.",
    ),
    (
        "field_advice_suggestion_all_uppercase",
        "All-uppercase is almost as easy to guess as all-lowercase.",
    ),
    (
        "field_advice_suggestion_reversed_words",
        "Reversed words aren't much harder to guess.",
    ),
    (
        "field_advice_suggestion_substitutions",
        "Predictable substitutions like '@' instead of 'a' don't help very much.",
    ),
    (
        "field_advice_suggestion_longer_keyboard_pattern",
        "Use a longer keyboard pattern with more turns.",
    ),
    (
        "field_advice_suggestion_avoid_repeats",
        "Avoid repeated words and characters.",
    ),
    ("field_advice_suggestion_avoid_sequences", "Avoid sequences."),
    ("field_advice_suggestion_avoid_recent_years", "Avoid recent years."),
    (
        "field_advice_suggestion_avoid_your_years",
        "Avoid years that are associated with you.",
    ),
    (
        "field_advice_suggestion_avoid_your_dates",
        "Avoid dates and years that are associated with you.",
    ),
];

pub const DE: Messages = &[
    ("field_error_required", "ist erforderlich"),
    ("field_error_incorrect", "ist nicht korrekt"),
    ("field_error_username_length", "muss {min} bis {max} Zeichen lang sein"),
    (
        "field_error_username_characters",
        "darf nur ASCII-Buchstaben, Ziffern und . _ - @ + enthalten",
    ),
    (
        "field_error_username_start",
        "muss mit einem Buchstaben oder einer Ziffer beginnen",
    ),
    (
        "field_error_username_at",
        "darf @ nur als Ihre eigene E-Mail-Adresse enthalten",
    ),
    ("field_error_email_length", "muss 1 bis {max} Zeichen lang sein"),
    ("field_error_email_invalid", "ist keine gültige E-Mail-Adresse"),
    (
        "field_error_email_must_stay",
        "muss Ihr Benutzername bleiben, solange dieser eine E-Mail-Adresse ist",
    ),
    ("field_error_text_too_long", "darf höchstens {n} Zeichen lang sein"),
    ("field_error_control_characters", "darf keine Steuerzeichen enthalten"),
    (
        "field_error_instant_range",
        "muss zwischen 1970-01-01T00:00:00Z und 3000-01-01T00:00:00Z liegen",
    ),
    ("field_error_number_range", "muss zwischen {min} und {max} liegen"),
    (
        "field_error_password_too_short",
        "muss mindestens {n} Zeichen lang sein",
    ),
    ("field_error_password_too_long", "darf höchstens {n} Zeichen lang sein"),
    (
        "field_error_password_contains_username",
        "darf Ihren Benutzernamen nicht enthalten",
    ),
    (
        "field_error_password_contains_email",
        "darf Ihre E-Mail-Adresse nicht enthalten",
    ),
    ("field_error_password_guessable", "ist zu leicht zu erraten"),
    (
        "field_error_password_unchanged",
        "muss sich vom aktuellen Passwort unterscheiden",
    ),
    (
        "field_advice_warning_straight_rows",
        "Gerade Tastenreihen sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_short_keyboard_patterns",
        "Kurze Tastaturmuster sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_repeats_aaa",
        "Wiederholungen wie „aaa“ sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_repeats_abcabc",
        "Wiederholungen wie „abcabcabc“ sind kaum schwerer zu erraten als „abc“.",
    ),
    (
        "field_advice_warning_top10",
        "Dies ist eines der 10 häufigsten Passwörter.",
    ),
    (
        "field_advice_warning_top100",
        "Dies ist eines der 100 häufigsten Passwörter.",
    ),
    ("field_advice_warning_common", "Dies ist ein sehr häufiges Passwort."),
    (
        "field_advice_warning_similar_to_common",
        "Dies ähnelt einem häufig verwendeten Passwort.",
    ),
    (
        "field_advice_warning_sequences",
        "Folgen wie abc oder 6543 sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_recent_years",
        "Jahreszahlen der letzten Jahre sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_word_by_itself",
        "Ein einzelnes Wort ist leicht zu erraten.",
    ),
    ("field_advice_warning_dates", "Daten sind oft leicht zu erraten."),
    (
        "field_advice_warning_names_by_themselves",
        "Vor- und Nachnamen allein sind leicht zu erraten.",
    ),
    (
        "field_advice_warning_common_names",
        "Häufige Vor- und Nachnamen sind leicht zu erraten.",
    ),
    (
        "field_advice_suggestion_few_words",
        "Verwenden Sie einige Wörter und meiden Sie gängige Redewendungen.",
    ),
    (
        "field_advice_suggestion_no_symbols_needed",
        "Sonderzeichen, Ziffern oder Großbuchstaben sind nicht nötig.",
    ),
    (
        "field_advice_suggestion_add_word",
        "Fügen Sie ein oder zwei Wörter hinzu. Ungewöhnliche Wörter sind besser.",
    ),
    (
        "field_advice_suggestion_capitalization",
        "Großschreibung hilft nicht viel.",
    ),
    (
        "field_advice_suggestion_all_uppercase",
        "Nur Großbuchstaben sind fast so leicht zu erraten wie nur Kleinbuchstaben.",
    ),
    (
        "field_advice_suggestion_reversed_words",
        "Rückwärts geschriebene Wörter sind kaum schwerer zu erraten.",
    ),
    (
        "field_advice_suggestion_substitutions",
        "Vorhersehbare Ersetzungen wie „@“ statt „a“ helfen nicht viel.",
    ),
    (
        "field_advice_suggestion_longer_keyboard_pattern",
        "Verwenden Sie ein längeres Tastaturmuster mit mehr Richtungswechseln.",
    ),
    (
        "field_advice_suggestion_avoid_repeats",
        "Vermeiden Sie wiederholte Wörter und Zeichen.",
    ),
    (
        "field_advice_suggestion_avoid_sequences",
        "Vermeiden Sie Zeichenfolgen.",
    ),
    (
        "field_advice_suggestion_avoid_recent_years",
        "Vermeiden Sie Jahreszahlen der letzten Jahre.",
    ),
    (
        "field_advice_suggestion_avoid_your_years",
        "Vermeiden Sie Jahreszahlen, die mit Ihnen in Verbindung stehen.",
    ),
    (
        "field_advice_suggestion_avoid_your_dates",
        "Vermeiden Sie Daten und Jahreszahlen, die mit Ihnen in Verbindung stehen.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::{self, ADVICE_CODES, CODES, PasswordPolicy};

    /// Every reason and every piece of zxcvbn advice the domain can give has words in
    /// every language: none falls back to English on a German page.
    #[test]
    fn every_code_has_words_in_every_language() {
        for lang in Lang::all() {
            for code in CODES.iter().filter(|c| **c != INVALID) {
                let key = format!("field_error_{code}");
                assert_ne!(lang.get(&key), "?", "{} lacks {key}", lang.code);
            }
            for code in ADVICE_CODES {
                let key = format!("field_advice_{code}");
                assert_ne!(lang.get(&key), "?", "{} lacks {key}", lang.code);
            }
        }
    }

    /// Errors the rules really give, with the passwords zxcvbn has the most to say about.
    fn samples() -> Vec<FieldError> {
        let policy = PasswordPolicy {
            min_length: 8,
            max_length: 128,
            min_score: 3,
        };
        let passwords = [
            "short",
            &"Zq9!".repeat(40),
            "abc\u{7}defghij",
            "xx-alicewonder-77",
            "zz-bob@example.com",
            "password123",
            "password",
            "qwertyuiop",
            "aaaaaaaaaa",
            "abcabcabcabc",
            "abcdefgh1234",
            "P@ssw0rd!",
            "johnsmith",
            "19871987",
            "12/25/1990",
            "drowssap1",
            "PASSWORD99",
            "Baseball2019",
        ];
        let mut out: Vec<FieldError> = passwords
            .iter()
            .filter_map(|p| policy.check("password", p, "alicewonder", "bob@example.com").err())
            .collect();
        for name in ["ab", "has space", "-lead"] {
            out.extend(validate::username(name).err());
        }
        for email in ["", "no-at", &format!("a@{}.com", "b".repeat(260))] {
            out.extend(validate::email(email).err());
        }
        out.extend(validate::username_for("x@example.com", "y@example.com").err());
        out.extend(validate::text("full_name", &"n".repeat(201), 200).err());
        out.extend(validate::text("full_name", "a\0b", 200).err());
        out.extend(validate::query_number("limit", Some(0), 1..=500).err());
        out
    }

    /// In English the page says what the API says, word for word (so the catalogue's
    /// English and the codes match the domain's messages), and every code given is listed.
    #[test]
    fn english_reasons_are_the_apis_messages() {
        let samples = samples();
        assert!(samples.iter().any(|e| e.advice_codes().len() == 2));
        for e in &samples {
            assert!(CODES.contains(&e.code), "{} is not in CODES", e.code);
            for a in e.advice_codes() {
                assert!(ADVICE_CODES.contains(a), "{a} is not in ADVICE_CODES");
            }
            assert_eq!(reason(Lang::english(), e), e.message, "{e:?}");
        }
    }

    #[test]
    fn german_reasons_are_german() {
        let de = Lang::named("de").unwrap();
        let policy = PasswordPolicy {
            min_length: 8,
            max_length: 128,
            min_score: 2,
        };
        let short = policy.check("password", "short", "kim", "kim@example.com").unwrap_err();
        assert_eq!(reason(de, &short), "muss mindestens 8 Zeichen lang sein");
        let weak = policy
            .check("password", "password123", "kim", "kim@example.com")
            .unwrap_err();
        let text = reason(de, &weak);
        assert!(text.starts_with("ist zu leicht zu erraten: "), "{text}");
        assert!(!text.contains("password"), "{text}");
        let odd = FieldError::new("x", INVALID, "is odd");
        assert_eq!(reason(de, &odd), "is odd");
    }
}
