//! Instances: create a task's ephemeral container from its image, start
//! it, stop and delete it, and find the ones a crashed shim left behind.

use super::client::{Client, IncusError};
use super::{IncusTask, KEEPALIVE_INIT};
use crate::backends::spec::TaskSpec;
use hyper::Method;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Instance config key naming the task directory an instance belongs to.
pub const TASK_DIR_KEY: &str = "user.kiln.task_dir";

/// A valid instance name, unique on this host, stable for one task dir.
pub fn name_for(task_dir: &Path) -> String {
    format!("kiln-{}", crate::supervisor::shim::cgroup_name(task_dir)).replace(['_', '.'], "-")
}

/// The storage pool instances go to: the default profile's root disk's,
/// else the only or first pool.
pub async fn root_pool(client: &Client) -> Result<String, IncusError> {
    let default = client.in_project(None);
    let profile = default.get("/1.0/profiles/default").await?;
    if let Some(pool) = profile.pointer("/devices/root/pool").and_then(Value::as_str) {
        return Ok(pool.to_owned());
    }
    let pools = default.get("/1.0/storage-pools").await?;
    pools
        .as_array()
        .and_then(|p| p.first())
        .and_then(Value::as_str)
        .and_then(|url| url.rsplit('/').next())
        .map(str::to_owned)
        .ok_or_else(|| IncusError::Api {
            what: "find a storage pool".into(),
            status: 404,
            message: "Incus has no storage pool: create one (scripts/setup does)".into(),
        })
}

/// The NIC devices of the default profile (what "a network is configured"
/// means for Incus here).
pub async fn default_nics(client: &Client) -> Result<Map<String, Value>, IncusError> {
    let profile = client.in_project(None).get("/1.0/profiles/default").await?;
    let devices = profile.get("devices").and_then(Value::as_object).cloned().unwrap_or_default();
    Ok(devices.into_iter().filter(|(_, d)| d.get("type").and_then(Value::as_str) == Some("nic")).collect())
}

/// The instance description for a task.
pub fn config(spec: &TaskSpec, t: &IncusTask, task_dir: &Path, pool: &str, nics: Map<String, Value>) -> Value {
    let mut config = Map::new();
    config.insert("limits.memory".into(), json!(format!("{}MiB", (spec.memory >> 20).max(16))));
    config.insert("limits.processes".into(), json!(spec.pids.to_string()));
    if spec.cpus > 0.0 {
        let ms = (spec.cpus * 100.0).round().max(1.0) as u64;
        config.insert("limits.cpu.allowance".into(), json!(format!("{ms}ms/100ms")));
    }
    config.insert("security.nesting".into(), json!("false"));
    config.insert("security.privileged".into(), json!("false"));
    config.insert(TASK_DIR_KEY.into(), json!(task_dir.to_string_lossy()));
    if t.keepalive_init {
        config.insert("raw.lxc".into(), json!(format!("lxc.init.cmd = {KEEPALIVE_INIT}")));
    }
    let mut devices = Map::new();
    devices.insert("root".into(), json!({"type": "disk", "path": "/", "pool": pool}));
    if spec.network {
        devices.extend(nics);
    }
    json!({
        "name": t.instance,
        "type": "container",
        "ephemeral": true,
        "profiles": [],
        "source": {"type": "image", "alias": t.image_alias},
        "config": config,
        "devices": devices,
    })
}

pub async fn create(client: &Client, description: &Value) -> Result<(), IncusError> {
    client.run(Method::POST, "/1.0/instances", Some(description)).await.map(|_| ())
}

pub async fn start(client: &Client, name: &str) -> Result<(), IncusError> {
    let body = json!({"action": "start", "timeout": 30});
    client.run(Method::PUT, &format!("/1.0/instances/{name}/state"), Some(&body)).await.map(|_| ())
}

/// Force-stop (an ephemeral instance then deletes itself) and delete,
/// whatever state it is in; gone already is fine.
pub async fn destroy(client: &Client, name: &str) -> Result<(), IncusError> {
    let path = format!("/1.0/instances/{name}");
    let stop = json!({"action": "stop", "force": true, "timeout": -1});
    match client.run(Method::PUT, &format!("{path}/state"), Some(&stop)).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        // Already stopped: go on and delete.
        Err(IncusError::Api { .. } | IncusError::Operation { .. }) => {}
        Err(e) => return Err(e),
    }
    for _ in 0..50 {
        match client.run(Method::DELETE, &path, None).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            // An ephemeral instance may still be deleting itself.
            Err(IncusError::Api { .. } | IncusError::Operation { .. }) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e),
        }
    }
    match client.get(&path).await {
        Err(e) if e.is_not_found() => Ok(()),
        Ok(_) => client.run(Method::DELETE, &path, None).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Instances of this project with the task directory each belongs to.
pub async fn list(client: &Client) -> Result<Vec<(String, Option<PathBuf>)>, IncusError> {
    let all = client.get("/1.0/instances?recursion=1").await?;
    Ok(all
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    let name = i.get("name")?.as_str()?.to_owned();
                    let dir = i.pointer("/config/user.kiln.task_dir").and_then(Value::as_str).map(PathBuf::from);
                    Some((name, dir))
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::TaskParams;

    #[test]
    fn a_task_gets_an_ephemeral_unprivileged_container_without_nic_unless_allowed() {
        let name = name_for(Path::new("/var/lib/kiln-agent/tasks/12-1"));
        assert!(name.starts_with("kiln-12-1-") && name.len() <= 63, "{name}");
        let task = TaskParams {
            args: vec!["true".into()],
            env: vec![],
            network: false,
            memory: 1 << 30,
            pids: 100,
            cpus: 1.5,
            disk_quota: None,
            tmp_size: 0,
            timeout_secs: 9,
            notice: None,
            controllers: None,
            artifact_id: 4,
            image: "/x".into(),
        };
        let t = IncusTask {
            socket: "/s".into(),
            project: "kiln-x".into(),
            instance: name.clone(),
            image_alias: "kiln/4".into(),
            keepalive_init: true,
        };
        let nics = json!({"eth0": {"type": "nic", "network": "incusbr0"}}).as_object().cloned().unwrap_or_default();
        let c = config(&TaskSpec::common("incus-lxc", &task), &t, Path::new("/t"), "default", nics.clone());
        assert_eq!(c["ephemeral"], json!(true));
        assert_eq!(c["config"]["limits.memory"], json!("1024MiB"));
        assert_eq!(c["config"]["limits.cpu.allowance"], json!("150ms/100ms"));
        assert_eq!(c["config"]["security.privileged"], json!("false"));
        assert_eq!(c["config"]["raw.lxc"], json!("lxc.init.cmd = /bin/sleep 2147483647"));
        assert_eq!(c["devices"].as_object().map(|d| d.len()), Some(1), "root disk only: {c}");
        let task = TaskParams { network: true, ..task };
        let c = config(&TaskSpec::common("incus-lxc", &task), &t, Path::new("/t"), "default", nics);
        assert_eq!(c["devices"]["eth0"]["type"], json!("nic"));
    }
}
