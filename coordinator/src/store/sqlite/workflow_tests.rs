//! Store-level tests of workflows: populate, callbacks, leases, failures,
//! retry delays, runtime status and a large fan-in.

use super::SqliteStore;
use crate::store::workflow::{CoordinatorTaskStore, JobKind, WorkflowStore};
use crate::store::{CompletionArgs, Effects, NewWork, WorkFilter, WorkStore};
use crate::workflows::{self, ChildSpec, Orchestrator, WorkflowContext, WorkflowError};
use kiln_shared::work::WorkRequest;
use kiln_shared::{TaskType, WorkResult, WorkStatus};
use serde_json::{json, Map, Value};

fn work(task_type: TaskType, name: &str, data: Value) -> NewWork {
    let data = data.as_object().cloned().unwrap_or_default();
    let requirements = crate::tasks::validate(task_type, name, &data).expect("valid").requirements;
    NewWork {
        task_type,
        task_name: name.into(),
        task_data: data,
        workflow_data: crate::tasks::workflow_data(task_type, name, Map::new()).unwrap_or_default(),
        dependencies: Vec::new(),
        parent: None,
        priority: 0,
        priority_adjustment: 0,
        created_by: "alice".into(),
        requirements,
        max_retries: 3,
    }
}

fn get(store: &SqliteStore, id: i64) -> WorkRequest {
    store.work_request(id).expect("read").expect("exists")
}

fn children(store: &SqliteStore, parent: i64) -> Vec<WorkRequest> {
    let filter = WorkFilter { parent: Some(parent), limit: 10_000, ..Default::default() };
    let mut all = store.list_work_requests(&filter).expect("list");
    all.reverse();
    all
}

/// Run every orchestration job there is, as the runner would.
fn orchestrate_all(store: &SqliteStore) -> Effects {
    let mut all = Effects::default();
    loop {
        let jobs = store.orchestration_jobs(100).expect("jobs");
        if jobs.is_empty() {
            return all;
        }
        for job in jobs {
            assert!(store.begin_orchestration(&job, "t", chrono::Utc::now()).expect("begin"));
            let orchestrator = workflows::orchestrator(&job.workflow_name).expect("known");
            all.merge(store.run_orchestration(&job, "t", orchestrator).expect("run"));
        }
    }
}

/// Take every pending worker request and complete it with `result`.
fn run_workers(store: &SqliteStore, ids: &[i64], result: WorkResult) {
    for id in ids {
        let got = store.assign(*id, "w", chrono::Utc::now()).expect("assign").expect("was pending");
        let args =
            CompletionArgs { worker: Some("w".into()), attempt: Some(got.attempt), result, output_data: Map::new() };
        store.complete(*id, args).expect("complete");
    }
}

fn noop_matrix(n: usize) -> Value {
    let targets: Vec<Value> = (0..n).map(|_| json!({"architecture": "amd64"})).collect();
    json!({"task": "noop", "targets": targets})
}

