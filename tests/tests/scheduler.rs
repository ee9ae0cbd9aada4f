//! Matching pending work to agents (DESIGN §4) through `next`.

use kiln_shared::artifact::NewArtifact;
use kiln_shared::client::Client;
use kiln_shared::work::NewWorkRequest;
use kiln_shared::worker::Registration;
use kiln_shared::{WorkResult, WorkStatus, WorkerRole};
use kiln_tests::work::{finish, noop, take, with_data};
use kiln_tests::{amd64_metadata, enrolled_worker, obj, Coordinator};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

async fn environment(user: &Client, arch: &str) -> i64 {
    let new = NewArtifact {
        category: "kiln:system-tarball".into(),
        data: obj(json!({"codename": "bookworm", "architecture": arch, "variant": "minbase"})),
        files: vec![],
        work_request: None,
    };
    user.create_artifact(&new).await.expect("environment artifact").id
}

fn command(env: i64, extra: Value) -> NewWorkRequest {
    let mut data = obj(json!({"environment": env, "backend": "unshare", "command": ["true"]}));
    data.extend(obj(extra));
    with_data(noop(&[]), Value::Object(data)).with_name("command")
}

trait WithName {
    fn with_name(self, name: &str) -> Self;
}
impl WithName for NewWorkRequest {
    fn with_name(mut self, name: &str) -> Self {
        self.task_name = name.into();
        self
    }
}

async fn nothing_for(worker: &Client) {
    assert!(worker.next(Duration::from_secs(0)).await.expect("next").is_none(), "expected no assignment");
}

fn md(extra: Value) -> Map<String, Value> {
    let mut m = amd64_metadata();
    m.extend(obj(extra));
    m
}

#[tokio::test]
async fn requirements_route_work_to_the_right_agent() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let amd64 = enrolled_worker(&c, "amd64", amd64_metadata()).await;
    let arm64 = enrolled_worker(
        &c,
        "arm64",
        md(json!({"system:host_architecture": "arm64", "system:architectures": ["arm64", "armhf"],
                  "executor:qemu:available": true, "system:executables": ["sbuild", "autopkgtest"],
                  "system:total_physical_memory": 64u64 << 30, "system:concurrency": 100})),
    )
    .await;
    let env_arm = environment(&user, "arm64").await;
    let env_amd = environment(&user, "amd64").await;

    // The environment's architecture becomes a requirement.
    let by_env = user.create_work_request(&command(env_arm, json!({}))).await.expect("create");
    nothing_for(&amd64).await;
    assert_eq!(take(&arm64).await.id, by_env.id);

    // Backend availability: qemu only on arm64 here; auto+machine likewise.
    let qemu = user
        .create_work_request(&command(env_amd, json!({"backend": "qemu", "host_architecture": "armhf"})))
        .await
        .expect("qemu");
    nothing_for(&amd64).await;
    assert_eq!(take(&arm64).await.id, qemu.id);
    let machine = user
        .create_work_request(&command(env_arm, json!({"backend": "auto", "needs": "machine"})))
        .await
        .expect("machine");
    assert_eq!(take(&arm64).await.id, machine.id);

    // Memory, executables, explicit constraints.
    for extra in [
        json!({"min_memory": 32u64 << 30}),
        json!({"executables": ["autopkgtest"]}),
        json!({"constraints": [{"key": "system:host_architecture", "op": "==", "value": "arm64"}]}),
        json!({"constraints": [{"key": "system:architectures", "op": "contains", "value": "armhf"}]}),
    ] {
        let wr = user.create_work_request(&command(env_arm, extra.clone())).await.expect("create");
        assert_eq!(take(&arm64).await.id, wr.id, "{extra}");
    }
    let too_big = user.create_work_request(&command(env_amd, json!({"min_disk": 1u64 << 50}))).await.expect("create");
    nothing_for(&amd64).await;
    nothing_for(&arm64).await;
    assert_eq!(user.work_request(too_big.id).await.expect("get").status, WorkStatus::Pending);
}

