//! Artifacts: declared, uploaded as streams checked against the declared
//! size and sha256, complete when every file is in, downloaded byte for
//! byte, listed newest first with category and data filters and cursor
//! pagination, and readable by a worker only while its running work needs
//! them.

use futures_util::StreamExt;
use kiln_shared::artifact::{Artifact, ArtifactState, FileSpec, NewArtifact};
use kiln_shared::client::Client;
use kiln_shared::work::Completion;
use kiln_shared::{TaskType, WorkResult};
use kiln_tests::work::{request, take, with_data};
use kiln_tests::{amd64_metadata, enrolled_worker, expect_api_error, obj, sha256_hex, wait_for, Coordinator};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `len` bytes that are not all alike (xorshift), so a misplaced chunk shows.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn spec(path: &str, content: &[u8]) -> FileSpec {
    FileSpec { path: path.into(), size: content.len() as u64, sha256: sha256_hex(content) }
}

fn declare(category: &str, data: Value, files: Vec<FileSpec>) -> NewArtifact {
    NewArtifact { category: category.into(), data: obj(data), files, work_request: None }
}

/// `content` as a streamed (chunked) request body of `chunk`-byte pieces.
fn streamed(content: &[u8], chunk: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = content.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

async fn download(client: &Client, id: i64, path: &str) -> Vec<u8> {
    let resp = client.download_file(id, path).await.expect("download");
    resp.bytes().await.expect("download body").to_vec()
}

fn file<'a>(artifact: &'a Artifact, path: &str) -> &'a kiln_shared::artifact::ArtifactFile {
    artifact.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("no file {path} in {artifact:?}"))
}

/// Query parameters of an artifact list.
type Query<'a> = Vec<(&'a str, &'a str)>;

fn ids(items: &[Artifact]) -> Vec<i64> {
    items.iter().map(|a| a.id).collect()
}

#[tokio::test]
async fn a_streamed_upload_is_checked_and_completes_the_artifact() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let big = pseudo_random((3 << 20) + 12_345, 7);
    let small = b"Format: 3.0 (quilt)\n".to_vec();
    let new = declare(
        "kiln:source-package",
        json!({"name": "hello"}),
        vec![spec("pool/hello_1.0.orig.tar.xz", &big), spec("hello_1.0.dsc", &small)],
    );
    let resp = user.request(Method::POST, "/api/1/artifacts").json(&new).send().await.expect("create");
    assert_eq!(resp.status(), 201);
    let created: Artifact = resp.json().await.expect("artifact JSON");
    assert_eq!(created.state, ArtifactState::Incomplete);
    assert!(created.files.iter().all(|f| !f.complete), "nothing uploaded yet: {:?}", created.files);
    assert_eq!(created.created_by.as_deref(), Some("alice"));

    let after_big = user
        .upload_file(created.id, "pool/hello_1.0.orig.tar.xz", streamed(&big, 64 << 10))
        .await
        .expect("streamed upload");
    assert_eq!(after_big.state, ArtifactState::Incomplete, "one file is still missing");
    assert!(file(&after_big, "pool/hello_1.0.orig.tar.xz").complete);
    assert!(!file(&after_big, "hello_1.0.dsc").complete);
    expect_api_error(user.download_file(created.id, "hello_1.0.dsc").await, 409, "file-incomplete");

    let done = user.upload_file(created.id, "hello_1.0.dsc", streamed(&small, 3)).await.expect("upload");
    assert_eq!(done.state, ArtifactState::Complete);
    assert_eq!(user.artifact(created.id).await.expect("get").state, ArtifactState::Complete);

    let resp = user.download_file(created.id, "pool/hello_1.0.orig.tar.xz").await.expect("download");
    assert_eq!(resp.content_length(), Some(big.len() as u64));
    let mut got = Vec::with_capacity(big.len());
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("download chunk"));
    }
    assert!(got == big, "the download differs from the upload ({} vs {} bytes)", got.len(), big.len());
    assert_eq!(download(&user, created.id, "hello_1.0.dsc").await, small);
    // Paths that need encoding in a URL arrive intact.
    let odd = "docs/read me+ü%41.txt";
    let b = user.create_artifact(&declare("test:x", json!({}), vec![spec(odd, &small)])).await.expect("create");
    assert_eq!(user.upload_file(b.id, odd, small.clone()).await.expect("upload").state, ArtifactState::Complete);
    assert_eq!(download(&user, b.id, odd).await, small);
    // Someone else's artifact can be read but not written.
    let bob = c.user("bob");
    assert_eq!(download(&bob, created.id, "hello_1.0.dsc").await, small);
    let other = bob.create_artifact(&declare("test:x", json!({}), vec![spec("x", b"x")])).await.expect("create");
    expect_api_error(user.upload_file(other.id, "x", "x").await, 403, "forbidden");
}