#[test]
fn a_matrix_populates_once_and_finishes_after_its_summary() {
    let store = SqliteStore::in_memory().expect("store");
    let (wf, effects) = store.create_work_request(work(TaskType::Workflow, "matrix", noop_matrix(3))).expect("create");
    assert_eq!((wf.status, effects.coordinator.clone()), (WorkStatus::Running, vec![wf.id]));
    let effects = orchestrate_all(&store);
    assert_eq!(effects.pending.len(), 3, "the targets are pending at once");
    let kids = children(&store, wf.id);
    assert_eq!(kids.len(), 5);
    assert_eq!(kids[3].status, WorkStatus::Blocked, "the sync point waits");
    // A callback runs populate again: nothing new, and the callback is done.
    let mut callback = work(TaskType::Internal, "workflow", json!({}));
    callback.parent = Some(wf.id);
    callback.workflow_data = json!({"step": "again"}).as_object().cloned().unwrap_or_default();
    let (callback, _) = store.create_work_request(callback).expect("callback");
    assert_eq!(callback.status, WorkStatus::Pending);
    let jobs = store.orchestration_jobs(10).expect("jobs");
    assert_eq!(jobs[0].kind, JobKind::Callback { callback: callback.id, step: "again".into() });
    orchestrate_all(&store);
    assert_eq!(children(&store, wf.id).len(), 6, "idempotent: only the callback was added");
    assert_eq!(get(&store, callback.id).result, Some(WorkResult::Success));
    run_workers(&store, &[kids[0].id, kids[1].id], WorkResult::Success);
    run_workers(&store, &[kids[2].id], WorkResult::Failure);
    assert_eq!(get(&store, kids[3].id).result, Some(WorkResult::Success), "targets tolerate failure");
    let aggregate = get(&store, kids[4].id);
    assert_eq!((aggregate.task_type, aggregate.status), (TaskType::Server, WorkStatus::Pending));
    assert_eq!(store.pending_server_tasks(10).expect("server tasks"), vec![aggregate.id]);
    let claimed = store.claim_server_task(aggregate.id, chrono::Utc::now()).expect("claim").expect("claimed");
    let args = CompletionArgs {
        worker: None,
        attempt: Some(claimed.attempt),
        result: WorkResult::Failure,
        output_data: Map::new(),
    };
    store.complete(aggregate.id, args).expect("complete");
    let wf = get(&store, wf.id);
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Failure)));
    assert_eq!(wf.workflow_runtime_status.as_deref(), Some("completed"));
}

#[test]
fn an_empty_workflow_completes_at_populate() {
    let store = SqliteStore::in_memory().expect("store");
    let (wf, _) = store.create_work_request(work(TaskType::Workflow, "noop", json!({}))).expect("create");
    assert_eq!(get(&store, wf.id).workflow_runtime_status.as_deref(), Some("running"));
    orchestrate_all(&store);
    let wf = get(&store, wf.id);
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Success)));
}

/// Creates two children, then fails: nothing it created may stay.
struct Failing;
impl Orchestrator for Failing {
    fn validate(&self, _: &Map<String, Value>) -> Result<(), WorkflowError> {
        Ok(())
    }
    fn populate(&self, ctx: &mut dyn WorkflowContext) -> Result<(), WorkflowError> {
        ctx.ensure_child(ChildSpec::new("a", TaskType::Worker, "noop", Map::new()))?;
        ctx.ensure_child(ChildSpec::new("b", TaskType::Worker, "frobnicate", Map::new()))?;
        Ok(())
    }
}

