//! The layers of the configuration, on figment: the config file (figment's TOML provider), then
//! the environment on top. Every value keeps the tag of the provider it came from, and that
//! provider's [`Metadata`] names the value's origin in messages: the config file, or the exact
//! `KEFU_…` variable.
//!
//! The environment is a provider of its own rather than figment's `Env`: `Env` parses values
//! (`0123` becomes the number 123, `"x"` loses its quotes, `[x]` becomes an array), which would
//! silently change tokens and AppIDs, and it reads only the process environment, while a relay
//! embedded in another program ([`Config::from_settings`](super::Config::from_settings)) must not
//! touch that.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::ConfigError;
use super::field::{Field, Origin};
use super::setting::Setting;

/// A config file, read and checked to be valid TOML.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    path: PathBuf,
    text: String,
    table: toml::Table,
}

impl ConfigFile {
    /// Reads the file; a syntax error names the file, line and column.
    pub(crate) fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let table = toml::from_str(&text).map_err(|e| syntax_error(&text, path, &e))?;
        Ok(ConfigFile {
            path: path.to_owned(),
            text,
            table,
        })
    }

    /// Where it was read from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its top-level table, for the check of its sections and keys.
    pub(crate) fn table(&self) -> &toml::Table {
        &self.table
    }
}

/// A TOML syntax error by file, line and column, without the source line the toml crate quotes:
/// that line may be a secret (`aes_key = "…` with a missing quote).
fn syntax_error(text: &str, path: &Path, error: &toml::de::Error) -> ConfigError {
    let place = error.span().map_or(String::new(), |span| {
        let before = text.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        format!(", line {line}, column {column}")
    });
    ConfigError(format!(
        "{}{place} is not valid TOML: {}; check the quoting and that no key is set twice",
        path.display(),
        error.message().trim_end()
    ))
}

/// The name of the environment provider's metadata, by which a value's origin is recognised.
const ENVIRONMENT: &str = "KEFU_* environment variable";

