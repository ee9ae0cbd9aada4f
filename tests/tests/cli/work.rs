//! Work request verbs: submit (and --wait with its exit codes), wait, show,
//! list, abort, retry, depend, complete.

use crate::support::{id, output, Kiln};
use kiln_shared::work::WorkRequest;
use kiln_shared::{WorkResult, WorkStatus};
use kiln_tests::work::{finish, noop, take};
use kiln_tests::{amd64_metadata, enrolled_worker, Coordinator};
use serde_json::Value;

fn ids(list: &Value) -> Vec<i64> {
    list["items"].as_array().expect("items").iter().map(id).collect()
}

#[tokio::test]
async fn submit_show_list_depend_abort_retry() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "alice");
    let a = k.json(&["submit", "worker", "noop"]).await;
    assert_eq!((a["status"].as_str(), a["created_by"].as_str()), (Some("pending"), Some("alice")));
    let a = id(&a);
    let human = k.run(&["submit", "worker", "noop", "--data", r#"{"host_architecture": "arm64"}"#]).await.ok();
    assert!(human.stdout.starts_with("created work request "), "{}", human.stdout);
    let b: i64 = human.stdout["created work request ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("id in the message");

    let shown = k.run(&["show", &b.to_string()]).await.ok().stdout;
    assert!(shown.contains("pending") && shown.contains("arm64") && shown.contains("worker noop"), "{shown}");
    assert_eq!(k.json(&["show", &a.to_string()]).await["task_name"], "noop");

    let table = k.run(&["list"]).await.ok().stdout;
    let header = table.lines().next().expect("header");
    assert!(header.starts_with("ID") && header.contains("STATUS"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert_eq!(ids(&k.json(&["list", "--status", "pending"]).await), vec![b, a]);
    assert_eq!(ids(&k.json(&["list", "--status", "running"]).await), Vec::<i64>::new());
    let first = k.run(&["list", "--limit", "1"]).await.ok();
    assert!(first.stderr.contains("--cursor"), "a hint for the next page: {}", first.stderr);
    let all = k.json(&["list", "--limit", "1", "--all"]).await;
    assert_eq!((ids(&all), all["next"].clone()), (vec![b, a], Value::Null));

    // b waits for a; aborting a cascades to b; retrying a restores b.
    let dep = k.json(&["depend", &b.to_string(), "--on", &a.to_string()]).await;
    assert_eq!((dep["status"].as_str(), dep["dependencies"].clone()), (Some("blocked"), serde_json::json!([a])));
    let aborted = k.json(&["abort", &a.to_string()]).await;
    assert_eq!(aborted["status"], "aborted");
    assert_eq!(k.json(&["show", &b.to_string()]).await["abort_reason"], "dependency-failed");
    let retried = k.run(&["retry", &a.to_string()]).await.ok();
    assert!(retried.stdout.contains("pending (attempt 2)"), "{}", retried.stdout);
    assert_eq!(k.json(&["show", &b.to_string()]).await["status"], "blocked");
    k.run(&["retry", &a.to_string()]).await.expect_code(65).one_line_error("");

    // Another user may read but not abort; only workers complete worker tasks.
    let bob = Kiln::user(&c, "bob");
    bob.run(&["show", &a.to_string()]).await.ok();
    bob.run(&["abort", &a.to_string()]).await.expect_code(77).one_line_error("another user");
    k.run(&["complete", &a.to_string(), "--result", "success"]).await.expect_code(77).one_line_error("worker");
}

#[tokio::test]
async fn workflow_children_are_listed_by_parent() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "wf");
    // An empty noop workflow completes at populate: a gate (a noop nobody
    // takes) keeps this one open for a child added by hand.
    let gate = id(&k.json(&["submit", "worker", "noop"]).await);
    let wf = id(&k.json(&["submit", "workflow", "noop", "--dep", &gate.to_string()]).await);
    let child = id(&k.json(&["submit", "worker", "noop", "--parent", &wf.to_string()]).await);
    k.json(&["submit", "worker", "noop"]).await;
    assert_eq!(ids(&k.json(&["list", "--parent", &wf.to_string()]).await), vec![child]);
    assert_eq!(ids(&k.json(&["list", "--task-name", "noop", "--all"]).await).len(), 4);
}

/// Start `kiln ARGS` in the background (it waits for the worker).
fn spawn(k: &Kiln, args: &[&str]) -> tokio::task::JoinHandle<crate::support::Run> {
    let cmd = k.command(args);
    tokio::spawn(output(cmd))
}

/// Take the next request and end it with `result`; when it is an error,
/// keep failing the automatic retries until the request completes.
async fn run_to(worker: &kiln_shared::client::Client, result: WorkResult) -> WorkRequest {
    loop {
        let got = take(worker).await;
        let done = finish(worker, &got, result).await;
        if done.status.is_final() {
            return done;
        }
    }
}

#[tokio::test]
async fn submit_wait_exits_with_the_result_code() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "waiter");
    let worker = enrolled_worker(&c, "w1", amd64_metadata()).await;
    for (result, code) in
        [(WorkResult::Success, 0), (WorkResult::Failure, 1), (WorkResult::Error, 2), (WorkResult::Skipped, 0)]
    {
        let waiting = spawn(&k, &["submit", "worker", "noop", "--wait", "--json"]);
        let done = run_to(&worker, result).await;
        let run = waiting.await.expect("kiln").expect_code(code);
        let json = run.json();
        assert_eq!((id(&json), json["result"].as_str()), (done.id, Some(result.as_str())), "{result}");
    }

    // Human output names the outcome.
    let waiting = spawn(&k, &["submit", "worker", "noop", "--wait"]);
    let done = run_to(&worker, WorkResult::Failure).await;
    let run = waiting.await.expect("kiln").expect_code(1);
    assert!(run.stdout.contains(&format!("work request {} completed failure", done.id)), "{}", run.stdout);
}

#[tokio::test]
async fn wait_exits_3_when_aborted_and_75_on_timeout() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "w");
    let user = c.client(k.token.as_deref().expect("token"));
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    k.run(&["wait", &wr.id.to_string(), "--timeout", "1"]).await.expect_code(75).one_line_error("gave up");
    let waiting = spawn(&k, &["wait", &wr.id.to_string()]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    user.work_request_action(wr.id, "abort").await.expect("abort");
    let run = waiting.await.expect("kiln").expect_code(3);
    assert!(run.stdout.contains("aborted (user)"), "{}", run.stdout);
    // Waiting on a finished request answers at once.
    let run = k.run(&["wait", &wr.id.to_string(), "--json"]).await.expect_code(3);
    assert_eq!(run.json()["status"], WorkStatus::Aborted.as_str());
}
