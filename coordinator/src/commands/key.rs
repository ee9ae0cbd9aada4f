//! `kiln-coordinator key list|allow|revoke`: signing keys' access lists.

use crate::cli::KeyCommand;
use crate::store::signing::{KeyAccess, SigningKeyStore};
use crate::store::SqliteStore;
use anyhow::{bail, Context};

fn access_of(store: &SqliteStore, fingerprint: &str) -> anyhow::Result<KeyAccess> {
    let key = store.signing_key(fingerprint)?.with_context(|| format!("there is no signing key {fingerprint}"))?;
    Ok(KeyAccess { users: key.users, workflow_templates: key.workflow_templates, revoked: key.revoked })
}

pub fn run(store: &SqliteStore, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::List => {
            println!("{:<40} {:<8} {:<8} USERS / TEMPLATES", "FINGERPRINT", "PURPOSE", "REVOKED");
            for k in store.signing_keys()? {
                let who = format!("{} / {}", k.users.join(","), k.workflow_templates.join(","));
                println!("{:<40} {:<8} {:<8} {who}", k.fingerprint, k.purpose, k.revoked);
            }
        }
        KeyCommand::Allow { fingerprint, users, templates } => {
            if users.is_empty() && templates.is_empty() {
                bail!("nothing to do: give --user NAME and/or --template NAME");
            }
            let fingerprint = fingerprint.to_ascii_uppercase();
            let mut access = access_of(store, &fingerprint)?;
            for u in users {
                if !access.users.contains(&u) {
                    access.users.push(u);
                }
            }
            for t in templates {
                if !access.workflow_templates.contains(&t) {
                    access.workflow_templates.push(t);
                }
            }
            store.set_key_access(&fingerprint, &access)?;
            eprintln!("signing key {fingerprint}: users {:?}, templates {:?}", access.users, access.workflow_templates);
        }
        KeyCommand::Revoke { fingerprint } => {
            let fingerprint = fingerprint.to_ascii_uppercase();
            let access = KeyAccess { revoked: true, ..access_of(store, &fingerprint)? };
            store.set_key_access(&fingerprint, &access)?;
            eprintln!("signing key {fingerprint} revoked: it signs nothing more");
        }
    }
    Ok(())
}
