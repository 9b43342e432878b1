//! Where settings come from: the environment, a `.env` file and an optional TOML
//! file, gathered into one flat map before anything is parsed.
//!
//! TOML keys are upper-cased and nested tables joined with `_`, so `[jwt] issuer = ".."`
//! is `JWT_ISSUER`: one name per setting whichever source sets it. A key in the file
//! that no setting reads is refused, naming it and the nearest known key, because a
//! misspelt key would otherwise leave the default silently in force. The environment
//! is not checked that way: it holds everything else the process was given too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The file read from the working directory when no other is named.
pub const DEFAULT_FILE: &str = "portcullis.toml";

/// A setting that `none` switches off, as read.
pub(super) enum Switch<'a> {
    /// Not set: the default applies.
    Default,
    /// `none`.
    Off,
    /// Set to a value (with the name it was found under).
    Set(&'a str, &'a str),
}

/// The fields of one `[[verify.routes]]` entry, in the order the route map reads them.
const ROUTE_FIELDS: [&str; 3] = ["method", "path", "permission"];

/// A flat, upper-cased view of every source, later sources winning.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    values: HashMap<String, String>,
    /// The TOML file that was read, if any, for the start-up log.
    file: Option<PathBuf>,
    /// The names read as settings that `none` switches off, so that an empty value of
    /// one can say so.
    pub(super) switchable: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// Every name a setting asked for, so a test can hold the known keys to the reads.
    #[cfg(test)]
    pub(super) asked: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Sources {
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut s = Self::default();
        for (k, v) in pairs {
            s.set(k.as_ref(), v.into());
        }
        s
    }

    pub fn set(&mut self, key: &str, value: String) {
        self.values.insert(key.to_ascii_uppercase(), value);
    }

    /// Reads the process environment, after loading `.env` from the working directory
    /// (without overriding variables already set) and the TOML file: `config_file`,
    /// else the one `PORTCULLIS_CONFIG` names, else `portcullis.toml` in the working
    /// directory when there is one.
    pub fn from_environment(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let mut s = Self::default();
        let named = std::env::var_os("PORTCULLIS_CONFIG");
        if config_file.is_none() && named.as_ref().is_some_and(|v| v.is_empty()) {
            return Err(ConfigError::new(
                "PORTCULLIS_CONFIG",
                "is empty; unset it (portcullis.toml in the working directory is read when present) or name a file",
            ));
        }
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| named.map(PathBuf::from))
            .or_else(|| {
                let local = PathBuf::from(DEFAULT_FILE);
                local.is_file().then_some(local)
            });
        if let Some(path) = file {
            s.merge_toml_file(&path)?;
        }
        for (k, v) in std::env::vars() {
            s.set(&k, v);
        }
        Ok(s)
    }

    pub fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("PORTCULLIS_CONFIG", format!("cannot read {}: {e}", path.display())))?;
        self.merge_toml_str(&text)
            .map_err(|e| ConfigError::new("PORTCULLIS_CONFIG", format!("{}: {e}", path.display())))?;
        self.file = Some(path.to_path_buf());
        Ok(())
    }

    /// The TOML file the settings were read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Adds the file's settings; the error names the first key no setting reads.
    pub fn merge_toml_str(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        self.flatten("", "", &table)
    }

    /// `prefix` is the flat name of `table` (`OAUTH_OIDC_X`), `written` its dotted path
    /// as in the file (`oauth.oidc.x`), for error messages.
    fn flatten(&mut self, prefix: &str, written: &str, table: &toml::Table) -> Result<(), String> {
        for (k, v) in table {
            let (key, written) = if prefix.is_empty() {
                (k.to_ascii_uppercase(), k.clone())
            } else {
                (format!("{prefix}_{}", k.to_ascii_uppercase()), format!("{written}.{k}"))
            };
            if let toml::Value::Table(t) = v {
                self.flatten(&key, &written, t)?;
                continue;
            }
            check_known(&key, &written, super::known_keys(&key))?;
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(items) if items.iter().all(|i| i.is_table()) && !items.is_empty() => {
                    // e.g. [[verify.routes]] method/path/permission -> "GET /x perm; ..."
                    let mut entries = Vec::with_capacity(items.len());
                    for entry in items.iter().filter_map(|i| i.as_table()) {
                        // Case-sensitive, unlike setting names: the entry is read by these exact keys.
                        for field in entry.keys() {
                            let fields = ROUTE_FIELDS.iter().map(|f| format!("{key}_{f}")).collect();
                            check_known(&format!("{key}_{field}"), &format!("{written}.{field}"), fields)?;
                        }
                        let words: Vec<&str> = ROUTE_FIELDS
                            .iter()
                            .map(|f| entry.get(*f).and_then(|v| v.as_str()).unwrap_or("*"))
                            .collect();
                        entries.push(words.join(" "));
                    }
                    entries.join("; ")
                }
                toml::Value::Array(items) => {
                    let joined: Vec<String> = items
                        .iter()
                        .map(|i| match i {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    joined.join(",")
                }
                other => other.to_string(),
            };
            self.set(&key, value);
        }
        Ok(())
    }

    /// The names every source set, upper-cased (for settings whose names carry a part
    /// the operator chooses, like a generic OIDC provider's).
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The value of the first of `names` that is set, trimmed, with the name it was
    /// found under. An empty value reads as unset here, and `Config::from_sources`
    /// then refuses it ([`Sources::refuse_empty`]).
    pub(super) fn get<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        #[cfg(test)]
        self.asked.borrow_mut().extend(names.iter().map(|n| n.to_string()));
        names.iter().find_map(|n| {
            self.values
                .get(*n)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (*n, v))
        })
    }

    /// A setting that `none` switches off: whether it is unset (its default applies),
    /// `none` (any case), or set to something else.
    pub(super) fn switch<'a>(&'a self, names: &[&'a str]) -> Switch<'a> {
        self.switchable.borrow_mut().extend(names.iter().map(|n| n.to_string()));
        match self.get(names) {
            None => Switch::Default,
            Some((_, v)) if v.eq_ignore_ascii_case("none") => Switch::Off,
            Some((name, v)) => Switch::Set(name, v),
        }
    }

    /// A number that `none` (or `off_value` itself) switches off.
    pub(super) fn number_or_off<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        names: &[&str],
        default: T,
        off_value: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.switch(names) {
            Switch::Off => Ok(off_value),
            _ => self.number(names, default, off_value, max),
        }
    }

    /// A comma-separated list that `none` empties: None when unset (the caller's default
    /// applies). A value that lists nothing (`,`) is refused rather than read as empty.
    pub(super) fn list(&self, names: &[&str]) -> Result<Option<Vec<String>>, ConfigError> {
        match self.switch(names) {
            Switch::Default => Ok(None),
            Switch::Off => Ok(Some(Vec::new())),
            Switch::Set(name, raw) => {
                let items: Vec<String> = super::split_list(raw).map(str::to_string).collect();
                if items.is_empty() {
                    return Err(ConfigError::new(
                        name,
                        format!("{raw:?} lists nothing; write `none` to switch it off"),
                    ));
                }
                Ok(Some(items))
            }
        }
    }

    /// Refuses a setting given an empty value: read as "unset" it would quietly put the
    /// default in force (an empty `MFA_REQUIRED_ROLES` meant `admin`, an empty
    /// `OAUTH_MICROSOFT_TENANT` every tenant), and read as "nothing" it would switch a
    /// protection off without saying so. Run after the settings were read, so that the
    /// message can say whether `none` switches the setting off; only names some setting
    /// reads are checked (the environment holds everything else too).
    pub(super) fn refuse_empty(&self) -> Result<(), ConfigError> {
        let mut empty: Vec<&str> = self
            .values
            .iter()
            .filter(|(_, v)| v.trim().is_empty())
            .map(|(k, _)| k.as_str())
            .filter(|k| super::known_keys(k).iter().any(|known| known == k))
            .collect();
        empty.sort();
        let Some(name) = empty.first() else {
            return Ok(());
        };
        let off = if self.switchable.borrow().contains(*name) {
            ", or set it to `none` to switch it off"
        } else {
            ""
        };
        Err(ConfigError::new(
            name,
            format!("is empty; unset it to use the default{off}"),
        ))
    }

    pub(super) fn string(&self, names: &[&str], default: &str) -> String {
        self.get(names)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| default.to_string())
    }

    pub(super) fn flag(&self, names: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.get(names) {
            None => Ok(default),
            Some((name, raw)) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(name, format!("expected true or false, got {raw:?}"))),
            },
        }
    }

    /// One of a few words (any case), each standing for a value.
    pub(super) fn choice<T: Copy>(&self, name: &str, default: &str, options: &[(&str, T)]) -> Result<T, ConfigError> {
        let raw = self.string(&[name], default).to_ascii_lowercase();
        match options.iter().find(|(word, _)| *word == raw) {
            Some((_, value)) => Ok(*value),
            None => {
                let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
                Err(ConfigError::new(
                    name,
                    format!("expected {}, got {raw:?}", words.join(" or ")),
                ))
            }
        }
    }

    pub(super) fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        names: &[&str],
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.get(names) {
            None => Ok(default),
            Some((name, raw)) => {
                let v: T = raw
                    .parse()
                    .map_err(|_| ConfigError::new(name, format!("expected a whole number, got {raw:?}")))?;
                if v < min || v > max {
                    return Err(ConfigError::new(
                        name,
                        format!("must be between {min} and {max}, got {v}"),
                    ));
                }
                Ok(v)
            }
        }
    }
}

/// Refuses `key` (flat, upper-cased; `written` as in the file) unless it is among
/// `known`, suggesting the nearest known key when one is close enough to be a typo.
fn check_known(key: &str, written: &str, known: Vec<String>) -> Result<(), String> {
    if known.iter().any(|k| k == key) {
        return Ok(());
    }
    let suggestion = super::names::nearest(key, known.iter().map(String::as_str))
        .map(|k| format!("; did you mean `{}`?", as_written(k, written)))
        .unwrap_or_default();
    Err(format!("unknown setting `{written}`{suggestion}"))
}

/// A known flat key (`JWT_ISSUER`) spelt the way the operator wrote the unknown one:
/// in the same table when it belongs there (`jwt.issuer`), otherwise as a top-level key.
fn as_written(known: &str, written: &str) -> String {
    let lower = known.to_ascii_lowercase();
    if let Some((table, _)) = written.rsplit_once('.') {
        let flat_table = format!("{}_", table.replace('.', "_").to_ascii_lowercase());
        if let Some(rest) = lower.strip_prefix(&flat_table) {
            return format!("{table}.{rest}");
        }
    }
    lower
}
