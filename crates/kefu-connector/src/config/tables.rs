//! Named account tables, `[<section>.<name>]`: the WeChat, yunzhenji and gateway accounts share
//! their naming rules, their environment variables (`KEFU_<SECTION>_<NAME>_<KEY>`), the check
//! of a file's tables and keys, and the reading of one table's keys through the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::ConfigError;
use super::field::Field;
use super::layers::{Layers, variable_of};
use super::schema::did_you_mean;
use super::setting::Setting;

/// The account name of the Dialogue platform in stored jobs, which no named account may take.
pub const RESERVED_NAME: &str = "dialogue";

/// One key of an account table.
#[derive(Debug)]
pub struct AccountKey {
    /// The key in the table; its environment variable is `KEFU_<SECTION>_<NAME>_<KEY>`.
    pub key: &'static str,
    /// The default, if it is a fixed value.
    pub default: Option<&'static str>,
    /// Whether the value must never be shown.
    pub secret: bool,
    /// What it is.
    pub help: &'static str,
}

/// An [`AccountKey`], for the modules' key lists.
pub(crate) const fn key(
    key: &'static str,
    default: Option<&'static str>,
    secret: bool,
    help: &'static str,
) -> AccountKey {
    AccountKey {
        key,
        default,
        secret,
        help,
    }
}

/// One kind of account table.
#[derive(Debug)]
pub(crate) struct Tables {
    /// The section whose tables are the accounts (`wechat`).
    pub(crate) section: &'static str,
    /// What an account is called in messages (`WeChat account`).
    pub(crate) label: &'static str,
    /// Where its accounts are used, for `--help`.
    pub(crate) purpose: &'static str,
    /// The keys of a table, in the order `--help` lists them.
    pub(crate) keys: &'static [AccountKey],
    /// The flat setting that names accounts configured only through the environment.
    pub(crate) listed: &'static Setting,
}

impl Tables {
    /// The environment variable of an account's key.
    pub(crate) fn variable(&self, name: &str, key: &str) -> String {
        variable_of(&format!("{}.{name}.{key}", self.section))
    }

    fn known(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.key)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks the file's section: every entry an account table with known keys.
    pub(crate) fn check_tables(
        &self,
        entries: &toml::Table,
        path: &Path,
    ) -> Result<(), ConfigError> {
        let section = self.section;
        for (name, table) in entries {
            self.check_name(name, &path.display().to_string())?;
            let toml::Value::Table(table) = table else {
                return Err(ConfigError(format!(
                    "{}: `{section}.{name}` must be a [{section}.{name}] table with {}",
                    path.display(),
                    self.known()
                )));
            };
            if let Some(unknown) = table
                .keys()
                .find(|key| !self.keys.iter().any(|k| k.key == key.as_str()))
            {
                return Err(ConfigError(format!(
                    "{}: unknown setting `{section}.{name}.{unknown}`{}; a [{section}.<name>] table takes {}",
                    path.display(),
                    did_you_mean(unknown, self.keys.iter().map(|k| k.key), ""),
                    self.known()
                )));
            }
        }
        Ok(())
    }

    fn check_name(&self, name: &str, place: &str) -> Result<(), ConfigError> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(ConfigError(format!(
                "{place}: {} name {name:?} must be 1 to 32 of a-z, 0-9 and _ (it is a URL path segment and part of KEFU_{}_<NAME>_<KEY>)",
                self.label,
                self.section.to_ascii_uppercase()
            )));
        }
        if name == RESERVED_NAME {
            return Err(ConfigError(format!(
                "{place}: {} name {name:?} is reserved (it names the Dialogue platform's account in stored jobs and in the desk's messages); choose another name",
                self.label
            )));
        }
        Ok(())
    }

    /// The names of the accounts: the file's tables and the names the `listed` setting gives,
    /// sorted.
    pub(crate) fn names(&self, layers: &Layers) -> Result<BTreeSet<String>, ConfigError> {
        let mut names: BTreeSet<String> = layers.table_names(self.section).into_iter().collect();
        let listed = layers.setting(self.listed)?;
        for name in listed.text().split(',').map(str::trim) {
            if !name.is_empty() {
                self.check_name(name, &listed.place())?;
                names.insert(name.to_owned());
            }
        }
        Ok(names)
    }

    /// The keys of every account, whose environment variables are layered over the file. A set
    /// variable that two keys share (`KEFU_WECHAT_A_PREVIOUS_AES_KEY` for accounts `a` and
    /// `a_previous`) is refused rather than given to both.
    pub(crate) fn env_keys(
        &self,
        names: &BTreeSet<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ConfigError> {
        let section = self.section;
        let keys: Vec<String> = names
            .iter()
            .flat_map(|name| {
                self.keys
                    .iter()
                    .map(move |k| format!("{section}.{name}.{}", k.key))
            })
            .collect();
        let mut by_variable: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for key in &keys {
            by_variable.entry(variable_of(key)).or_default().push(key);
        }
        if let Some((variable, shared)) = by_variable
            .iter()
            .find(|(variable, shared)| shared.len() > 1 && env(variable).is_some())
        {
            return Err(ConfigError(format!(
                "{variable} is ambiguous: it would set each of {}; set them in the accounts' [{section}.<name>] tables instead, or rename one of the accounts",
                shared.join(" and ")
            )));
        }
        Ok(keys)
    }
}

