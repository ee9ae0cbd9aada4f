//! Every write the API acknowledged survives `kill -9` of the coordinator.

use kiln_shared::artifact::{FileSpec, NewArtifact};
use kiln_shared::work::LogLine;
use kiln_shared::{WorkResult, WorkStatus};
use kiln_tests::work::{finish, noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, obj, Coordinator};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_under_load() {
    let mut c = Coordinator::start();
    let user = c.user("alice");
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    // Writers keep creating until the coordinator dies under them.
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (user, acked) = (user.clone(), acked.clone());
        writers.spawn(async move {
            while let Ok(wr) = user.create_work_request(&noop(&[])).await {
                acked.lock().expect("lock").push(wr.id);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill();
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "the load ran ({} writes)", acked.len());

    c.kill_and_restart();
    let user = c.user("bob");
    for id in &acked {
        let wr = user.work_request(*id).await.expect("every acknowledged request is still there");
        assert_eq!(wr.status, WorkStatus::Pending);
    }
    // And the scheduler's index was rebuilt from the store.
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let got = take(&worker).await;
    assert_eq!(got.id, *acked.iter().min().expect("some"), "oldest pending first after restart");
}

#[tokio::test]
async fn state_logs_and_files_survive_kill_9() {
    let mut c = Coordinator::start();
    let user = c.user("alice");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    let a = user.create_work_request(&noop(&[])).await.expect("a");
    let b = user.create_work_request(&noop(&[a.id])).await.expect("b");
    let got = take(&worker).await;
    let line = LogLine {
        seq: 1,
        ts: chrono::Utc::now(),
        stream: kiln_shared::work::LogStream::Stdout,
        text: "kept".into(),
        attempt: None,
    };
    worker.append_log(a.id, got.attempt, &[line]).await.expect("log");
    finish(&worker, &got, WorkResult::Success).await;
    let bytes = b"durable bytes".to_vec();
    let sha = hex::encode(Sha256::digest(&bytes));
    let art = user
        .create_artifact(&NewArtifact {
            category: "kiln:test".into(),
            data: obj(json!({"k": "v"})),
            files: vec![FileSpec { path: "f.txt".into(), size: bytes.len() as u64, sha256: sha }],
            work_request: None,
        })
        .await
        .expect("artifact");
    user.upload_file(art.id, "f.txt", bytes.clone()).await.expect("upload");
    c.kill_and_restart();

    let user = c.user("bob");
    let a = user.work_request(a.id).await.expect("a");
    assert_eq!((a.status, a.result), (WorkStatus::Completed, Some(WorkResult::Success)));
    assert_eq!(user.work_request(b.id).await.expect("b").status, WorkStatus::Pending);
    let log = user.log(a.id, false).await.expect("log").text().await.expect("text");
    assert!(log.contains("kept"));
    let downloaded = user.download_file(art.id, "f.txt").await.expect("download").bytes().await.expect("bytes");
    assert_eq!(downloaded.as_ref(), bytes.as_slice());
    // The worker's token survived too.
    assert_eq!(take(&worker).await.id, b.id);
}
