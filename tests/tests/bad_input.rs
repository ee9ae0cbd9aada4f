//! Bad input never crashes the coordinator nor leaves anything behind: each
//! malformed body, unknown task, invalid id, query or dependency gets a
//! clear 4xx with `{"error": code, "message": text}`, and afterwards the
//! coordinator is healthy and holds exactly what it held before.

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::client::{Client, WorkRequestFilter};
use kiln_shared::work::{NewWorkRequest, WorkRequest};
use kiln_shared::{TaskType, WorkStatus};
use kiln_tests::work::{noop, request, with_data};
use kiln_tests::{
    amd64_metadata, enrolled_worker, expect_api_error, expect_error_reply, raw_http, sha256_hex, Coordinator,
};
use reqwest::Method;
use serde_json::{json, Value};

const UNKNOWN_ID: i64 = 987_654;

/// Every work request, oldest first, as a user sees them.
async fn all_work(user: &Client) -> Vec<WorkRequest> {
    let filter = WorkRequestFilter { limit: Some(500), ..WorkRequestFilter::default() };
    let mut items = user.work_requests(&filter).await.expect("list work requests").items;
    items.reverse();
    items
}

/// The coordinator answers health checks and still holds exactly `before`.
async fn assert_healthy_and_unchanged(c: &Coordinator, user: &Client, before: &[WorkRequest]) {
    assert_eq!(c.anonymous().health().await.expect("health after bad input").status, "ok");
    let after = all_work(user).await;
    assert_eq!(after, before, "bad input changed the stored work requests");
}

/// POST `body` as raw bytes to `path` with the user's token.
async fn post_raw(user: &Client, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    user.request(Method::POST, path)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send the request")
}

/// An environment artifact that exists.
async fn tarball(user: &Client) -> i64 {
    let new = NewArtifact {
        category: "kiln:system-tarball".into(),
        data: json!({"codename": "bookworm", "architecture": "amd64"}).as_object().cloned().expect("object"),
        files: vec![],
        work_request: None,
    };
    user.create_artifact(&new).await.expect("create the environment artifact").id
}

