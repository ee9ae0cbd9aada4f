//! Incus's image store as one of the cache's stores: the agent's project
//! holds one image per cached environment used with incus-lxc, aliased
//! `kiln/<artifact id>`. Reconciling removes images of environments the
//! index does not list (and instances that no running task owns).

use super::client::{Client, IncusError};
use super::{images, incus_architecture, instance};
use crate::image_cache::stores::{ImageStore, StoreError, StoreFuture, StoreImage};
use crate::supervisor::task_dir::TaskDir;
use hyper::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub const STORE_NAME: &str = "incus";

/// Create the client's project if it does not exist: its own images, the
/// default project's profiles, storage and networks.
pub async fn ensure_project(client: &Client) -> Result<(), IncusError> {
    let Some(name) = client.project() else { return Ok(()) };
    let default = client.in_project(None);
    match default.get(&format!("/1.0/projects/{name}")).await {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let body = json!({
        "name": name,
        "description": "Kiln agent images and task instances",
        "config": {
            "features.images": "true",
            "features.profiles": "false",
            "features.storage.volumes": "false",
            "features.storage.buckets": "false",
            "features.networks": "false",
        },
    });
    match default.call(Method::POST, "/1.0/projects", Some(&body)).await {
        Ok(_) => Ok(()),
        // Another agent (or a concurrent probe) made it meanwhile: Incus
        // says so with a 500 "UNIQUE constraint failed", not a 409.
        Err(e) => match default.get(&format!("/1.0/projects/{name}")).await {
            Ok(_) => Ok(()),
            Err(_) => Err(e),
        },
    }
}

pub struct IncusStore {
    client: Client,
}

impl IncusStore {
    pub fn new(project: &str) -> Self {
        IncusStore { client: Client::new(super::default_socket(), Some(project.to_owned())) }
    }

    fn error(what: impl Into<String>) -> impl FnOnce(IncusError) -> StoreError {
        let what = what.into();
        move |e| StoreError::new(STORE_NAME, what, e)
    }

    async fn import_tarball(&self, image: &StoreImage) -> Result<(), StoreError> {
        let id = image.artifact_id;
        let tarball = image
            .file("")
            .or_else(|| image.files.iter().map(|(_, p)| p).find(|p| p.to_string_lossy().contains(".tar")))
            .ok_or_else(|| StoreError::new(STORE_NAME, format!("import image {id}"), "no tarball"))?;
        let debian = image.data.get("architecture").and_then(Value::as_str).unwrap_or("amd64");
        let arch = incus_architecture(debian).ok_or_else(|| {
            StoreError::new(STORE_NAME, format!("import image {id}"), format!("Incus has no name for {debian}"))
        })?;
        ensure_project(&self.client).await.map_err(Self::error("create the agent's Incus project"))?;
        let started = std::time::Instant::now();
        let fingerprint = images::import(&self.client, id, tarball, arch, &image.description())
            .await
            .map_err(Self::error(format!("import image {id}")))?;
        tracing::info!(artifact_id = id, %fingerprint, seconds = started.elapsed().as_secs_f64(), "imported into Incus");
        Ok(())
    }

    /// Delete instances whose task is over or unknown (a shim that died).
    async fn sweep_instances(&self) -> Result<(), StoreError> {
        let instances = instance::list(&self.client).await.map_err(Self::error("list instances"))?;
        for (name, task_dir) in instances {
            let live = task_dir.as_ref().is_some_and(|d| {
                d.is_dir() && TaskDir::new(d).read_status().ok().flatten().is_none() && d.join("task.json").exists()
            });
            if !live {
                tracing::warn!(instance = %name, task_dir = ?task_dir, "deleting a container no running task owns");
                instance::destroy(&self.client, &name).await.map_err(Self::error(format!("delete {name}")))?;
            }
        }
        Ok(())
    }
}

impl ImageStore for IncusStore {
    fn name(&self) -> &'static str {
        STORE_NAME
    }
    fn category(&self) -> &'static str {
        crate::backends::SYSTEM_TARBALL
    }
    fn import<'a>(&'a self, image: &'a StoreImage) -> StoreFuture<'a, ()> {
        Box::pin(self.import_tarball(image))
    }
    fn remove(&self, artifact_id: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            images::remove(&self.client, artifact_id)
                .await
                .map_err(Self::error(format!("remove image {artifact_id}")))?;
            tracing::info!(artifact_id, "removed from Incus");
            Ok(())
        })
    }
    fn reconcile<'a>(&'a self, keep: &'a BTreeSet<i64>) -> StoreFuture<'a, BTreeSet<i64>> {
        Box::pin(async move {
            let project = self.client.project().unwrap_or("default");
            match self.client.in_project(None).get(&format!("/1.0/projects/{project}")).await {
                Err(e) if e.is_not_found() => return Ok(BTreeSet::new()),
                other => other.map_err(Self::error("look up the agent's project"))?,
            };
            self.sweep_instances().await?;
            let mut held = BTreeSet::new();
            for (id, fingerprint) in images::list(&self.client).await.map_err(Self::error("list images"))? {
                if keep.contains(&id) && !held.contains(&id) {
                    held.insert(id);
                    continue;
                }
                tracing::warn!(artifact_id = id, %fingerprint, "removing an Incus image the cache index does not list");
                images::delete(&self.client, &fingerprint)
                    .await
                    .map_err(Self::error(format!("delete {fingerprint}")))?;
            }
            Ok(held)
        })
    }
}
