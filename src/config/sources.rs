//! Where settings come from: the environment, a `.env` file and an optional TOML
//! file, gathered into one flat map before anything is parsed.
//!
//! TOML keys are upper-cased and nested tables joined with `_`, so `[jwt] issuer = ".."`
//! is `JWT_ISSUER`: one name per setting whichever source sets it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// A flat, upper-cased view of every source, later sources winning.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    values: HashMap<String, String>,
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
    /// (without overriding variables already set) and the TOML file named by
    /// `PORTCULLIS_CONFIG` or `config_file`.
    pub fn from_environment(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let mut s = Self::default();
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from));
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
            .map_err(|e| ConfigError::new("PORTCULLIS_CONFIG", format!("{}: {e}", path.display())))
    }

    pub fn merge_toml_str(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        self.flatten("", &table);
        Ok(())
    }

    fn flatten(&mut self, prefix: &str, table: &toml::Table) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}_{k}")
            };
            match v {
                toml::Value::Table(t) => self.flatten(&key, t),
                toml::Value::String(s) => self.set(&key, s.clone()),
                toml::Value::Array(items) if items.iter().all(|i| i.is_table()) && !items.is_empty() => {
                    // e.g. [[verify.routes]] method/path/permission -> "GET /x perm; ..."
                    let entries: Vec<String> = items
                        .iter()
                        .filter_map(|i| i.as_table())
                        .map(|t| {
                            ["method", "path", "permission"]
                                .iter()
                                .map(|k| t.get(*k).and_then(|v| v.as_str()).unwrap_or("*"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect();
                    self.set(&key, entries.join("; "));
                }
                toml::Value::Array(items) => {
                    let joined: Vec<String> = items
                        .iter()
                        .map(|i| match i {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    self.set(&key, joined.join(","));
                }
                other => self.set(&key, other.to_string()),
            }
        }
    }

    /// The names every source set, upper-cased (for settings whose names carry a part
    /// the operator chooses, like a generic OIDC provider's).
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The first non-empty value among `names`, with the name it was found under.
    pub(super) fn get<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        names.iter().find_map(|n| {
            self.values
                .get(*n)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(|v| (*n, v))
        })
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