#[tokio::test]
async fn wrong_uploads_are_refused_and_leave_the_file_incomplete() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let content = pseudo_random(1000, 11);
    let declared = spec("data.bin", &content);
    let a = user.create_artifact(&declare("test:files", json!({}), vec![declared.clone()])).await.expect("create");

    let mut wrong = content.clone();
    wrong[500] ^= 0xff;
    let msg = expect_api_error(user.upload_file(a.id, "data.bin", wrong).await, 400, "sha256-mismatch");
    assert!(msg.contains(&declared.sha256), "names the declared sha256: {msg}");
    let mut longer = content.clone();
    longer.push(0);
    let msg = expect_api_error(user.upload_file(a.id, "data.bin", longer).await, 400, "size-mismatch");
    assert!(msg.contains("1000"), "names the declared size: {msg}");
    let msg = expect_api_error(user.upload_file(a.id, "data.bin", content[..999].to_vec()).await, 400, "size-mismatch");
    assert!(msg.contains("999") && msg.contains("1000"), "names both sizes: {msg}");
    expect_api_error(user.upload_file(a.id, "data.bin", streamed(&content[..10], 3)).await, 400, "size-mismatch");
    expect_api_error(user.upload_file(a.id, "data.bin", Vec::new()).await, 400, "size-mismatch");
    let msg = expect_api_error(user.upload_file(a.id, "other.bin", content.clone()).await, 404, "not-found");
    assert!(msg.contains("other.bin"), "names the file: {msg}");

    let seen = user.artifact(a.id).await.expect("get");
    assert_eq!(seen.state, ArtifactState::Incomplete);
    assert!(!file(&seen, "data.bin").complete, "a refused upload leaves the file incomplete");
    let msg = expect_api_error(user.download_file(a.id, "data.bin").await, 409, "file-incomplete");
    assert!(msg.contains("data.bin"), "names the file: {msg}");

    let done = user.upload_file(a.id, "data.bin", streamed(&content, 100)).await.expect("the right bytes");
    assert_eq!(done.state, ArtifactState::Complete);
    // Uploading a complete file again (a retry after a lost reply) is fine.
    let resp = user
        .request(Method::PUT, &format!("/api/1/artifacts/{}/files/data.bin", a.id))
        .body(content.clone())
        .send()
        .await
        .expect("re-upload");
    assert_eq!(resp.status(), 200, "re-uploading a complete file succeeds");
    let again: Artifact = resp.json().await.expect("artifact JSON");
    assert_eq!(again.state, ArtifactState::Complete);
    // Whatever a later upload says, the stored bytes stay what was declared.
    let _ = user.upload_file(a.id, "data.bin", vec![0u8; 1000]).await;
    assert_eq!(download(&user, a.id, "data.bin").await, content);
}

#[tokio::test]
async fn an_interrupted_upload_leaves_no_temporary_file() {
    use tokio::io::AsyncWriteExt;
    let c = Coordinator::start();
    let token = c.token("user", "alice");
    let user = c.client(&token);
    let content = pseudo_random(1 << 20, 5);
    let a = user.create_artifact(&declare("test:files", json!({}), vec![spec("big", &content)])).await.expect("create");
    let tmp = c.data_dir.path().join("files").join("tmp");
    let entries = |dir: &std::path::Path| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(&tmp), 0);

    let addr = c.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "PUT /api/1/artifacts/{}/files/big HTTP/1.1\r\nHost: kiln\r\nAuthorization: Token {token}\r\n\
         Content-Length: {}\r\n\r\n",
        a.id,
        content.len()
    );
    conn.write_all(head.as_bytes()).await.expect("send the head");
    conn.write_all(&content[..100_000]).await.expect("send part of the body");
    conn.flush().await.expect("flush");
    let started = wait_for(Duration::from_secs(5), || async { (entries(&tmp) > 0).then_some(()) }).await;
    assert!(started.is_some(), "the upload is being received into {}", tmp.display());
    drop(conn); // the agent died mid-upload

    let cleaned = wait_for(Duration::from_secs(5), || async { (entries(&tmp) == 0).then_some(()) }).await;
    assert!(cleaned.is_some(), "an interrupted upload left {} file(s) in {}", entries(&tmp), tmp.display());
    assert_eq!(user.artifact(a.id).await.expect("get").state, ArtifactState::Incomplete);
    user.upload_file(a.id, "big", content.clone()).await.expect("a second try succeeds");
    assert_eq!(download(&user, a.id, "big").await, content);
}

