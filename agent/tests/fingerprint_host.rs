//! The fingerprint of the machine the tests run on: sane values, every key
//! of DESIGN §4 there.

use kiln_agent::config::AgentConfig;
use kiln_agent::fingerprint::{self, ProbeInput};
use kiln_shared::worker::keys;
use serde_json::Value;
use std::path::PathBuf;

#[test]
fn the_real_host_has_sane_values() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = AgentConfig {
        data_dir: data.path().to_owned(),
        executables: vec!["sh".into(), "no-such-program-kiln".into()],
        ..AgentConfig::default()
    };
    let agent_exe = PathBuf::from(env!("CARGO_BIN_EXE_kiln-agent"));
    let map = fingerprint::probe(&ProbeInput::for_host(&config, agent_exe));
    println!("{}", serde_json::to_string_pretty(&map).expect("serialise"));

    let number = |key: &str| map.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("{key} is a number"));
    assert!(number(keys::CPU_COUNT) >= 1);
    assert!(number(keys::TOTAL_MEMORY) > 0);
    assert!(number(keys::AVAILABLE_DISK) > 0);
    let host = map.get(keys::HOST_ARCHITECTURE).and_then(Value::as_str).expect("host architecture");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(host, "amd64");
    }
    let arches = map.get(keys::ARCHITECTURES).and_then(Value::as_array).expect("architectures");
    assert_eq!(arches.first().and_then(Value::as_str), Some(host), "the host comes first");
    assert_eq!(map.get(keys::EXECUTABLES), Some(&serde_json::json!(["sh"])));
    assert_eq!(map.get(keys::WORKER_ROLE), Some(&Value::from("worker")));
    assert_eq!(map.get(keys::CONCURRENCY), Some(&Value::from(1)));
    for backend in &config.backends.enabled {
        let available = map.get(&keys::backend_available(backend)).and_then(Value::as_bool);
        let available = available.unwrap_or_else(|| panic!("{backend}: availability is a bool"));
        let reason = map.get(&fingerprint::backend_reason_key(backend)).and_then(Value::as_str);
        assert_eq!(available, reason.is_none(), "{backend}: a reason exactly when unavailable");
    }
    let cgroup = map.get(fingerprint::limits::CGROUP).and_then(Value::as_str).expect("limits:cgroup");
    assert!(["v1", "v2", "hybrid", "none"].contains(&cgroup), "{cgroup}");
    for key in [fingerprint::limits::MEMORY, fingerprint::limits::PIDS, fingerprint::limits::CPU] {
        assert!(map.get(key).is_some_and(Value::is_boolean), "{key}");
    }
    if nix::unistd::Uid::effective().is_root() && cgroup == "none" {
        println!("SKIPPED-BACKEND: running as root but no cgroup controller is enforceable here");
    }
}
