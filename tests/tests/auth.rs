//! Who may do what: tokens are shown once and stored only hashed; missing,
//! unknown and revoked tokens get 401; each role reaches only what it may
//! (403 otherwise); workers register disabled unless enrolled and see only
//! their own work; agents speaking another protocol get 426.

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::{Client, WorkRequestFilter};
use kiln_shared::work::{Completion, LogLine, LogStream};
use kiln_shared::worker::{Heartbeat, Registration};
use kiln_shared::{WorkResult, WorkStatus, WorkerRole};
use kiln_tests::work::{noop, take};
use kiln_tests::{
    amd64_metadata, enrolled_worker, expect_api_error, expect_error_reply, obj, random_suffix, sha256_hex, Coordinator,
};
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Every byte of every file under `dir`, recursively.
fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the data dir") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(all_bytes_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes); // a WAL file may vanish between listing and reading
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A worker token of the length agents use.
fn worker_token() -> String {
    format!("{:0<64}", format!("secret{}", random_suffix()))
}

fn registration(name: &str, token: &str, enrollment: Option<String>) -> Registration {
    Registration { name: name.into(), token: token.into(), role: WorkerRole::Worker, enrollment_token: enrollment }
}

/// The call a user would make to prove a token works.
async fn list_work(client: &Client) -> Result<usize, kiln_shared::client::ClientError> {
    client.work_requests(&WorkRequestFilter::default()).await.map(|p| p.items.len())
}

