//! `[gateway.<name>]`: the company gateway's accounts, through which the desk sends text to an
//! OpenID with `sendCustomerMessage` (protocols.md §8).

use std::collections::BTreeSet;

use kefu_client::gateway::{DEFAULT_SYSTEM, GatewayEnvironment};

use super::ConfigError;
use super::layers::Layers;
use super::setting::Setting;
use super::tables::{AccountKey, Table, Tables, key};

/// The section whose tables are the accounts.
pub(crate) const SECTION: &str = "gateway";

const ACCOUNTS: Setting = Setting::optional(
    "delivery.gateway_accounts",
    "KEFU_DELIVERY_GATEWAY_ACCOUNTS",
    "",
    "comma-separated names of gateway accounts configured only through KEFU_GATEWAY_<NAME>_<KEY> (accounts with a [gateway.<name>] table need not be listed)",
);

/// The settings of this module outside the account tables.
pub(crate) const SETTINGS: &[Setting] = &[ACCOUNTS];

/// The keys of a `[gateway.<name>]` table, in the order `--help` lists them.
pub const GATEWAY_KEYS: &[AccountKey] = &[
    key(
        "environment",
        None,
        false,
        "`test`, `uat` or `prod`: the gateway's documented host (https://guide-api-test.feihe.com, https://guide-api-uat.feihe.com, https://guide-api.feihe.com); set this or base_url",
    ),
    key(
        "base_url",
        None,
        false,
        "base URL of the gateway, for another host or a stand-in such as the sandbox; set this or environment",
    ),
    key(
        "system",
        Some(DEFAULT_SYSTEM),
        false,
        "the `system:` header that identifies the calling system",
    ),
];

/// The `[gateway.<name>]` tables.
pub(crate) const TABLES: Tables = Tables {
    section: SECTION,
    label: "gateway account",
    purpose: "the desk sends text through them with \"openid\"",
    keys: GATEWAY_KEYS,
    listed: &ACCOUNTS,
};

/// One company-gateway account, `[gateway.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAccount {
    /// The name, the `account` of the desk's messages and of stored jobs.
    pub name: String,
    /// Base URL of the gateway, without a trailing slash: `base_url`, or the host of
    /// `environment`.
    pub base_url: String,
    /// The `system:` header.
    pub system: String,
}

/// Reads and checks the accounts.
pub(crate) fn load(
    layers: &Layers,
    names: &BTreeSet<String>,
) -> Result<Vec<GatewayAccount>, ConfigError> {
    TABLES.load(layers, names, account)
}

fn account(table: &Table) -> Result<GatewayAccount, ConfigError> {
    let base_url = match (
        table.non_empty("environment")?,
        table.non_empty("base_url")?,
    ) {
        (Some(environment), None) => GatewayEnvironment::parse(environment.text())
            .ok_or_else(|| environment.rejected("`test`, `uat` or `prod`"))?
            .base_url()
            .to_owned(),
        (None, Some(base_url)) => base_url.base_url()?,
        (Some(environment), Some(base_url)) => {
            return Err(ConfigError(format!(
                "{} and {} are both set: set only one, environment for a documented host or base_url for another",
                environment.place(),
                base_url.place()
            )));
        }
        (None, None) => {
            return Err(ConfigError(format!(
                "{} or {} is required: {}, or base_url to a gateway's URL",
                table.key("environment"),
                table.key("base_url"),
                table.where_to_set("environment").replacen(
                    "set it",
                    "set environment to `test`, `uat` or `prod`",
                    1
                )
            )));
        }
    };
    let system = table.or_default("system", DEFAULT_SYSTEM)?;
    // It is sent as an HTTP header value as it is.
    if !system.text().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(system.rejected("printable ASCII without spaces (it is an HTTP header value)"));
    }
    Ok(GatewayAccount {
        name: table.name.to_owned(),
        base_url,
        system: system.text().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::testing::*;

    #[test]
    fn an_environment_resolves_to_its_host() {
        let mut env = minimal();
        env.extend([
            ("KEFU_DELIVERY_GATEWAY_ACCOUNTS", "feihe"),
            ("KEFU_GATEWAY_FEIHE_ENVIRONMENT", "uat"),
        ]);
        let config = Config::load(None, env_of(&env)).unwrap();
        assert_eq!(
            config.gateway,
            [GatewayAccount {
                name: "feihe".into(),
                base_url: "https://guide-api-uat.feihe.com".into(),
                system: "NEW_MEMBER".into(),
            }]
        );
        let config = load_with(
            "[gateway.local]\nbase_url = \"http://127.0.0.1:9000/\"\nsystem = \"OTHER\"\n",
            &minimal(),
        )
        .unwrap();
        assert_eq!(config.gateway[0].base_url, "http://127.0.0.1:9000");
        assert_eq!(config.gateway[0].system, "OTHER");
    }

    #[test]
    fn exactly_one_of_environment_and_base_url() {
        let cases = [
            (
                "[gateway.g]\nsystem = \"X\"\n",
                "gateway.g.environment or gateway.g.base_url is required: set environment to `test`, `uat` or `prod` in the [gateway.g] table or in KEFU_GATEWAY_G_ENVIRONMENT, or base_url to a gateway's URL",
            ),
            (
                "[gateway.g]\nenvironment = \"prod\"\nbase_url = \"http://x\"\n",
                "gateway.g.environment (from the config file) and gateway.g.base_url (from the config file) are both set: set only one",
            ),
            (
                "[gateway.g]\nenvironment = \"staging\"\n",
                "gateway.g.environment (from the config file): expected `test`, `uat` or `prod`, got \"staging\"",
            ),
            (
                "[gateway.g]\nenvironment = \"prod\"\nsystem = \"NEW MEMBER\"\n",
                "gateway.g.system (from the config file): expected printable ASCII without spaces",
            ),
        ];
        for (file, expected) in cases {
            let err = load_with(file, &minimal()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{file}: {err}");
        }
    }
}
