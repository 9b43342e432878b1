//! Reading rows into structs, and the embedded migrations, without sqlx's proc
//! macros.
//!
//! `#[derive(sqlx::FromRow)]` and `sqlx::migrate!` pull in `sqlx-macros`, and through
//! it a second build of both database drivers, rustls and aws-lc (C) for the compiler
//! host: about 45 seconds of CPU in a clean release build (aws-lc alone 25), on a
//! machine with two cores, where the benchmark's one command is timed from a fresh
//! clone. Both are small to do by hand.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Declares a struct read from a row by column name, one column per field, on either
/// backend: what `#[derive(sqlx::FromRow)]` generates for a plain struct. A struct that
/// embeds another row struct implements `FromRow` by hand.
macro_rules! row_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for $name
        where
            &'static str: sqlx::ColumnIndex<R>,
            $($ty: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,)*
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                Ok(Self {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    };
}

/// One backend's migrations, in order: (version, description, SQL).
type Scripts = &'static [(i64, &'static str, &'static str)];

/// The migrations, as `sqlx::migrate!` would embed them: each file name is the same
/// in `migrations/sqlite` and `migrations/postgres`; the checksum is the SHA-384 of the
/// file's text, so databases migrated by earlier builds are recognised.
macro_rules! scripts {
    ($($version:literal $description:literal $file:literal),* $(,)?) => {
        (
            &[$(($version, $description, include_str!(concat!("../../migrations/sqlite/", $file)))),*],
            &[$(($version, $description, include_str!(concat!("../../migrations/postgres/", $file)))),*],
        )
    };
}

/// (SQLite, PostgreSQL).
const MIGRATIONS: (Scripts, Scripts) = scripts!(
    1 "core" "0001_core.sql",
    2 "admin" "0002_admin.sql",
    3 "credentials" "0003_credentials.sql",
    4 "login throttle" "0004_login_throttle.sql",
    5 "audit" "0005_audit.sql",
    6 "mfa" "0006_mfa.sql",
    7 "oauth" "0007_oauth.sql",
    8 "audit by user" "0008_audit_by_user.sql",
    9 "revocation feed order" "0009_revocation_feed_order.sql",
    10 "ascii case folding" "0010_ascii_case_folding.sql",
    11 "oauth issuer subject" "0011_oauth_issuer_subject.sql",
    12 "audit anchors" "0012_audit_anchors.sql",
    13 "instances" "0013_instances.sql",
    14 "browser sessions" "0014_browser_sessions.sql",
    15 "sessions ended at" "0015_sessions_ended_at.sql",
    16 "browser step-up" "0016_browser_step_up.sql",
    20 "oauth flow purpose" "0020_oauth_flow_purpose.sql",
    21 "oidc" "0021_oidc.sql",
    22 "client assertions" "0022_client_assertions.sql",
);

fn migrator(scripts: Scripts) -> Migrator {
    Migrator::with_migrations(
        scripts
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(crate) fn sqlite_migrations() -> Migrator {
    migrator(MIGRATIONS.0)
}

pub(crate) fn postgres_migrations() -> Migrator {
    migrator(MIGRATIONS.1)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// Every file in `migrations/` is embedded, under the version its name starts with.
    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, scripts) in [("sqlite", MIGRATIONS.0), ("postgres", MIGRATIONS.1)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&path)
                .expect("migrations directory")
                .map(|e| {
                    let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                    let version = name
                        .split('_')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .expect("numbered file");
                    let text = std::fs::read_to_string(path.join(&name)).expect("readable");
                    (version, text)
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = scripts.iter().map(|&(v, _, sql)| (v, sql.to_string())).collect();
            assert_eq!(files, embedded, "{dir}");
        }
    }
}
