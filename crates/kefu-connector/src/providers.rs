//! The accounts the relay sends through: each configured account name with its provider.
//!
//! The relay knows providers only as [`kefu_core::Provider`]: adding one is a module that
//! implements the trait and one [`Providers::register`] in `serve`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kefu_core::Provider;

/// Account name → provider.
#[derive(Clone, Default)]
pub struct Providers {
    accounts: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// No account yet.
    pub fn new() -> Providers {
        Providers::default()
    }

    /// Sends `account`'s jobs through `provider`, in place of any provider registered for it
    /// before.
    pub fn register(&mut self, account: impl Into<String>, provider: Arc<dyn Provider>) {
        self.accounts.insert(account.into(), provider);
    }

    /// The provider of `account`, if it is configured.
    pub fn get(&self, account: &str) -> Option<&Arc<dyn Provider>> {
        self.accounts.get(account)
    }

    /// The configured account names, in order, for messages that name an unknown one.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.accounts
                    .iter()
                    .map(|(name, provider)| (name, provider.kind())),
            )
            .finish()
    }
}