#[tokio::test]
async fn token_create_prints_the_token_once_and_stores_only_its_hash() {
    let c = Coordinator::start();
    let mut secrets = Vec::new();
    for role in ["admin", "user", "enrollment"] {
        let name = format!("{role}-token");
        let out = c.admin_command(&["token", "create", "--role", role, "--name", &name]);
        assert!(out.status.success(), "token create --role {role}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout holds the token alone: {stdout:?}");
        let token = lines[0].trim().to_owned();
        assert!(token.len() >= 32 && token.chars().all(|ch| ch.is_ascii_hexdigit()), "a random token: {token:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&token), "the token is printed once");
        secrets.push((role, name, token));
    }
    let again = c.admin_command(&["token", "create", "--role", "user", "--name", "user-token"]);
    assert!(!again.status.success(), "a second token with a taken name is refused");

    for (role, _, token) in &secrets {
        let client = c.client(token);
        match *role {
            "admin" | "user" => assert_eq!(list_work(&client).await.expect("the new token works"), 0),
            _ => {
                let reg = registration("enrolled-01", &worker_token(), Some(token.clone()));
                assert!(c.anonymous().register(&reg).await.expect("register").enabled);
            }
        }
    }
    let worker_secret = worker_token();
    c.anonymous().register(&registration("plain-01", &worker_secret, None)).await.expect("register");

    let listing = c.admin_command(&["token", "list"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    let stored = all_bytes_under(c.data_dir.path());
    let db = c.data_dir.path().join("kiln.sqlite3");
    assert!(db.exists(), "the store is {}", db.display());
    for (role, name, token) in &secrets {
        assert!(listing.contains(name.as_str()), "token list names {name}: {listing}");
        assert!(!listing.contains(token.as_str()), "token list shows no token");
        assert!(!contains(&stored, token), "the {role} token is stored in clear under the data dir");
        // Looking for the hash proves the search covers where tokens live.
        assert!(contains(&stored, &sha256_hex(token.as_bytes())), "the {role} token's hash is stored");
    }
    assert!(!contains(&stored, &worker_secret), "a worker token is stored in clear");
    assert!(contains(&stored, &sha256_hex(worker_secret.as_bytes())), "the worker token's hash is stored");
}

#[tokio::test]
async fn missing_unknown_and_revoked_tokens_get_401() {
    let c = Coordinator::start();
    let admin = c.admin();
    assert_eq!(c.anonymous().health().await.expect("health needs no token").status, "ok");

    let msg = expect_api_error(list_work(&c.anonymous()).await, 401, "unauthorized");
    assert!(msg.contains("Authorization"), "says what is missing: {msg}");
    expect_api_error(list_work(&c.client("not-a-token")).await, 401, "unauthorized");
    expect_api_error(list_work(&c.client(&"0".repeat(64))).await, 401, "unauthorized");
    let http = reqwest::Client::new();
    let url = format!("{}/api/1/work-requests", c.url);
    let user_token = c.token("user", "carol");
    for header in ["Token ", "Basic dXNlcjpwYXNz", user_token.as_str(), "Token"] {
        let resp = http.get(&url).header("Authorization", header).send().await.expect("send");
        expect_error_reply(resp, 401, "unauthorized").await;
    }
    let resp = http.get(&url).header("Authorization", format!("Token {user_token}")).send().await.expect("send");
    assert_eq!(resp.status(), 200, "the same token in the right form works");

    // Revoked through the API by an admin.
    let carol = c.client(&user_token);
    assert_eq!(list_work(&carol).await.expect("carol works"), 0);
    admin.revoke_token("carol").await.expect("revoke carol");
    let msg = expect_api_error(list_work(&carol).await, 401, "unauthorized");
    assert!(msg.contains("revoked"), "says why: {msg}");
    expect_api_error(admin.revoke_token("carol").await, 404, "not-found");
    expect_api_error(admin.revoke_token("nobody").await, 404, "not-found");

    // Revoked on the command line while the coordinator runs.
    let dave = c.user("dave");
    assert_eq!(list_work(&dave).await.expect("dave works"), 0);
    let out = c.admin_command(&["token", "revoke", "dave"]);
    assert!(out.status.success(), "token revoke: {}", String::from_utf8_lossy(&out.stderr));
    expect_api_error(list_work(&dave).await, 401, "unauthorized");
    expect_api_error(dave.create_work_request(&noop(&[])).await, 401, "unauthorized");

    // An enrollment token that was revoked enrols nobody.
    let enrollment = c.token("enrollment", "enroll-gone");
    admin.revoke_token("enroll-gone").await.expect("revoke the enrollment token");
    let reg = registration("late-01", &worker_token(), Some(enrollment));
    expect_api_error(c.anonymous().register(&reg).await, 401, "unauthorized");

    // A deleted worker's token is unknown from then on.
    let worker = enrolled_worker(&c, "gone-01", amd64_metadata()).await;
    admin.delete_worker("gone-01").await.expect("delete the worker");
    expect_api_error(worker.next(Duration::ZERO).await, 401, "unauthorized");
    expect_api_error(worker.heartbeat(&Heartbeat::default()).await, 401, "unauthorized");
    assert_eq!(list_work(&admin).await.expect("the admin still works"), 0);
}

#[tokio::test]
async fn users_workers_and_enrollment_tokens_cannot_use_admin_endpoints() {
    let c = Coordinator::start();
    let admin = c.admin();
    let user = c.user("alice");
    let enrollment = c.client(&c.token("enrollment", "enroll-x"));
    let worker = enrolled_worker(&c, "builder-01", amd64_metadata()).await;
    let victim = c.user("victim");
    for who in [&user, &worker, &enrollment] {
        let msg = expect_api_error(who.worker_action("builder-01", "disable").await, 403, "forbidden");
        assert!(msg.contains("admin"), "says an admin is needed: {msg}");
        expect_api_error(who.worker_action("builder-01", "enable").await, 403, "forbidden");
        expect_api_error(who.delete_worker("builder-01").await, 403, "forbidden");
        let meta = obj(json!({"system:host_architecture": "s390x"}));
        expect_api_error(who.set_static_metadata("builder-01", &meta).await, 403, "forbidden");
        expect_api_error(who.revoke_token("victim").await, 403, "forbidden");
    }
    // Nothing changed: the worker is enabled with no static metadata, the
    // victim's token works.
    let w = admin.workers().await.expect("list workers").items;
    assert_eq!(w.len(), 1);
    assert!(w[0].enabled, "still enabled");
    assert!(w[0].static_metadata.is_empty(), "no static metadata: {:?}", w[0].static_metadata);
    assert_eq!(list_work(&victim).await.expect("victim still works"), 0);
    // The admin may.
    assert!(!admin.worker_action("builder-01", "disable").await.expect("disable").enabled);
    let meta = obj(json!({"system:cpu_count": 64}));
    let edited = admin.set_static_metadata("builder-01", &meta).await.expect("static metadata");
    assert_eq!(edited.metadata.get("system:cpu_count"), Some(&json!(64)));
    admin.revoke_token("victim").await.expect("revoke");
    expect_api_error(list_work(&victim).await, 401, "unauthorized");
    // Unknown names are 404 for the admin.
    for action in ["enable", "disable"] {
        let msg = expect_api_error(admin.worker_action("nobody", action).await, 404, "not-found");
        assert!(msg.contains("nobody"), "names the worker: {msg}");
    }
    expect_api_error(admin.delete_worker("nobody").await, 404, "not-found");
    expect_api_error(admin.set_static_metadata("nobody", &meta).await, 404, "not-found");
    let out = c.admin_command(&["worker", "enable", "nobody"]);
    assert!(!out.status.success(), "worker enable of an unknown worker fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"), "and says which");
}

#[tokio::test]
async fn an_enrollment_token_is_no_user_token() {
    let c = Coordinator::start();
    let enrollment = c.client(&c.token("enrollment", "enroll-x"));
    let msg = expect_api_error(list_work(&enrollment).await, 403, "forbidden");
    assert!(!msg.is_empty());
    expect_api_error(enrollment.create_work_request(&noop(&[])).await, 403, "forbidden");
    expect_api_error(enrollment.workers().await, 403, "forbidden");
    expect_api_error(enrollment.artifacts(&[]).await, 403, "forbidden");
    let new = NewArtifact { category: "test:x".into(), data: Default::default(), files: vec![], work_request: None };
    expect_api_error(enrollment.create_artifact(&new).await, 403, "forbidden");
    expect_api_error(enrollment.next(Duration::ZERO).await, 403, "forbidden");
    expect_api_error(enrollment.put_metadata(&amd64_metadata()).await, 403, "forbidden");
    let user = c.user("alice");
    assert_eq!(list_work(&user).await.expect("list"), 0, "the enrollment token created nothing");
    assert!(user.workers().await.expect("workers").items.is_empty());
}

#[tokio::test]
async fn a_worker_registered_without_enrollment_waits_disabled_until_enabled() {
    let c = Coordinator::start();
    let admin = c.admin();
    let user = c.user("alice");
    let anonymous = c.anonymous();

    let token = worker_token();
    let reg = registration("builder-01", &token, None);
    let resp = anonymous.request(Method::POST, "/api/1/workers/register").json(&reg).send().await.expect("register");
    assert_eq!(resp.status(), 201);
    let registered: kiln_shared::worker::Worker = resp.json().await.expect("worker JSON");
    assert!(!registered.enabled, "no enrollment token: disabled");
    let worker = c.client(&token);
    worker.put_metadata(&amd64_metadata()).await.expect("a disabled worker may describe itself");
    worker.heartbeat(&Heartbeat::default()).await.expect("a disabled worker may heartbeat");

    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let msg = expect_api_error(worker.next(Duration::ZERO).await, 403, "worker-disabled");
    assert!(msg.contains("builder-01"), "names the worker: {msg}");
    expect_api_error(worker.next(Duration::from_secs(1)).await, 403, "worker-disabled");
    assert_eq!(user.work_request(wr.id).await.expect("get").status, WorkStatus::Pending, "nothing was assigned");

    // Same name, other token: refused; same name and token: idempotent.
    let msg = expect_api_error(
        anonymous.register(&registration("builder-01", &worker_token(), None)).await,
        409,
        "name-taken",
    );
    assert!(msg.contains("builder-01"), "names the worker: {msg}");
    let again = anonymous.register(&reg).await.expect("registering again with the same token");
    assert!(!again.enabled, "re-registering does not enable");
    // A worker token may not be someone else's token.
    let taken = registration("builder-02", &token, None);
    expect_api_error(anonymous.register(&taken).await, 409, "token-taken");
    let short = registration("builder-03", "short", None);
    expect_api_error(anonymous.register(&short).await, 400, "invalid-token");
    let bad_name = registration("../etc", &worker_token(), None);
    expect_api_error(anonymous.register(&bad_name).await, 400, "invalid-name");
    let bogus = registration("builder-04", &worker_token(), Some("no-such-enrollment".into()));
    expect_api_error(anonymous.register(&bogus).await, 401, "unauthorized");
    let user_token_as_enrollment = registration("builder-05", &worker_token(), Some(c.token("user", "u2")));
    expect_api_error(anonymous.register(&user_token_as_enrollment).await, 401, "unauthorized");

    // Enabled on the command line, it takes the work.
    let out = c.admin_command(&["worker", "enable", "builder-01"]);
    assert!(out.status.success(), "worker enable: {}", String::from_utf8_lossy(&out.stderr));
    let got = take(&worker).await;
    assert_eq!(got.id, wr.id);
    assert_eq!(got.worker.as_deref(), Some("builder-01"));

    // Disabled and enabled through the API.
    admin.worker_action("builder-01", "disable").await.expect("disable");
    expect_api_error(worker.next(Duration::ZERO).await, 403, "worker-disabled");
    worker
        .complete(got.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await
        .expect("a disabled worker finishes what it runs");
    let second = user.create_work_request(&noop(&[])).await.expect("create");
    admin.worker_action("builder-01", "enable").await.expect("enable");
    assert_eq!(take(&worker).await.id, second.id);
}

#[tokio::test]
async fn worker_tokens_reach_only_their_own_work() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let a = enrolled_worker(&c, "worker-a", amd64_metadata()).await;
    let b = enrolled_worker(&c, "worker-b", amd64_metadata()).await;
    let content = b"secret build input".to_vec();
    let new = NewArtifact {
        category: "test:input".into(),
        data: Default::default(),
        files: vec![FileSpec { path: "input.txt".into(), size: content.len() as u64, sha256: sha256_hex(&content) }],
        work_request: None,
    };
    let artifact = user.create_artifact(&new).await.expect("create artifact");
    user.upload_file(artifact.id, "input.txt", content).await.expect("upload");

    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let got = take(&a).await;
    assert_eq!(got.id, wr.id);
    assert_eq!(a.work_request(wr.id).await.expect("a sees its own work").id, wr.id);
    let line = LogLine { seq: 1, ts: chrono::Utc::now(), stream: LogStream::Stdout, text: "hi".into(), attempt: None };
    assert_eq!(
        a.append_log(wr.id, got.attempt, std::slice::from_ref(&line)).await.expect("a logs").acknowledged_seq,
        1
    );

    let msg = expect_api_error(b.work_request(wr.id).await, 403, "forbidden");
    assert!(msg.contains(&wr.id.to_string()), "names the request: {msg}");
    let completion = Completion { result: WorkResult::Failure, attempt: Some(got.attempt), output_data: None };
    expect_api_error(b.complete(wr.id, &completion).await, 403, "forbidden");
    expect_api_error(b.append_log(wr.id, got.attempt, &[line]).await, 403, "forbidden");
    expect_api_error(b.log(wr.id, false).await, 403, "forbidden");
    expect_api_error(b.artifact(artifact.id).await, 403, "forbidden");
    expect_api_error(b.download_file(artifact.id, "input.txt").await, 403, "forbidden");
    expect_api_error(a.artifact(artifact.id).await, 403, "forbidden");
    expect_api_error(a.download_file(artifact.id, "input.txt").await, 403, "forbidden");

    for w in [&a, &b] {
        expect_api_error(w.create_work_request(&noop(&[])).await, 403, "forbidden");
        expect_api_error(w.workers().await, 403, "forbidden");
        expect_api_error(list_work(w).await, 403, "forbidden");
        expect_api_error(w.work_request_action(wr.id, "abort").await, 403, "forbidden");
    }
    // B's attempts changed nothing; A still completes its work.
    let seen = user.work_request(wr.id).await.expect("get");
    assert_eq!((seen.status, seen.worker.as_deref()), (WorkStatus::Running, Some("worker-a")));
    let done = a.complete(wr.id, &Completion { result: WorkResult::Success, ..completion }).await.expect("complete");
    assert_eq!(done.result, Some(WorkResult::Success));
    assert_eq!(list_work(&user).await.expect("list"), 1, "workers created no work");
}

#[tokio::test]
async fn another_protocol_version_gets_426_naming_both() {
    let c = Coordinator::start();
    let worker_secret = worker_token();
    c.anonymous().register(&registration("builder-01", &worker_secret, None)).await.expect("register");
    let http = reqwest::Client::new();
    let paths = [(Method::GET, "/api/1/health"), (Method::POST, "/api/1/worker/next?wait=0")];
    for (method, path) in paths {
        for version in ["2", "0", "banana"] {
            let resp = http
                .request(method.clone(), format!("{}{path}", c.url))
                .header("Kiln-Protocol", version)
                .header("Authorization", format!("Token {worker_secret}"))
                .send()
                .await
                .expect("send");
            let msg = expect_error_reply(resp, 426, "protocol-mismatch").await;
            let numbers: Vec<&str> = msg.split(|ch: char| !ch.is_ascii_alphanumeric()).collect();
            assert!(numbers.contains(&version), "names their version {version}: {msg}");
            assert!(numbers.contains(&"1"), "names our version 1: {msg}");
        }
    }
    let ok = http.get(format!("{}/api/1/health", c.url)).header("Kiln-Protocol", "1").send().await.expect("send");
    assert_eq!(ok.status(), 200, "protocol 1 is spoken");
    let ok = http.get(format!("{}/api/1/health", c.url)).send().await.expect("send");
    assert_eq!(ok.status(), 200, "users' tools need not send the header");
}

#[tokio::test]
async fn only_the_creator_or_an_admin_aborts_and_retries() {
    let c = Coordinator::start();
    let admin = c.admin();
    let alice = c.user("alice");
    let bob = c.user("bob");
    let wr = alice.create_work_request(&noop(&[])).await.expect("create");

    let msg = expect_api_error(bob.work_request_action(wr.id, "abort").await, 403, "forbidden");
    assert!(msg.contains(&wr.id.to_string()), "names the request: {msg}");
    expect_api_error(bob.work_request_action(wr.id, "retry").await, 403, "forbidden");
    assert_eq!(alice.work_request(wr.id).await.expect("get").status, WorkStatus::Pending, "bob changed nothing");

    let aborted = admin.work_request_action(wr.id, "abort").await.expect("an admin aborts anyone's request");
    assert_eq!(aborted.status, WorkStatus::Aborted);
    expect_api_error(bob.work_request_action(wr.id, "retry").await, 403, "forbidden");
    assert_eq!(alice.work_request(wr.id).await.expect("get").status, WorkStatus::Aborted);
    let retried = admin.work_request_action(wr.id, "retry").await.expect("an admin retries anyone's request");
    assert_eq!((retried.status, retried.attempt), (WorkStatus::Pending, 2));
    let own = alice.work_request_action(wr.id, "abort").await.expect("the creator aborts her own request");
    assert_eq!(own.status, WorkStatus::Aborted);
    let own = alice.work_request_action(wr.id, "retry").await.expect("the creator retries her own request");
    assert_eq!(own.status, WorkStatus::Pending);
}

#[tokio::test]
async fn only_admins_raise_priority_above_zero() {
    let c = Coordinator::start();
    let admin = c.admin();
    let user = c.user("alice");
    let urgent = kiln_shared::work::NewWorkRequest { priority: 1, ..noop(&[]) };
    let msg = expect_api_error(user.create_work_request(&urgent).await, 403, "forbidden");
    assert!(msg.contains("priority"), "says why: {msg}");
    assert_eq!(list_work(&user).await.expect("list"), 0, "nothing was created");
    let low = kiln_shared::work::NewWorkRequest { priority: -5, ..noop(&[]) };
    assert_eq!(user.create_work_request(&low).await.expect("lowering is allowed").priority_base, -5);
    let high = kiln_shared::work::NewWorkRequest { priority: 10, ..noop(&[]) };
    assert_eq!(admin.create_work_request(&high).await.expect("an admin raises").priority_base, 10);
}