impl Tables {
    /// Reads every account of `names` with `read`, in order.
    pub(crate) fn load<T>(
        &'static self,
        layers: &Layers,
        names: &BTreeSet<String>,
        read: impl Fn(&Table) -> Result<T, ConfigError>,
    ) -> Result<Vec<T>, ConfigError> {
        names
            .iter()
            .map(|name| {
                read(&Table {
                    layers,
                    tables: self,
                    name,
                })
            })
            .collect()
    }
}

/// Refuses a name that two kinds of account share: the name alone says, in a desk's message and
/// in a stored job, which account sends.
pub(crate) fn check_unique<'a>(
    names: impl IntoIterator<Item = (&'a Tables, &'a BTreeSet<String>)>,
) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (tables, set) in names {
        for name in set {
            if let Some(first) = seen.insert(name, tables.section) {
                return Err(ConfigError(format!(
                    "account name {name:?} is used by both [{first}.{name}] and [{}.{name}]: an account's name says which account sends a desk's message, so names are unique across wechat, yunzhenji and gateway accounts; rename one of them",
                    tables.section
                )));
            }
        }
    }
    Ok(())
}

/// One account's table, read through the layers.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    /// The layered settings.
    pub(crate) layers: &'a Layers,
    /// The kind of table.
    pub(crate) tables: &'static Tables,
    /// The account's name.
    pub(crate) name: &'a str,
}

impl Table<'_> {
    /// The full key of one of the table's keys.
    pub(crate) fn key(&self, key: &str) -> String {
        format!("{}.{}.{key}", self.tables.section, self.name)
    }

    /// The value of `key`, if set, secret as the table's keys declare it.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Field>, ConfigError> {
        let secret = self.tables.keys.iter().any(|k| k.key == key && k.secret);
        self.layers.get(&self.key(key), secret)
    }

    /// The value of `key`, `None` if unset or empty.
    pub(crate) fn non_empty(&self, key: &str) -> Result<Option<Field>, ConfigError> {
        Ok(self.get(key)?.filter(|field| !field.text().is_empty()))
    }

    /// "set it in the [section.<name>] table or in KEFU_<SECTION>_<NAME>_<KEY>".
    pub(crate) fn where_to_set(&self, key: &str) -> String {
        format!(
            "set it in the [{}.{}] table or in {}",
            self.tables.section,
            self.name,
            self.tables.variable(self.name, key)
        )
    }

    /// The value of `key`, which must be set and not blank; `what` says what it is.
    pub(crate) fn required(&self, key: &str, what: &str) -> Result<Field, ConfigError> {
        match self.non_empty(key)? {
            Some(field) => {
                field.non_empty(what)?;
                Ok(field)
            }
            None => Err(ConfigError(format!(
                "{} is required: {} ({what})",
                self.key(key),
                self.where_to_set(key)
            ))),
        }
    }

    /// The value of `key`, or `default` when unset or empty.
    pub(crate) fn or_default(&self, key: &str, default: &str) -> Result<Field, ConfigError> {
        Ok(self.non_empty(key)?.unwrap_or_else(|| {
            Field::new(
                self.key(key),
                default.to_owned(),
                super::field::Origin::Default,
                false,
            )
        }))
    }
}
