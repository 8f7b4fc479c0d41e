//! Where a command looks for its settings: `--config`, else `./kefu.toml`, under the process
//! environment; and what its errors say about that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::layers::{ConfigFile, Layers};
use super::schema::{check_file, settings};
use super::{Config, ConfigError, StoreConfig};

/// The file `serve`, `send` and `crypt` read when no `--config` is given, in the working
/// directory.
pub const DEFAULT_CONFIG_FILE: &str = "kefu.toml";

/// The config file a command reads: the `--config` given, else `./kefu.toml` if it exists.
pub fn config_file(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(path) => Some(path.to_owned()),
        None => {
            let default = Path::new(".").join(DEFAULT_CONFIG_FILE);
            default.is_file().then_some(default)
        }
    }
}

/// A `--config` that names no readable file is an error of its own, with what to do.
pub fn check_given_file(given: Option<&Path>) -> Result<(), ConfigError> {
    match given {
        Some(path) if !path.is_file() => Err(ConfigError(format!(
            "the config file {} does not exist; pass the right --config, or start from the example: cp kefu.example.toml {}",
            path.display(),
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Where the settings were looked for, for the start-up log and for configuration errors.
pub fn settings_origin(given: Option<&Path>, file: Option<&Path>) -> String {
    match (given, file) {
        (Some(path), _) => format!(
            "settings were read from {}; a KEFU_* environment variable wins over it",
            path.display()
        ),
        (None, Some(path)) => format!(
            "no --config given: settings were read from {}; a KEFU_* environment variable wins over it",
            path.display()
        ),
        (None, None) => format!(
            "no --config given and ./{DEFAULT_CONFIG_FILE} does not exist: settings came from the KEFU_* environment variables only"
        ),
    }
}

/// The `[section]` settings of a config file, by key, with their text; unknown keys are refused
/// as in [`Config::load`]. For `crypt`, which needs the `dialogue` credentials and nothing else.
pub fn file_settings(path: &Path) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let file = ConfigFile::read(path)?;
    check_file(file.table(), file.path())?;
    let layers = Layers::new(Some(&file));
    let mut values = BTreeMap::new();
    for setting in settings() {
        if let Some(field) = layers.get(setting.key, setting.secret)? {
            values.insert(setting.key, field.text().to_owned());
        }
    }
    Ok(values)
}

impl Config {
    /// Loads the settings of a subcommand run from the command line: the `--config` file (else
    /// `./kefu.toml` if it exists), overridden by the process environment; `serving` also
    /// demands `server.api_key`. An error says where the settings were looked for.
    pub fn load_cli(given: Option<&Path>, serving: bool) -> Result<Config, ConfigError> {
        from_cli(given, |file| {
            let config = Config::load(file, |name| std::env::var(name).ok())?;
            if serving {
                config.api_key()?;
            }
            Ok(config)
        })
    }
}

/// [`load_store`](super::load_store) for a subcommand run from the command line, reading its
/// settings as [`Config::load_cli`] does.
pub fn load_store_cli(given: Option<&Path>) -> Result<(StoreConfig, PathBuf), ConfigError> {
    from_cli(given, |file| {
        super::load_store(file, |name| std::env::var(name).ok())
    })
}

/// Runs `load` on the file a command line names (see [`config_file`]); an error says where the
/// settings were looked for.
fn from_cli<T>(
    given: Option<&Path>,
    load: impl FnOnce(Option<&Path>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    check_given_file(given)?;
    let file = config_file(given);
    load(file.as_deref()).map_err(|error| {
        ConfigError(format!(
            "{error}\n({})",
            settings_origin(given, file.as_deref())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No --config and no ./kefu.toml: the error says that only the environment was read.
    #[test]
    fn errors_say_where_settings_were_looked_for() {
        let given = Path::new("/etc/kefu/kefu.toml");
        assert!(settings_origin(Some(given), Some(given)).contains("/etc/kefu/kefu.toml"));
        assert!(
            settings_origin(None, Some(Path::new("./kefu.toml")))
                .starts_with("no --config given: settings were read from ./kefu.toml")
        );
        assert_eq!(
            settings_origin(None, None),
            "no --config given and ./kefu.toml does not exist: settings came from the KEFU_* environment variables only"
        );
        let missing = Path::new("/nonexistent/kefu.toml");
        let err = Config::load_cli(Some(missing), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the config file /nonexistent/kefu.toml does not exist; pass the right --config, or start from the example: cp kefu.example.toml /nonexistent/kefu.toml"
        );
    }

    #[test]
    fn file_settings_are_the_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kefu.toml");
        std::fs::write(
            &path,
            "[dialogue]\ntoken = \"T\"\n[server]\nmax_body_bytes = 2048\n",
        )
        .unwrap();
        let values = file_settings(&path).unwrap();
        assert_eq!(values.get("dialogue.token").map(String::as_str), Some("T"));
        assert_eq!(
            values.get("server.max_body_bytes").map(String::as_str),
            Some("2048")
        );
        assert_eq!(values.len(), 2);
        std::fs::write(&path, "[dialogue]\ntokn = \"T\"\n").unwrap();
        assert!(
            file_settings(&path)
                .unwrap_err()
                .to_string()
                .contains("unknown setting")
        );
    }
}