#[tokio::test]
async fn an_empty_file_is_complete_at_once() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let only_empty = declare("test:files", json!({}), vec![spec("empty", b"")]);
    let a = user.create_artifact(&only_empty).await.expect("create");
    assert_eq!(a.state, ArtifactState::Complete);
    assert_eq!(file(&a, "empty").sha256, EMPTY_SHA256);
    let resp = user.download_file(a.id, "empty").await.expect("download");
    assert_eq!(resp.content_length(), Some(0));
    assert!(resp.bytes().await.expect("body").is_empty());
    assert_eq!(user.upload_file(a.id, "empty", Vec::new()).await.expect("re-upload").state, ArtifactState::Complete);

    let mixed = declare("test:files", json!({}), vec![spec("empty", b""), spec("full", b"full")]);
    let b = user.create_artifact(&mixed).await.expect("create");
    assert_eq!(b.state, ArtifactState::Incomplete);
    assert!(file(&b, "empty").complete && !file(&b, "full").complete);
    assert_eq!(user.upload_file(b.id, "full", "full").await.expect("upload").state, ArtifactState::Complete);

    let no_files = user.create_artifact(&declare("test:files", json!({"note": "x"}), vec![])).await.expect("create");
    assert_eq!(no_files.state, ArtifactState::Complete, "an artifact without files is complete");
}

#[tokio::test]
async fn a_declaration_no_upload_can_satisfy_is_refused() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let zero_with_data_hash = FileSpec { path: "a".into(), size: 0, sha256: sha256_hex(b"data") };
    let msg = expect_api_error(
        user.create_artifact(&declare("test:files", json!({}), vec![zero_with_data_hash])).await,
        400,
        "invalid-sha256",
    );
    assert!(msg.contains("\"a\""), "names the file: {msg}");
    let sized_with_empty_hash = FileSpec { path: "b".into(), size: 10, sha256: EMPTY_SHA256.into() };
    expect_api_error(
        user.create_artifact(&declare("test:files", json!({}), vec![sized_with_empty_hash])).await,
        400,
        "invalid-sha256",
    );
    assert!(user.artifacts(&[]).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn lists_filter_by_category_and_data_newest_first() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let tarball = "kiln:system-tarball";
    let mut made = Vec::new();
    for (category, data) in [
        (tarball, json!({"codename": "bookworm", "architecture": "amd64", "signed": true, "version": 3})),
        (tarball, json!({"codename": "bookworm", "architecture": "arm64", "signed": false, "version": 4})),
        (tarball, json!({"codename": "trixie", "architecture": "amd64", "signed": true, "version": 3})),
        ("kiln:system-image", json!({"codename": "bookworm", "architecture": "amd64", "signed": true, "version": 3.5})),
        ("test:other", json!({"codename": "bookworm", "kiln:variant": "buildd", "backends": ["unshare"]})),
    ] {
        made.push(user.create_artifact(&declare(category, data, vec![])).await.expect("create").id);
    }
    let [a1, a2, a3, a4, a5] = made[..] else { panic!("five artifacts") };
    let cases: Vec<(Query, Vec<i64>)> = vec![
        (vec![], vec![a5, a4, a3, a2, a1]),
        (vec![("category", tarball)], vec![a3, a2, a1]),
        (vec![("codename", "bookworm"), ("architecture", "amd64")], vec![a4, a1]),
        (vec![("category", tarball), ("codename", "bookworm"), ("architecture", "amd64")], vec![a1]),
        (vec![("signed", "true")], vec![a4, a3, a1]),
        (vec![("signed", "false")], vec![a2]),
        (vec![("category", tarball), ("signed", "true")], vec![a3, a1]),
        (vec![("version", "3")], vec![a3, a1]),
        (vec![("version", "3.5")], vec![a4]),
        (vec![("version", "4"), ("signed", "false")], vec![a2]),
        (vec![("kiln:variant", "buildd")], vec![a5]),
        (vec![("codename", "sid")], vec![]),
        (vec![("no-such-key", "x")], vec![]),
        (vec![("category", "kiln:nothing")], vec![]),
    ];
    for (query, expected) in cases {
        let page = user.artifacts(&query).await.unwrap_or_else(|e| panic!("list {query:?}: {e}"));
        assert_eq!(ids(&page.items), expected, "?{query:?}");
        assert_eq!(page.next, None, "?{query:?}: one page holds all");
    }
    let worker = enrolled_worker(&c, "builder-01", amd64_metadata()).await;
    let seen = worker.artifacts(&[("category", tarball), ("codename", "bookworm")]).await.expect("a worker lists");
    assert_eq!(ids(&seen.items), vec![a2, a1]);
    let resp = user.request(Method::GET, "/api/1/artifacts?a%22b=1").send().await.expect("list");
    kiln_tests::expect_error_reply(resp, 400, "invalid-query").await;
}

