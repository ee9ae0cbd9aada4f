//! `kiln-coordinator token create|revoke|list`.

use crate::auth::tokens;
use crate::cli::{RoleArg, TokenCommand};
use crate::store::{SqliteStore, TokenRole, TokenStore};

pub fn run(store: &SqliteStore, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { role, name } => {
            let role = match role {
                RoleArg::Admin => TokenRole::Admin,
                RoleArg::User => TokenRole::User,
                RoleArg::Enrollment => TokenRole::Enrollment,
            };
            let name = name.unwrap_or_else(|| format!("{}-{}", role.as_str(), &tokens::generate()[..8]));
            crate::api::validate_token_name(&name)?;
            let token = tokens::generate();
            store.create_token(&name, role, &tokens::hash(&token))?;
            eprintln!("created {} token {name:?}; it is shown only this once:", role.as_str());
            println!("{token}");
        }
        TokenCommand::Revoke { name } => {
            store.revoke_token(&name)?;
            eprintln!("revoked token {name:?}");
        }
        TokenCommand::List => {
            println!("{:<32} {:<11} {:<8} CREATED", "NAME", "ROLE", "STATE");
            for t in store.list_tokens()? {
                let state = if t.revoked { "revoked" } else { "live" };
                println!("{:<32} {:<11} {:<8} {}", t.name, t.role.as_str(), state, t.created_at.to_rfc3339());
            }
        }
    }
    Ok(())
}