#[tokio::test]
async fn malformed_create_bodies_get_400_invalid_json() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let before = all_work(&user).await;
    let path = "/api/1/work-requests";

    let msg =
        expect_error_reply(post_raw(&user, path, "{\"task_type\": \"worker\", ").await, 400, "invalid-json").await;
    assert!(msg.contains("EOF") || msg.contains("line 1"), "says where the JSON broke: {msg}");
    let msg = expect_error_reply(post_raw(&user, path, "").await, 400, "invalid-json").await;
    assert!(msg.contains("empty"), "says the body is empty: {msg}");
    expect_error_reply(post_raw(&user, path, "  \n ").await, 400, "invalid-json").await;
    expect_error_reply(post_raw(&user, path, "[]").await, 400, "invalid-json").await;
    expect_error_reply(post_raw(&user, path, vec![0xff, 0xfe, 0x00]).await, 400, "invalid-json").await;

    let unknown = json!({"task_type": "worker", "task_name": "noop", "colour": "red"});
    let msg = expect_error_reply(post_raw(&user, path, unknown.to_string()).await, 400, "invalid-json").await;
    assert!(msg.contains("colour"), "names the unknown field: {msg}");

    let wrong_types = [
        (json!({"task_type": 5, "task_name": "noop"}), "task_type\\\":5"),
        (json!({"task_type": "worker", "task_name": "noop", "priority": "high"}), "high"),
        (json!({"task_type": "worker", "task_name": "noop", "dependencies": "x"}), "\"x\""),
        (json!({"task_type": "worker", "task_name": 7}), "7"),
        (json!({"task_type": "worker", "task_name": "noop", "task_data": []}), "sequence"),
        (json!({"task_type": "nonsense", "task_name": "noop"}), "nonsense"),
        (json!({"task_name": "noop"}), "task_type"),
    ];
    for (body, mention) in wrong_types {
        let msg = expect_error_reply(post_raw(&user, path, body.to_string()).await, 400, "invalid-json").await;
        assert!(msg.contains(mention), "the message for {body} mentions {mention}: {msg}");
    }
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn bodies_over_the_json_limit_get_413() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let before = all_work(&user).await;
    let filler = "a".repeat((1 << 20) + 4096);
    let body = json!({"task_type": "worker", "task_name": "noop", "task_data": {"x": filler}}).to_string();
    let msg =
        expect_error_reply(post_raw(&user, "/api/1/work-requests", body.clone()).await, 413, "body-too-large").await;
    assert!(msg.contains(&(1u64 << 20).to_string()), "names the limit: {msg}");
    // The same without a Content-Length: a chunked body is cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(16 << 10).map(|c| Ok(c.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = post_raw(&user, "/api/1/work-requests", streamed).await;
    expect_error_reply(resp, 413, "body-too-large").await;
    // Just under the limit is parsed (and refused for its content, not size).
    let under = json!({"task_type": "worker", "task_name": "noop", "task_data": {"x": "a".repeat(1000)}});
    let msg =
        expect_error_reply(post_raw(&user, "/api/1/work-requests", under.to_string()).await, 400, "invalid-task-data")
            .await;
    assert!(msg.contains("task_data.x"), "names the key: {msg}");
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn unknown_tasks_and_invalid_command_data_get_400() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let env = tarball(&user).await;
    let before = all_work(&user).await;

    let msg =
        expect_api_error(user.create_work_request(&request(TaskType::Worker, "frobnicate")).await, 400, "unknown-task");
    assert!(msg.contains("frobnicate"), "names the task: {msg}");
    let msg = expect_api_error(
        user.create_work_request(&with_data(noop(&[]), json!({"colour": "red"}))).await,
        400,
        "invalid-task-data",
    );
    assert!(msg.contains("colour"), "names the key: {msg}");

    let good = json!({"environment": env, "backend": "unshare", "command": ["true"]});
    let invalid = [
        (json!({"backend": "unshare", "command": ["true"]}), "environment"),
        (json!({"environment": env, "backend": "unshare", "command": ["true"], "colour": 1}), "colour"),
        (json!({"environment": env, "backend": "docker", "command": ["true"]}), "docker"),
        (json!({"environment": env, "backend": "unshare", "command": []}), "command"),
        (json!({"environment": env, "backend": "unshare"}), "command"),
        (json!({"environment": env, "backend": "unshare", "command": [1, 2]}), "command"),
        (json!({"environment": "seven", "backend": "unshare", "command": ["true"]}), "environment"),
        (json!({"environment": env, "backend": "unshare", "command": ["true"], "timeout": 0}), "timeout"),
        (json!({"environment": env, "backend": "unshare", "command": ["true"], "needs": "cloud"}), "cloud"),
        (
            json!({"environment": env, "backend": "unshare", "command": ["true"],
                   "constraints": [{"key": "system:host_architecture", "op": "regex", "value": "(["}]}),
            "regex",
        ),
        (
            json!({"environment": env, "backend": "unshare", "command": ["true"],
                   "constraints": [{"key": "system:cpu_count", "op": "~=", "value": 1}]}),
            "constraints",
        ),
    ];
    for (data, mention) in invalid {
        let new = with_data(request(TaskType::Worker, "command"), data.clone());
        let msg = expect_api_error(user.create_work_request(&new).await, 400, "invalid-task-data");
        assert!(msg.contains(mention), "the message for {data} mentions {mention}: {msg}");
    }

    let missing = with_data(request(TaskType::Worker, "command"), {
        let mut d = good.clone();
        d["environment"] = json!(UNKNOWN_ID);
        d
    });
    let msg = expect_api_error(user.create_work_request(&missing).await, 400, "unknown-artifact");
    assert!(msg.contains(&UNKNOWN_ID.to_string()), "names the artifact: {msg}");
    assert_healthy_and_unchanged(&c, &user, &before).await;

    // The same data with a real environment is accepted: the refusals above
    // were about the data, not about `command` itself.
    let ok = user.create_work_request(&with_data(request(TaskType::Worker, "command"), good)).await;
    assert_eq!(ok.expect("a valid command request").status, WorkStatus::Pending);
}

