//! `kefu-connector migrate`: brings the schema of the store the configuration names to this
//! build's version, or with `--check` only says whether that is due.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use kefu_store_postgres::{LATEST, PgConfig, PgError, RelayId, connect_one, schema_version};

use crate::config::{ConfigError, load_store_cli};
use crate::runtime::block_on;
use crate::store::StoreError;
use crate::store::sqlite::{SqliteStore, schema};

/// Arguments of `migrate`.
#[derive(Debug, Args)]
#[command(after_long_help = MIGRATE_HELP)]
pub struct MigrateArgs {
    /// The TOML configuration file [default: ./kefu.toml if it exists]. Only `[store]` and
    /// `outbox.path` are read, so the platform's credentials need not be set; KEFU_STORE_URL
    /// and KEFU_OUTBOX_PATH win over the file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Change nothing: exit 0 if the schema is this build's, 1 if a migration is due.
    #[arg(long)]
    pub check: bool,
}

const MIGRATE_HELP: &str = "\
With [store] url (KEFU_STORE_URL), the PostgreSQL database's `kefu` schema is migrated, in one
transaction under an advisory lock, so that relays starting at the same time migrate it once;
`serve` does the same at start unless [store] migrate = \"manual\". Migrations only add (tables,
columns, indexes), so relays of the previous version keep running on the migrated schema.

Without it, the SQLite file of outbox.path is migrated, under the file's lock: this refuses while
a relay runs on it. Jobs are not touched (the relay's next start recovers them).

Prints, for example, `postgres kefu schema: version 1 (was 0)`.

Exit status:
  0  the schema is this build's (migrated now, or already)
  1  the store failed (unreachable, refused, locked by a running relay); with --check, a
     migration is due
  2  a configuration error, or a schema newer than this build knows: run the relay that wrote
     it, or a newer one";

/// Why `migrate` stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The settings are invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The PostgreSQL database failed, or its schema is newer than this build's (the text names
    /// no secret).
    #[error("{0}")]
    Postgres(#[from] PgError),
    /// The SQLite file is at a version newer than this build knows.
    #[error(
        "the outbox file {path} is at schema version {found}, newer than this relay knows ({known}); run the relay that wrote it, or a newer one"
    )]
    SqliteTooNew {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The SQLite file could not be read, locked or migrated.
    #[error("the outbox file {path}: {reason}")]
    Sqlite {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl MigrateError {
    /// The exit status: 2 for what the operator must change (the settings, or the build),
    /// 1 for a store that failed.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            MigrateError::Config(_)
            | MigrateError::SqliteTooNew { .. }
            | MigrateError::Postgres(PgError::Config(_) | PgError::SchemaTooNew { .. }) => {
                ExitCode::from(2)
            }
            _ => ExitCode::FAILURE,
        }
    }
}

/// A schema's version before and after, or with `--check` its version and this build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// What is versioned: `postgres kefu schema` or `sqlite outbox schema`.
    pub what: &'static str,
    /// The version found (0: none yet).
    pub found: i64,
    /// The version it is at now, or with `--check` the version this build needs.
    pub now: i64,
}

impl Versions {
    /// Whether a migration is (or was) due.
    pub fn due(&self) -> bool {
        self.found < self.now
    }

    /// The line printed after a migration.
    fn migrated(&self) -> String {
        format!("{}: version {} (was {})", self.what, self.now, self.found)
    }

    /// The line printed by `--check`.
    fn checked(&self) -> String {
        if self.due() {
            format!(
                "{}: version {}, this relay needs {}: run kefu-connector migrate",
                self.what, self.found, self.now
            )
        } else {
            format!("{}: version {}, current", self.what, self.found)
        }
    }
}

/// Runs `migrate`.
pub fn run(args: MigrateArgs) -> ExitCode {
    let (store, outbox_path) = match load_store_cli(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&MigrateError::Config(error)),
    };
    match store.postgres() {
        Some(pg) => block_on(async {
            match postgres(pg, args.check).await {
                Ok(versions) => report(&versions, args.check),
                Err(error) => {
                    let code = fail(&error);
                    eprintln!("(the database: {})", pg.url);
                    code
                }
            }
        }),
        None => match sqlite(&outbox_path, args.check) {
            Ok(versions) => report(&versions, args.check),
            Err(error) => fail(&error),
        },
    }
}

fn report(versions: &Versions, check: bool) -> ExitCode {
    if check {
        println!("{}", versions.checked());
        if versions.due() {
            return ExitCode::FAILURE;
        }
    } else {
        println!("{}", versions.migrated());
    }
    ExitCode::SUCCESS
}

fn fail(error: &MigrateError) -> ExitCode {
    eprintln!("error: {error}");
    error.exit_code()
}

/// Migrates (or checks) the PostgreSQL database on a connection of its own, recorded in
/// `kefu.schema_migrations` as applied by this process's relay id.
pub async fn postgres(config: &PgConfig, check: bool) -> Result<Versions, MigrateError> {
    let relay = RelayId::generate(&config.relay_name);
    let (mut client, connection) = connect_one(config, &relay).await?;
    let driver = tokio::spawn(connection);
    let versions = if check {
        let found = schema_version(&client).await?;
        if found > LATEST {
            return Err(PgError::SchemaTooNew {
                found,
                known: LATEST,
            }
            .into());
        }
        (found, LATEST)
    } else {
        let migrated = kefu_store_postgres::migrate(&mut client, relay.as_str()).await?;
        (migrated.from, migrated.to)
    };
    drop(client);
    let _ = driver.await;
    Ok(Versions {
        what: "postgres kefu schema",
        found: versions.0.into(),
        now: versions.1.into(),
    })
}

/// Migrates (or checks) the SQLite file. The migration takes the file's lock, so it is refused
/// while a relay runs; the check only reads the version, which a running relay allows.
pub fn sqlite(path: &Path, check: bool) -> Result<Versions, MigrateError> {
    let failed = |error: StoreError| MigrateError::Sqlite {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let known = schema::LATEST as i64;
    let found = schema::file_version(path).map_err(failed)? as i64;
    if found > known {
        return Err(MigrateError::SqliteTooNew {
            path: path.display().to_string(),
            found,
            known,
        });
    }
    if !check {
        SqliteStore::migrate_file(path).map_err(failed)?;
    }
    Ok(Versions {
        what: "sqlite outbox schema",
        found,
        now: known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_changed_or_is_due() {
        let versions = Versions {
            what: "sqlite outbox schema",
            found: 2,
            now: 3,
        };
        assert!(versions.due());
        assert_eq!(
            versions.migrated(),
            "sqlite outbox schema: version 3 (was 2)"
        );
        assert_eq!(
            versions.checked(),
            "sqlite outbox schema: version 2, this relay needs 3: run kefu-connector migrate"
        );
        let current = Versions {
            found: 3,
            ..versions
        };
        assert!(!current.due());
        assert_eq!(
            current.checked(),
            "sqlite outbox schema: version 3, current"
        );
    }

    #[test]
    fn a_schema_newer_than_this_build_is_a_configuration_matter() {
        let too_new = MigrateError::SqliteTooNew {
            path: "o.sqlite3".into(),
            found: 9,
            known: 3,
        };
        assert_eq!(too_new.exit_code(), ExitCode::from(2));
        let pg = MigrateError::Postgres(PgError::SchemaTooNew { found: 2, known: 1 });
        assert_eq!(pg.exit_code(), ExitCode::from(2));
        let down = MigrateError::Postgres(PgError::Unavailable("refused".into()));
        assert_eq!(down.exit_code(), ExitCode::FAILURE);
    }
}