#[tokio::test]
async fn static_metadata_overrides_and_lists_restrict() {
    let c = Coordinator::start();
    let admin = c.admin();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let env = environment(&user, "amd64").await;
    let qemu = user.create_work_request(&command(env, json!({"backend": "qemu"}))).await.expect("create");
    nothing_for(&worker).await;
    // The admin's static key wins over the agent's own probe.
    let out = c.admin_command(&["worker", "edit-metadata", "w1", "--set", "executor:qemu:available=true"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let w = take(&worker).await;
    assert_eq!(w.id, qemu.id);
    finish(&worker, &w, WorkResult::Success).await;

    // Denylist keeps `noop` away; an allowlist wins over it.
    admin.set_static_metadata("w1", &obj(json!({"tasks_denylist": ["noop"]}))).await.expect("static");
    let n = user.create_work_request(&noop(&[])).await.expect("noop");
    nothing_for(&worker).await;
    admin
        .set_static_metadata("w1", &obj(json!({"tasks_denylist": ["noop"], "tasks_allowlist": ["noop"]})))
        .await
        .expect("static");
    assert_eq!(take(&worker).await.id, n.id);
    let listed = admin.workers().await.expect("workers");
    let w1 = listed.items.iter().find(|w| w.name == "w1").expect("w1 listed");
    assert_eq!(w1.metadata.get("tasks_allowlist"), Some(&json!(["noop"])));
    assert_eq!(w1.metadata.get("executor:unshare:available"), Some(&json!(true)), "dynamic keys still there");
    assert_eq!(w1.running, vec![n.id]);
    assert!(w1.connected);
}

#[tokio::test]
async fn task_versions_and_roles_must_match() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let old = enrolled_worker(&c, "old", md(json!({"noop:version": 0}))).await;
    let enrollment = c.token("enrollment", "enroll-signer");
    let token = "s".repeat(64);
    let reg = Registration {
        name: "signer".into(),
        token: token.clone(),
        role: WorkerRole::Signing,
        enrollment_token: Some(enrollment),
    };
    c.anonymous().register(&reg).await.expect("register signer");
    let signer = c.client(&token);
    signer.put_metadata(&amd64_metadata()).await.expect("metadata");
    user.create_work_request(&noop(&[])).await.expect("noop");
    nothing_for(&old).await;
    nothing_for(&signer).await;
}

#[tokio::test]
async fn priority_then_age_and_concurrency_slots() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let worker = enrolled_worker(&c, "w1", md(json!({"system:concurrency": 2}))).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[])).await.expect("b");
    let low = user.create_work_request(&NewWorkRequest { priority: -5, ..noop(&[]) }).await.expect("low");
    let urgent = admin.create_work_request(&NewWorkRequest { priority: 10, ..noop(&[]) }).await.expect("urgent");
    let first = take(&worker).await;
    let second = take(&worker).await;
    assert_eq!((first.id, second.id), (urgent.id, a.id));
    nothing_for(&worker).await; // both slots busy
    finish(&worker, &first, WorkResult::Success).await;
    assert_eq!(take(&worker).await.id, b.id);
    finish(&worker, &second, WorkResult::Success).await;
    assert_eq!(take(&worker).await.id, low.id);
}

#[tokio::test]
async fn long_poll_wakes_on_new_work_despite_an_unmatched_backlog() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = environment(&user, "amd64").await;
    // 10,000 requests nobody can take: they need arm64.
    let backlog = command(env, json!({"host_architecture": "arm64"}));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (user, backlog) = (user.clone(), backlog.clone());
        tasks.spawn(async move {
            for _ in 0..1250 {
                user.create_work_request(&backlog).await.expect("backlog");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("backlog task");
    }
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    for _ in 0..3 {
        let poll = {
            let worker = worker.clone();
            tokio::spawn(async move {
                let got = worker.next(Duration::from_secs(20)).await.expect("next");
                (got, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await; // the poll is waiting
        let created = user.create_work_request(&noop(&[])).await.expect("create");
        let created_at = Instant::now();
        let (got, got_at) = poll.await.expect("poll");
        let got = got.expect("assigned by the long-poll, not after its 20 s timeout");
        assert_eq!(got.id, created.id);
        // A wake-up, not a timeout or a scan: far below the poll's 20 s.
        // The 50 ms figure is measured by the pickup-latency benchmark.
        assert!(got_at.duration_since(created_at) < Duration::from_secs(2), "{:?}", got_at - created_at);
        finish(&worker, &got, WorkResult::Success).await;
    }
}

#[tokio::test]
async fn a_disabled_worker_drains() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let admin = c.admin();
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[])).await.expect("b");
    let running = take(&worker).await;
    admin.worker_action("w1", "disable").await.expect("disable");
    let err = worker.next(Duration::from_secs(0)).await.expect_err("disabled");
    assert_eq!((err.status().map(|s| s.as_u16()), err.code()), (Some(403), Some("worker-disabled")));
    // Its running work still heartbeats and completes.
    let hb = kiln_shared::worker::Heartbeat {
        running: vec![kiln_shared::worker::RunningWork { id: running.id, attempt: 1 }],
    };
    assert!(worker.heartbeat(&hb).await.expect("heartbeat").abort.is_empty());
    finish(&worker, &running, WorkResult::Success).await;
    assert_eq!(user.work_request(b.id).await.expect("b").status, WorkStatus::Pending, "b waits");
    admin.worker_action("w1", "enable").await.expect("enable");
    assert_eq!(take(&worker).await.id, b.id);
}

#[tokio::test]
async fn concurrent_polls_of_one_worker_never_exceed_its_slots() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    for _ in 0..4 {
        user.create_work_request(&noop(&[])).await.expect("create");
    }
    let mut polls = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let worker = worker.clone();
        polls.spawn(async move { worker.next(Duration::from_secs(1)).await.expect("next") });
    }
    let mut assigned = 0;
    while let Some(got) = polls.join_next().await {
        assigned += usize::from(got.expect("poll").is_some());
    }
    assert_eq!(assigned, 1, "one slot, one assignment");
}
