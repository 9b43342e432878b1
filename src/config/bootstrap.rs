//! What the first start-up creates: the master key that seals secrets at rest (read
//! from the settings or a key file) and the first administrator.

use std::path::PathBuf;

use super::{DatabaseTarget, Sources};

/// The names this group reads, aliases included: the TOML file may set only known ones.
pub(super) const KEYS: &[&str] = &[
    "PORTCULLIS_MASTER_KEY",
    "PORTCULLIS_MASTER_KEY_FILE",
    "PORTCULLIS_ADMIN_USERNAME",
    "PORTCULLIS_ADMIN_EMAIL",
    "PORTCULLIS_ADMIN_PASSWORD",
];

#[derive(Debug, Clone)]
pub struct BootstrapSettings {
    /// Base64 (or hex) 32-byte key for secrets at rest.
    pub master_key: Option<String>,
    pub master_key_file: PathBuf,
    pub admin_username: String,
    pub admin_email: String,
    pub admin_password: Option<String>,
}

/// The key file defaults to one named after the SQLite database file, so each
/// database gets its own key.
pub(super) fn settings(s: &Sources, database: &DatabaseTarget) -> BootstrapSettings {
    let master_key_file = match s.get(&["PORTCULLIS_MASTER_KEY_FILE"]) {
        Some((_, v)) => PathBuf::from(v),
        None => match database {
            DatabaseTarget::Sqlite(path) => {
                let mut p = path.clone().into_os_string();
                p.push(".key");
                PathBuf::from(p)
            }
            DatabaseTarget::Postgres(_) => PathBuf::from("portcullis.key"),
        },
    };
    BootstrapSettings {
        master_key: s.get(&["PORTCULLIS_MASTER_KEY"]).map(|(_, v)| v.to_string()),
        master_key_file,
        admin_username: s.string(&["PORTCULLIS_ADMIN_USERNAME"], "admin"),
        admin_email: s.string(&["PORTCULLIS_ADMIN_EMAIL"], "admin@portcullis.local"),
        admin_password: s.get(&["PORTCULLIS_ADMIN_PASSWORD"]).map(|(_, v)| v.to_string()),
    }
}