#[tokio::test]
async fn invalid_and_unknown_ids_get_400_and_404() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "builder-01", amd64_metadata()).await;
    let before = all_work(&user).await;
    let complete_body = json!({"result": "success"}).to_string();

    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        let base = format!("/api/1/work-requests/{bad}");
        let get = user.request(Method::GET, &base).send().await.expect("get");
        let msg = expect_error_reply(get, 400, "invalid-id").await;
        assert!(msg.contains(bad), "names the id {bad}: {msg}");
        for action in ["abort", "retry"] {
            let resp = post_raw(&user, &format!("{base}/{action}"), "").await;
            expect_error_reply(resp, 400, "invalid-id").await;
        }
        let resp = post_raw(&user, &format!("{base}/complete"), complete_body.clone()).await;
        expect_error_reply(resp, 400, "invalid-id").await;
        let resp = user.request(Method::GET, &format!("{base}/log")).send().await.expect("log");
        expect_error_reply(resp, 400, "invalid-id").await;
        let resp = worker.request(Method::POST, &format!("{base}/log?attempt=1")).body("").send().await.expect("log");
        expect_error_reply(resp, 400, "invalid-id").await;
        let resp = user.request(Method::GET, &format!("/api/1/artifacts/{bad}")).send().await.expect("artifact");
        expect_error_reply(resp, 400, "invalid-id").await;
        let resp = user.request(Method::GET, &format!("/api/1/artifacts/{bad}/files/a")).send().await.expect("file");
        expect_error_reply(resp, 400, "invalid-id").await;
    }

    let unknown = UNKNOWN_ID.to_string();
    let msg = expect_api_error(user.work_request(UNKNOWN_ID).await, 404, "not-found");
    assert!(msg.contains(&unknown), "names the id: {msg}");
    expect_api_error(user.work_request_action(UNKNOWN_ID, "abort").await, 404, "not-found");
    expect_api_error(user.work_request_action(UNKNOWN_ID, "retry").await, 404, "not-found");
    let resp = post_raw(&user, &format!("/api/1/work-requests/{unknown}/complete"), complete_body).await;
    expect_error_reply(resp, 404, "not-found").await;
    expect_api_error(user.log(UNKNOWN_ID, false).await, 404, "not-found");
    expect_api_error(worker.append_log(UNKNOWN_ID, 1, &[]).await, 404, "not-found");
    let msg = expect_api_error(user.artifact(UNKNOWN_ID).await, 404, "not-found");
    assert!(msg.contains(&unknown), "names the id: {msg}");
    expect_api_error(user.download_file(UNKNOWN_ID, "a").await, 404, "not-found");
    expect_api_error(user.upload_file(UNKNOWN_ID, "a", "x").await, 404, "not-found");
    let resp = post_raw(&user, &format!("/api/1/work-requests/{unknown}/dependencies"), "{\"dependencies\": []}").await;
    expect_error_reply(resp, 404, "not-found").await;

    let resp = user.request(Method::GET, "/api/1/no-such-thing").send().await.expect("get");
    expect_error_reply(resp, 404, "not-found").await;
    let resp = user.request(Method::DELETE, "/api/1/work-requests").send().await.expect("delete");
    expect_error_reply(resp, 405, "method-not-allowed").await;
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn bad_list_queries_get_400_invalid_query() {
    let c = Coordinator::start();
    let user = c.user("alice");
    user.create_work_request(&noop(&[])).await.expect("create one request");
    let before = all_work(&user).await;
    let cases = [
        ("colour=red", "colour"),
        ("status=done", "done"),
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        ("limit=many", "many"),
        ("limit=100000", "limit"),
        ("parent=abc", "abc"),
        ("cursor=xyz", "xyz"),
        ("status=%ZZ", "%ZZ"),
    ];
    for (query, mention) in cases {
        let resp = user.request(Method::GET, &format!("/api/1/work-requests?{query}")).send().await.expect("list");
        let msg = expect_error_reply(resp, 400, "invalid-query").await;
        assert!(msg.contains(mention), "the message for ?{query} mentions {mention}: {msg}");
    }
    for query in ["limit=0", "limit=x", "cursor=xyz"] {
        let resp = user.request(Method::GET, &format!("/api/1/artifacts?{query}")).send().await.expect("list");
        expect_error_reply(resp, 400, "invalid-query").await;
    }
    let resp = user.request(Method::POST, "/api/1/work-requests/1/log?attempt=1").send().await.expect("append");
    expect_error_reply(resp, 403, "forbidden").await;
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn invalid_artifact_declarations_get_400_and_create_nothing() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let before = all_work(&user).await;
    let sha = sha256_hex(b"x");
    let file = |path: &str, sha256: &str| FileSpec { path: path.into(), size: 1, sha256: sha256.into() };
    let artifact = |files: Vec<FileSpec>| NewArtifact {
        category: "test:files".into(),
        data: Default::default(),
        files,
        work_request: None,
    };
    let cases = [
        (vec![file("../x", &sha)], "invalid-path", "../x"),
        (vec![file("a/../../etc/passwd", &sha)], "invalid-path", "a/../../etc/passwd"),
        (vec![file("/etc/passwd", &sha)], "invalid-path", "/etc/passwd"),
        (vec![file("a//b", &sha)], "invalid-path", "a//b"),
        (vec![file("./a", &sha)], "invalid-path", "./a"),
        (vec![file("", &sha)], "invalid-path", "\"\""),
        (vec![file("a\\b", &sha)], "invalid-path", "a\\\\b"),
        (vec![file("dir/", &sha)], "invalid-path", "dir/"),
        (vec![file("a", &sha), file("b", &sha), file("a", &sha)], "duplicate-path", "\"a\""),
        (vec![file("a", "abc")], "invalid-sha256", "\"a\""),
        (vec![file("a", &sha.to_uppercase())], "invalid-sha256", "\"a\""),
        (vec![file("a", &format!("{}g", &sha[..63]))], "invalid-sha256", "\"a\""),
    ];
    for (files, code, mention) in cases {
        let msg = expect_api_error(user.create_artifact(&artifact(files.clone())).await, 400, code);
        assert!(msg.contains(mention), "the message for {files:?} mentions {mention}: {msg}");
    }
    let bad_category = NewArtifact { category: "no spaces please".into(), ..artifact(vec![]) };
    expect_api_error(user.create_artifact(&bad_category).await, 400, "invalid-category");
    let negative = json!({"category": "test:files", "files": [{"path": "a", "size": -1, "sha256": sha}]});
    expect_error_reply(post_raw(&user, "/api/1/artifacts", negative.to_string()).await, 400, "invalid-json").await;
    let extra = json!({"category": "test:files", "files": [{"path": "a", "size": 1, "sha256": sha, "mode": 493}]});
    let msg =
        expect_error_reply(post_raw(&user, "/api/1/artifacts", extra.to_string()).await, 400, "invalid-json").await;
    assert!(msg.contains("mode"), "names the unknown field: {msg}");

    let listed = user.artifacts(&[]).await.expect("list artifacts");
    assert!(listed.items.is_empty(), "refused declarations created artifacts: {:?}", listed.items);
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn traversal_in_file_urls_is_refused_and_serves_no_host_file() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let content = b"inside the artifact\n".to_vec();
    let new = NewArtifact {
        category: "test:files".into(),
        data: Default::default(),
        files: vec![FileSpec { path: "dir/a.txt".into(), size: content.len() as u64, sha256: sha256_hex(&content) }],
        work_request: None,
    };
    let id = user.create_artifact(&new).await.expect("create").id;
    user.upload_file(id, "dir/a.txt", content.clone()).await.expect("upload");
    let token = c.token("user", "raw-http");

    let attempts = [
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "dir%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "../../../../../../etc/passwd",
        "dir/../../../../../../etc/passwd",
        "..%5C..%5C..%5Cetc%5Cpasswd",
        "dir/a.txt%00",
        "dir//a.txt",
        "./dir/a.txt",
    ];
    for path in attempts {
        for method in ["GET", "PUT"] {
            // Raw HTTP, so no client library tidies the path first.
            let req = format!(
                "{method} /api/1/artifacts/{id}/files/{path} HTTP/1.1\r\nHost: kiln\r\n\
                 Authorization: Token {token}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nroot"
            );
            let (status, body) = raw_http(&c.url, &req).await;
            assert!((400..500).contains(&status), "{method} files/{path}: status {status}, body {body}");
            assert!(!body.contains("root:"), "{method} files/{path} served a host file: {body}");
            let reply: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
            assert!(reply.get("error").and_then(Value::as_str).is_some(), "{path}: no error code in {body}");
        }
    }
    // The same through the client (whose URL library resolves `..` first).
    for path in ["../../etc/passwd", "/etc/passwd", "../../../../../../etc/passwd"] {
        let status = user.download_file(id, path).await.expect_err("refused").status();
        assert!(status.is_some_and(|s| s.is_client_error()), "GET {path}: {status:?}");
        let status = user.upload_file(id, path, "root").await.expect_err("refused").status();
        assert!(status.is_some_and(|s| s.is_client_error()), "PUT {path}: {status:?}");
    }
    let got = user.download_file(id, "dir/a.txt").await.expect("download").bytes().await.expect("bytes");
    assert_eq!(got.as_ref(), content.as_slice(), "the real file is untouched");
    assert_eq!(user.artifacts(&[]).await.expect("list").items.len(), 1);
}