/// The environment variable of a key: `KEFU_`, then the key's parts in upper case joined by `_`
/// (`wechat.main.aes_key` is `KEFU_WECHAT_MAIN_AES_KEY`).
pub(crate) fn variable_of(key: &str) -> String {
    format!("KEFU_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The values of the asked-for variables that are set, verbatim (an empty value is a value: it
/// clears the file's).
struct Environment(Dict);

impl Environment {
    fn read<'a>(
        keys: impl IntoIterator<Item = &'a str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Environment {
        let mut dict = Dict::new();
        for key in keys {
            if let Some(value) = env(&variable_of(key)) {
                let path: Vec<&str> = key.split('.').collect();
                insert(&mut dict, &path, Value::from(value));
            }
        }
        Environment(dict)
    }
}

fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT)
            .interpolater(|_: &Profile, keys: &[&str]| variable_of(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// The layered settings: the file, under the environment.
pub(crate) struct Layers {
    figment: Figment,
}

impl Layers {
    /// The file's settings alone, if there is a file.
    pub(crate) fn new(file: Option<&ConfigFile>) -> Layers {
        let figment = match file {
            Some(file) => Figment::from(Toml::string(&file.text)),
            None => Figment::new(),
        };
        Layers { figment }
    }

    /// Puts the environment variables of `keys` (see [`variable_of`]) read through `env` over
    /// the settings so far.
    pub(crate) fn with_env<'a>(
        self,
        keys: impl IntoIterator<Item = &'a str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Layers {
        Layers {
            figment: self.figment.merge(Environment::read(keys, env)),
        }
    }

    /// The value of `key`, if any layer sets it; a `secret` one is never shown in a message.
    pub(crate) fn get(&self, key: &str, secret: bool) -> Result<Option<Field>, ConfigError> {
        let value = match self.figment.find_value(key) {
            Ok(value) => value,
            Err(error) if error.missing() => return Ok(None),
            // The file parsed before it was layered, with the parser figment uses: this is not
            // expected, and figment's message could quote a line of the file.
            Err(_) => {
                return Err(ConfigError(format!(
                    "{key}: the settings could not be layered; check the config file's syntax"
                )));
            }
        };
        let origin = self.origin(&value, key);
        let text = match &value {
            Value::String(_, text) => text.clone(),
            Value::Char(_, c) => c.to_string(),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(_, n) => match (n.to_i128(), n.to_u128()) {
                (Some(i), _) => i.to_string(),
                (_, Some(u)) => u.to_string(),
                (None, None) => return Err(wrong_type(key, &origin, "a float")),
            },
            Value::Dict(..) => return Err(wrong_type(key, &origin, "a table")),
            Value::Array(..) => return Err(wrong_type(key, &origin, "an array")),
            Value::Empty(..) => return Ok(None),
        };
        Ok(Some(Field::new(key.to_owned(), text, origin, secret)))
    }

    /// The value of a declared setting, else its default; a setting without one is required.
    pub(crate) fn setting(&self, setting: &Setting) -> Result<Field, ConfigError> {
        if let Some(field) = self.get(setting.key, setting.secret)? {
            return Ok(field);
        }
        match setting.default {
            Some(default) => Ok(Field::new(
                setting.key.to_owned(),
                default.to_owned(),
                Origin::Default,
                setting.secret,
            )),
            None => Err(ConfigError(format!(
                "{} is required: set it in the config file or in {} ({})",
                setting.key, setting.env, setting.help
            ))),
        }
    }

    /// The value of a declared setting, `None` if unset or empty.
    pub(crate) fn optional(&self, setting: &Setting) -> Result<Option<Field>, ConfigError> {
        Ok(Some(self.setting(setting)?).filter(|field| !field.text().is_empty()))
    }

    /// The names of the tables inside `section` (`[wechat.<name>]`) in the layers so far.
    pub(crate) fn table_names(&self, section: &str) -> Vec<String> {
        match self.figment.find_value(section) {
            Ok(Value::Dict(_, dict)) => dict.into_keys().collect(),
            _ => Vec::new(),
        }
    }

    fn origin(&self, value: &Value, key: &str) -> Origin {
        match self.figment.get_metadata(value.tag()) {
            Some(metadata) if metadata.name == ENVIRONMENT => {
                let path: Vec<&str> = key.split('.').collect();
                Origin::Env(metadata.interpolate(&Profile::Default, &path))
            }
            _ => Origin::File,
        }
    }
}

fn wrong_type(key: &str, origin: &Origin, found: &str) -> ConfigError {
    ConfigError(format!(
        "{key} ({origin}): expected a string or a number, got {found}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, Result<ConfigFile, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kefu.toml");
        std::fs::write(&path, text).unwrap();
        let file = ConfigFile::read(&path);
        (dir, file)
    }

    #[test]
    fn the_environment_wins_and_names_its_variable() {
        let (_dir, file) = file("[server]\nlisten = \"file\"\nmax = 5\n");
        let file = file.unwrap();
        let env = |name: &str| (name == "KEFU_SERVER_LISTEN").then(|| "0123".to_owned());
        let layers = Layers::new(Some(&file)).with_env(["server.listen", "server.max"], &env);
        let listen = layers.get("server.listen", false).unwrap().unwrap();
        assert_eq!(
            listen.text(),
            "0123",
            "kept verbatim, not parsed as a number"
        );
        assert_eq!(listen.place(), "server.listen (from KEFU_SERVER_LISTEN)");
        let max = layers.get("server.max", false).unwrap().unwrap();
        assert_eq!(
            (max.text(), max.place().as_str()),
            ("5", "server.max (from the config file)")
        );
        assert!(layers.get("server.other", false).unwrap().is_none());
    }

    #[test]
    fn values_of_the_wrong_shape_are_named() {
        let (_dir, file) = file("[server]\nlisten = 1.5\nlist = [1]\n");
        let layers = Layers::new(Some(&file.unwrap()));
        assert_eq!(
            layers.get("server.listen", false).unwrap_err().to_string(),
            "server.listen (from the config file): expected a string or a number, got a float"
        );
        assert!(
            layers
                .get("server.list", false)
                .unwrap_err()
                .to_string()
                .ends_with("got an array")
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let (_dir, file) = file("[a]\nkey = \"SECRET\n");
        let err = file.unwrap_err().to_string();
        assert!(err.contains("kefu.toml, line 2, column "), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn variables_follow_the_keys() {
        assert_eq!(
            variable_of("wechat.main.aes_key"),
            "KEFU_WECHAT_MAIN_AES_KEY"
        );
        assert_eq!(variable_of("server.api_key"), "KEFU_SERVER_API_KEY");
    }
}