#[test]
fn an_orchestrator_error_rolls_its_children_back_and_ends_the_workflow_in_error() {
    let store = SqliteStore::in_memory().expect("store");
    let (wf, _) = store.create_work_request(work(TaskType::Workflow, "noop", json!({}))).expect("create");
    let job = store.orchestration_jobs(10).expect("jobs").remove(0);
    assert!(store.begin_orchestration(&job, "t", chrono::Utc::now()).expect("begin"));
    let effects = store.run_orchestration(&job, "t", &Failing).expect("run");
    assert!(effects.pending.is_empty(), "the rolled-back child is not announced");
    assert!(children(&store, wf.id).is_empty());
    let wf = get(&store, wf.id);
    assert_eq!((wf.status, wf.result), (WorkStatus::Completed, Some(WorkResult::Error)));
    let message = wf.output_data["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("frobnicate"), "{message}");
}

#[test]
fn one_orchestration_per_root_at_a_time() {
    let store = SqliteStore::in_memory().expect("store");
    let (wf, _) = store.create_work_request(work(TaskType::Workflow, "noop", json!({}))).expect("create");
    let mut sub = work(TaskType::Workflow, "noop", json!({}));
    sub.parent = Some(wf.id);
    let (sub, _) = store.create_work_request(sub).expect("sub-workflow");
    let jobs = store.orchestration_jobs(10).expect("jobs");
    assert_eq!(jobs.iter().map(|j| (j.workflow, j.root)).collect::<Vec<_>>(), vec![(wf.id, wf.id), (sub.id, wf.id)]);
    let now = chrono::Utc::now();
    assert!(store.begin_orchestration(&jobs[0], "first", now).expect("begin"));
    assert!(!store.begin_orchestration(&jobs[1], "second", now).expect("begin"), "same root: refused");
    store.run_orchestration(&jobs[0], "first", &workflows::noop::Noop).expect("run");
    assert!(store.begin_orchestration(&jobs[1], "second", now).expect("begin"), "free again");
    // An expired lease is taken over.
    let later = now + chrono::Duration::seconds(600);
    assert!(store.begin_orchestration(&jobs[1], "third", later).expect("begin"));
}

#[test]
fn retry_delays_hold_the_next_attempt_behind_a_delay() {
    let store = SqliteStore::in_memory().expect("store");
    let mut new = work(TaskType::Worker, "noop", json!({}));
    new.workflow_data = json!({"retry_delays": [0]}).as_object().cloned().unwrap_or_default();
    let (a, _) = store.create_work_request(new).expect("create");
    let got = store.assign(a.id, "w", chrono::Utc::now()).expect("assign").expect("pending");
    let args = CompletionArgs {
        worker: Some("w".into()),
        attempt: Some(got.attempt),
        result: WorkResult::Error,
        output_data: Map::new(),
    };
    let (after, effects) = store.complete(a.id, args).expect("complete");
    assert_eq!((after.status, after.attempt), (WorkStatus::Blocked, 2));
    assert!(effects.pending.is_empty(), "not before the delay");
    let delay = *after.dependencies.last().expect("a delay dependency");
    let d = get(&store, delay);
    assert_eq!((d.task_type, d.task_name.as_str(), d.status), (TaskType::Wait, "delay", WorkStatus::Running));
    let due = store.due_delays(chrono::Utc::now() + chrono::Duration::seconds(1)).expect("due");
    assert_eq!(due, vec![delay]);
    let args = CompletionArgs { worker: None, attempt: None, result: WorkResult::Success, output_data: Map::new() };
    let (_, effects) = store.complete(delay, args).expect("delay over");
    assert_eq!(effects.pending.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a.id]);
}

#[test]
fn runtime_status_sees_a_person_must_act_and_children_inherit_priority() {
    let store = SqliteStore::in_memory().expect("store");
    let mut root = work(TaskType::Workflow, "noop", json!({}));
    (root.priority, root.priority_adjustment) = (10, -3);
    let (wf, _) = store.create_work_request(root).expect("create");
    let mut approval = work(TaskType::Wait, "external_approval", json!({}));
    (approval.parent, approval.priority) = (Some(wf.id), 2);
    let (approval, _) = store.create_work_request(approval).expect("approval");
    assert_eq!((approval.status, approval.priority_base), (WorkStatus::Running, 9));
    assert_eq!(get(&store, wf.id).workflow_runtime_status.as_deref(), Some("needs_input"));
    let mut delay = work(TaskType::Wait, "delay", json!({"delay_until": "2999-01-01T00:00:00Z"}));
    delay.parent = Some(wf.id);
    store.create_work_request(delay).expect("delay");
    let args = CompletionArgs { worker: None, attempt: None, result: WorkResult::Success, output_data: Map::new() };
    store.complete(approval.id, args).expect("approve");
    assert_eq!(get(&store, wf.id).workflow_runtime_status.as_deref(), Some("waiting"));
    assert!(store.next_wake().expect("next").is_some());
}

#[test]
fn a_wide_fan_in_finishes_without_rereading_every_dependency() {
    let store = SqliteStore::in_memory().expect("store");
    let n = 3000;
    let (wf, _) = store.create_work_request(work(TaskType::Workflow, "matrix", noop_matrix(n))).expect("create");
    orchestrate_all(&store);
    let kids = children(&store, wf.id);
    let started = std::time::Instant::now();
    run_workers(&store, &kids[..n].iter().map(|k| k.id).collect::<Vec<_>>(), WorkResult::Success);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(get(&store, kids[n].id).status, WorkStatus::Completed, "sync point done");
    assert_eq!(get(&store, kids[n + 1].id).status, WorkStatus::Pending, "aggregate ready");
}