#[tokio::test]
async fn dependency_cycles_and_unknown_dependencies_get_400() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let a = user.create_work_request(&noop(&[])).await.expect("create a");
    let b = user.create_work_request(&noop(&[a.id])).await.expect("create b after a");
    assert_eq!(b.status, WorkStatus::Blocked);
    let before = all_work(&user).await;
    let add = |id: i64, deps: Value| {
        let user = user.clone();
        async move {
            let body = json!({ "dependencies": deps }).to_string();
            post_raw(&user, &format!("/api/1/work-requests/{id}/dependencies"), body).await
        }
    };

    let msg = expect_error_reply(add(a.id, json!([a.id])).await, 400, "dependency-cycle").await;
    assert!(msg.contains(&a.id.to_string()), "names the request: {msg}");
    let msg = expect_error_reply(add(a.id, json!([b.id])).await, 400, "dependency-cycle").await;
    assert!(msg.contains("cycle"), "says why: {msg}");
    let msg = expect_error_reply(add(a.id, json!([UNKNOWN_ID])).await, 400, "unknown-dependency").await;
    assert!(msg.contains(&UNKNOWN_ID.to_string()), "names the dependency: {msg}");
    expect_error_reply(add(b.id, json!([a.id, a.id])).await, 400, "duplicate-dependency").await;
    let path = format!("/api/1/work-requests/{}/dependencies", a.id);
    expect_error_reply(post_raw(&user, &path, "{\"dependencies\": \"x\"}").await, 400, "invalid-json").await;
    let msg = expect_error_reply(post_raw(&user, &path, "{\"deps\": []}").await, 400, "invalid-json").await;
    assert!(msg.contains("deps"), "names the unknown field: {msg}");

    let msg = expect_api_error(user.create_work_request(&noop(&[UNKNOWN_ID])).await, 400, "unknown-dependency");
    assert!(msg.contains(&UNKNOWN_ID.to_string()), "names the dependency: {msg}");
    expect_api_error(user.create_work_request(&noop(&[a.id, a.id])).await, 400, "duplicate-dependency");
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn dependencies_across_workflows_get_400() {
    let c = Coordinator::start();
    let user = c.user("alice");
    // A gate no worker takes keeps the (otherwise empty) noop workflow open.
    let gate = user.create_work_request(&noop(&[])).await.expect("create a gate");
    let w = NewWorkRequest { dependencies: vec![gate.id], ..request(TaskType::Workflow, "noop") };
    let w = user.create_work_request(&w).await.expect("create workflow");
    assert_eq!(w.status, WorkStatus::Blocked, "the workflow waits for its gate");
    let child = NewWorkRequest { parent: Some(w.id), ..noop(&[]) };
    let child = user.create_work_request(&child).await.expect("create a child of the workflow");
    let top = user.create_work_request(&noop(&[])).await.expect("create a top-level request");
    let before = all_work(&user).await;

    let msg = expect_api_error(user.create_work_request(&noop(&[child.id])).await, 400, "cross-workflow-dependency");
    assert!(msg.contains(&child.id.to_string()) && msg.contains(&w.id.to_string()), "names both: {msg}");
    let inside = NewWorkRequest { parent: Some(w.id), ..noop(&[top.id]) };
    expect_api_error(user.create_work_request(&inside).await, 400, "cross-workflow-dependency");
    let body = json!({ "dependencies": [child.id] }).to_string();
    let resp = post_raw(&user, &format!("/api/1/work-requests/{}/dependencies", top.id), body).await;
    expect_error_reply(resp, 400, "cross-workflow-dependency").await;
    expect_api_error(user.create_work_request(&noop(&[UNKNOWN_ID])).await, 400, "unknown-dependency");
    let orphan = NewWorkRequest { parent: Some(top.id), ..noop(&[]) };
    expect_api_error(user.create_work_request(&orphan).await, 400, "invalid-parent");
    let lost = NewWorkRequest { parent: Some(UNKNOWN_ID), ..noop(&[]) };
    expect_api_error(user.create_work_request(&lost).await, 400, "unknown-parent");
    assert_healthy_and_unchanged(&c, &user, &before).await;
}