#[tokio::test]
async fn cursor_pagination_covers_every_artifact_exactly_once() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let mut wanted = Vec::new();
    for n in 0..11 {
        let paged = declare("test:page", json!({"batch": "b1", "n": n}), vec![]);
        wanted.push(user.create_artifact(&paged).await.expect("create").id);
        // Noise the filters must skip, between the wanted ones.
        user.create_artifact(&declare("test:noise", json!({"batch": "b1"}), vec![])).await.expect("create");
        if n % 3 == 0 {
            user.create_artifact(&declare("test:page", json!({"batch": "b2"}), vec![])).await.expect("create");
        }
    }
    wanted.reverse(); // newest first
    for limit in ["1", "3", "4", "11", "500"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut query = vec![("category", "test:page"), ("batch", "b1"), ("limit", limit)];
            if let Some(cur) = cursor.as_deref() {
                query.push(("cursor", cur));
            }
            let page = user.artifacts(&query).await.expect("list a page");
            assert!(page.items.len() <= limit.parse().expect("number"), "limit {limit} holds");
            seen.extend(ids(&page.items));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "limit {limit}: the pages end");
        assert_eq!(seen, wanted, "limit {limit}: every artifact once, newest first");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "no artifact twice");
    }
}

#[tokio::test]
async fn a_worker_reads_only_the_artifacts_its_running_work_needs() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let a = enrolled_worker(&c, "worker-a", amd64_metadata()).await;
    let b = enrolled_worker(&c, "worker-b", amd64_metadata()).await;
    let rootfs = pseudo_random(200_000, 3);
    let env = declare(
        "kiln:system-tarball",
        json!({"codename": "bookworm", "architecture": "amd64", "variant": "minbase", "backends": ["unshare"]}),
        vec![spec("system.tar.xz", &rootfs)],
    );
    let env = user.create_artifact(&env).await.expect("create the environment");
    user.upload_file(env.id, "system.tar.xz", rootfs.clone()).await.expect("upload the environment");
    let secret = user.create_artifact(&declare("test:secret", json!({}), vec![spec("s", b"s")])).await.expect("create");
    user.upload_file(secret.id, "s", "s").await.expect("upload");

    expect_api_error(a.artifact(env.id).await, 403, "forbidden");
    let data = json!({"environment": env.id, "backend": "unshare", "command": ["true"]});
    let wr = user.create_work_request(&with_data(request(TaskType::Worker, "command"), data)).await.expect("create");
    let got = take(&a).await;
    assert_eq!(got.id, wr.id);

    assert_eq!(a.artifact(env.id).await.expect("the environment of its task").id, env.id);
    assert_eq!(download(&a, env.id, "system.tar.xz").await, rootfs);
    let msg = expect_api_error(a.artifact(secret.id).await, 403, "forbidden");
    assert!(msg.contains(&secret.id.to_string()), "names the artifact: {msg}");
    expect_api_error(a.download_file(secret.id, "s").await, 403, "forbidden");
    expect_api_error(b.artifact(env.id).await, 403, "forbidden");
    expect_api_error(b.download_file(env.id, "system.tar.xz").await, 403, "forbidden");
    expect_api_error(a.upload_file(env.id, "system.tar.xz", rootfs.clone()).await, 403, "forbidden");

    // The worker publishes its output for its own request, and only there.
    let log = b"build log\n".to_vec();
    let output =
        NewArtifact { work_request: Some(wr.id), ..declare("kiln:log", json!({}), vec![spec("log.txt", &log)]) };
    expect_api_error(b.create_artifact(&output).await, 403, "forbidden");
    let made = a.create_artifact(&output).await.expect("a worker creates its output");
    assert_eq!(made.created_by.as_deref(), Some("worker/worker-a"));
    assert_eq!(a.upload_file(made.id, "log.txt", log.clone()).await.expect("upload").state, ArtifactState::Complete);
    expect_api_error(b.artifact(made.id).await, 403, "forbidden");
    assert_eq!(download(&user, made.id, "log.txt").await, log);

    a.complete(wr.id, &Completion { result: WorkResult::Success, attempt: Some(got.attempt), output_data: None })
        .await
        .expect("complete");
    expect_api_error(a.artifact(env.id).await, 403, "forbidden");
    assert_eq!(a.artifact(made.id).await.expect("its own artifact").id, made.id);
}

#[tokio::test]
async fn concurrent_uploads_of_one_file_both_succeed() {
    let c = Coordinator::start();
    let user = c.user("alice");
    let content = pseudo_random(2 << 20, 13);
    let a = user.create_artifact(&declare("test:files", json!({}), vec![spec("f", &content)])).await.expect("create");
    let first = user.upload_file(a.id, "f", streamed(&content, 32 << 10));
    let second = user.upload_file(a.id, "f", streamed(&content, 32 << 10));
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.expect("first upload").state, ArtifactState::Complete);
    assert_eq!(second.expect("second upload").state, ArtifactState::Complete);
    assert_eq!(download(&user, a.id, "f").await, content);
}
