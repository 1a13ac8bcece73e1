//! `tender api-key …`

use clap::Subcommand;
use serde::Serialize;

use super::output::{print_table, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::PageRows;
use crate::keys::KeyNeeds;
use crate::service::api_keys::{ApiClient, ApiKeyForm};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum ApiKeyCommand {
    /// Create an API key and print it once; tender keeps only a keyed hash of it.
    Create {
        /// What the key may do: pos, redeem, support, warehouse, finance or admin.
        #[arg(long)]
        role: String,
        /// A unique name: 1 to 32 of a-z 0-9 . _ - (the audit trail records its calls as
        /// api:NAME).
        #[arg(long)]
        name: String,
        /// The retailer a pos key acts for (required for pos, refused for other roles).
        #[arg(long)]
        retailer: Option<String>,
        /// The one store of that retailer a pos key is bound to.
        #[arg(long)]
        store: Option<String>,
    },
    /// List API keys, revoked ones included; never a key or its hash.
    List {
        /// Most keys to show.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Revoke an API key by name: it authenticates nothing from then on.
    Revoke {
        /// The key's name.
        name: String,
    },
}

impl ApiKeyCommand {
    /// Creating derives the key's hash from the lookup key and records an audit event;
    /// revoking records one; listing loads no key.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            ApiKeyCommand::Create { .. } => KeyNeeds::ALL,
            ApiKeyCommand::Revoke { .. } => KeyNeeds::AUDIT,
            ApiKeyCommand::List { .. } => KeyNeeds::NONE,
        }
    }
}

/// A created key as JSON shows it.
#[derive(Serialize)]
struct Created<'a> {
    client: &'a ApiClient,
    key: &'a str,
}

fn bindings(client: &ApiClient) -> String {
    match (&client.retailer_id, &client.store) {
        (Some(retailer), Some(store)) => format!("retailer {retailer}, store {store}"),
        (Some(retailer), None) => format!("retailer {retailer}"),
        _ => "-".to_string(),
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: ApiKeyCommand,
) -> Result<(), CliError> {
    let keys = app.services().api_keys();
    match command {
        ApiKeyCommand::Create {
            role,
            name,
            retailer,
            store,
        } => {
            let form = ApiKeyForm {
                name,
                role,
                retailer,
                store,
            };
            let created = keys.create(&form, &ctx.actor).await?;
            let shown = Created {
                client: &created.client,
                key: created.key.expose(),
            };
            show(ctx.format, &shown, |c| {
                println!(
                    "api key {} created: role {}, bound to {}",
                    c.client.name,
                    c.client.role,
                    bindings(c.client)
                );
                println!("{}", c.key);
                println!("this is the only time the key is shown; tender keeps only its hash");
            })
        }
        ApiKeyCommand::List { limit } => {
            let list = keys.list(PageRows::new(limit)?).await?;
            show(ctx.format, &list, |clients| {
                print_table(
                    &["name", "role", "bound to", "key id", "created", "revoked"],
                    clients.iter().map(|c| {
                        vec![
                            c.name.to_string(),
                            c.role.to_string(),
                            bindings(c),
                            c.key_id.clone(),
                            c.created_at.to_rfc3339(),
                            c.revoked_at.map_or("-".to_string(), |at| at.to_rfc3339()),
                        ]
                    }),
                )
            })
        }
        ApiKeyCommand::Revoke { name } => {
            let client = keys.revoke(&name, &ctx.actor).await?;
            show(ctx.format, &client, |c| {
                println!("api key {} revoked", c.name)
            })
        }
    }
}