#[tokio::test]
async fn undecodable_path_parameters_get_a_json_400() {
    let c = Coordinator::start();
    let admin = c.admin();
    let before = all_work(&admin).await;
    let cases = [
        (Method::GET, "/api/1/artifacts/%FF"),
        (Method::GET, "/api/1/artifacts/%FF/files/x"),
        (Method::GET, "/api/1/artifacts/1/files/a%FF"),
        (Method::PUT, "/api/1/artifacts/1/files/a%FF"),
        (Method::GET, "/api/1/workers/%FF"),
        (Method::POST, "/api/1/workers/%FF/enable"),
        (Method::DELETE, "/api/1/workers/%FF"),
        (Method::DELETE, "/api/1/tokens/%FF"),
    ];
    for (method, path) in cases {
        let resp = admin.request(method.clone(), path).body("x").send().await.expect("send");
        let msg = expect_error_reply(resp, 400, "invalid-url").await;
        assert!(msg.contains("UTF-8"), "{method} {path} says what is wrong: {msg}");
    }
    assert_healthy_and_unchanged(&c, &admin, &before).await;
}

#[tokio::test]
async fn undecodable_work_request_ids_get_a_json_400() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let cases = [
        (Method::GET, "/api/1/work-requests/%FF"),
        (Method::POST, "/api/1/work-requests/%FF/abort"),
        (Method::POST, "/api/1/work-requests/%FF/retry"),
        (Method::POST, "/api/1/work-requests/%FF/complete"),
        (Method::POST, "/api/1/work-requests/%FF/dependencies"),
        (Method::GET, "/api/1/work-requests/%FF/log"),
    ];
    for (method, path) in cases {
        let resp = user.request(method, path).body("{}").send().await.expect("send");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        assert_eq!(code, 400, "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        assert!(body.get("error").and_then(Value::as_str).is_some(), "{path}: no error code in {text}");
    }
}
