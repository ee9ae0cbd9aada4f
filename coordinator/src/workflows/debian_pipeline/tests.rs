//! The pipeline's stages against an in-memory context whose children the
//! tests finish by hand (the store-backed runs are in tests/tests/).

use super::*;
use crate::store::signing::SigningKey;
use crate::workflows::lookup::fake::FakeLookup;
use crate::workflows::sbuild::tests::lookup;
use crate::workflows::WorkflowInfo;
use kiln_shared::{WorkResult, WorkStatus};

const KEY: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

struct Ctx {
    info: WorkflowInfo,
    children: Vec<(ChildSpec, ChildInfo)>,
    lookup: FakeLookup,
}

impl Ctx {
    fn new(data: Value, workflow_data: Value, lookup: FakeLookup) -> Self {
        let info = WorkflowInfo {
            id: 1,
            task_name: "debian_pipeline".into(),
            task_data: map(data),
            workflow_data: map(workflow_data),
            priority: 0,
            created_by: Some("alice".into()),
        };
        Ctx { info, children: Vec::new(), lookup }
    }

    fn steps(&self) -> Vec<&str> {
        self.children.iter().map(|(s, _)| s.step.as_str()).collect()
    }

    fn spec(&self, step: &str) -> &ChildSpec {
        &self.children.iter().find(|(s, _)| s.step == step).unwrap_or_else(|| panic!("no step {step}")).0
    }

    fn finish(&mut self, step: &str, result: WorkResult, output: Value) {
        let (_, info) = self.children.iter_mut().find(|(s, _)| s.step == step).unwrap_or_else(|| panic!("{step}"));
        info.status = WorkStatus::Completed;
        info.result = Some(result);
        info.output_data = map(output);
    }
}

impl WorkflowContext for Ctx {
    fn workflow(&self) -> &WorkflowInfo {
        &self.info
    }
    fn children(&mut self) -> Result<Vec<ChildInfo>, WorkflowError> {
        Ok(self.children.iter().map(|(_, c)| c.clone()).collect())
    }
    fn ensure_child(&mut self, spec: ChildSpec) -> Result<i64, WorkflowError> {
        if let Some((_, c)) = self.children.iter().find(|(s, _)| s.step == spec.step) {
            return Ok(c.id);
        }
        // What the store checks too: the registry accepts the child.
        if let Err(e) = tasks::validate(spec.task_type, &spec.task_name, &spec.task_data) {
            if e.code != "unknown-task" {
                return Err(WorkflowError::Child { step: spec.step, source: e });
            }
        }
        let info = ChildInfo {
            id: 100 + self.children.len() as i64,
            step: Some(spec.step.clone()),
            task_type: spec.task_type,
            task_name: spec.task_name.clone(),
            status: WorkStatus::Blocked,
            result: None,
            task_data: spec.task_data.clone(),
            output_data: Map::new(),
        };
        let id = info.id;
        self.children.push((spec, info));
        Ok(id)
    }
    fn lookup(&self) -> &dyn Lookup {
        &self.lookup
    }
}

fn data(extra: Value) -> Value {
    let mut d = json!({"source_artifact": 1, "vendor": "debian", "codename": "bookworm",
                       "architectures": ["amd64", "arm64", "all"]});
    for (k, v) in map(extra) {
        d[k] = v;
    }
    d
}

fn key(users: &[&str], templates: &[&str]) -> SigningKey {
    SigningKey {
        fingerprint: KEY.into(),
        purpose: "openpgp".into(),
        description: String::new(),
        public_key_artifact: None,
        worker: None,
        users: users.iter().map(|u| (*u).to_owned()).collect(),
        workflow_templates: templates.iter().map(|t| (*t).to_owned()).collect(),
        revoked: false,
        created_at: chrono::Utc::now(),
    }
}

fn built_ok(ctx: &mut Ctx) {
    ctx.finish("sbuild-amd64", WorkResult::Success, json!({"binary_packages": [21], "upload": 22}));
    ctx.finish("sbuild-arm64", WorkResult::Success, json!({"binary_packages": [31], "upload": 32}));
    ctx.finish("sbuild-all", WorkResult::Success, json!({"binary_packages": [41], "upload": 42}));
}

#[test]
fn builds_then_tests_on_what_was_built_then_signs_then_waits_for_approval() {
    let mut l = lookup("any all");
    l.keys.push(key(&["alice"], &[]));
    let d = data(json!({"signing_key": KEY.to_lowercase(), "require_approval": true}));
    let mut ctx = Ctx::new(d, json!({"workflow_template": "release"}), l);
    DebianPipeline.populate(&mut ctx).expect("populate");
    DebianPipeline.populate(&mut ctx).expect("again: idempotent");
    assert_eq!(ctx.steps(), ["sbuild-amd64", "sbuild-arm64", "sbuild-all", "test-restrictions", "after-build"]);
    assert_eq!(ctx.spec("after-build").dependencies, vec![100, 101, 102, 103]);
    assert_eq!(ctx.spec("sbuild-all").task_data.get("build_components"), Some(&json!(["all"])));
    assert!(ctx.children.iter().all(|(s, _)| s.workflow_data.get("display_name").is_some_and(Value::is_string)));

    built_ok(&mut ctx);
    ctx.finish("test-restrictions", WorkResult::Success, json!({"needs": "container", "restrictions": []}));
    DebianPipeline.callback(&mut ctx, "after-build").expect("after-build");
    let lintian = &ctx.spec("lintian").task_data;
    assert_eq!(lintian["input"]["binary_artifacts"], json!([21, 31, 41]));
    assert_eq!(lintian["environment"], json!(3), "linted where arch:all was built");
    let amd64 = &ctx.spec("autopkgtest-amd64").task_data;
    assert_eq!(
        (amd64["input"]["binary_artifacts"].clone(), amd64["backend"].clone()),
        (json!([21, 41]), json!("unshare"))
    );
    assert_eq!(ctx.spec("autopkgtest-arm64").task_data["environment"], json!(4));
    assert!(!ctx.steps().contains(&"autopkgtest-all"), "arch:all is tested with each architecture");
    assert_eq!(ctx.spec("after-tests").dependencies.len(), 3);

    for step in ["lintian", "autopkgtest-amd64", "autopkgtest-arm64"] {
        ctx.finish(step, WorkResult::Success, json!({}));
    }
    DebianPipeline.callback(&mut ctx, "after-tests").expect("after-tests");
    assert_eq!(ctx.spec("debsign-all").task_data, map(json!({"key": KEY, "unsigned": 42})));
    assert_eq!(ctx.spec("debsign-amd64").task_type, TaskType::Signing);
    assert!(!ctx.steps().contains(&"approval"), "approval comes after signing");

    for step in ["debsign-amd64", "debsign-arm64", "debsign-all"] {
        ctx.finish(step, WorkResult::Success, json!({}));
    }
    DebianPipeline.callback(&mut ctx, "after-signing").expect("after-signing");
    let approval = ctx.spec("approval");
    assert_eq!((approval.task_type, approval.task_name.as_str()), (TaskType::Wait, "external_approval"));
}

#[test]
fn a_failed_build_fails_the_stage_and_creates_nothing_more() {
    let mut ctx = Ctx::new(data(json!({})), json!({}), lookup("any all"));
    DebianPipeline.populate(&mut ctx).expect("populate");
    built_ok(&mut ctx);
    ctx.finish("sbuild-arm64", WorkResult::Failure, json!({"build_status": "failed"}));
    ctx.finish("test-restrictions", WorkResult::Success, json!({"needs": null}));
    let err = DebianPipeline.callback(&mut ctx, "after-build").expect_err("failed build");
    assert!(matches!(err, WorkflowError::StageFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("sbuild-arm64") && err.to_string().contains("kiln logs 101"), "{err}");
    assert!(!ctx.steps().contains(&"lintian"));
}

#[test]
fn auto_resolves_within_the_allowed_backends_or_fails_clearly() {
    let run = |needs: Value, allowed: Value| {
        let mut ctx = Ctx::new(data(json!({"enable_lintian": false})), allowed, lookup("any all"));
        DebianPipeline.populate(&mut ctx).expect("populate");
        built_ok(&mut ctx);
        ctx.finish(
            "test-restrictions",
            WorkResult::Success,
            json!({"needs": needs, "restrictions": ["isolation-machine"]}),
        );
        DebianPipeline
            .callback(&mut ctx, "after-build")
            .map(|()| ctx.spec("autopkgtest-amd64").task_data["backend"].clone())
    };
    let backend = run(json!(null), json!({"allowed": {"autopkgtest_backend": ["incus-lxc", "unshare"]}}));
    assert_eq!(backend.expect("unshare"), json!("unshare"));
    let err = run(json!("machine"), json!({})).expect_err("no machine backend runs autopkgtest");
    assert!(err.to_string().contains("need a machine") && err.to_string().contains("qemu"), "{err}");
    let err = run(json!(null), json!({"allowed": {"autopkgtest_backend": ["incus-lxc"]}})).expect_err("not allowed");
    assert!(err.to_string().contains("allows incus-lxc"), "{err}");
}

#[test]
fn without_tests_signing_or_approval_the_builds_are_the_whole_pipeline() {
    let d = data(json!({"enable_lintian": false, "enable_autopkgtest": false, "architectures": ["amd64"]}));
    let mut ctx = Ctx::new(d, json!({}), lookup("any"));
    DebianPipeline.populate(&mut ctx).expect("populate");
    assert_eq!(ctx.steps(), ["sbuild-amd64", "after-build"]);
    ctx.finish("sbuild-amd64", WorkResult::Success, json!({"binary_packages": [5], "upload": 6}));
    DebianPipeline.callback(&mut ctx, "after-build").expect("after-build");
    assert_eq!(ctx.steps(), ["sbuild-amd64", "after-build"]);
}

#[test]
fn a_key_revoked_after_submission_signs_nothing() {
    let mut l = lookup("any");
    l.keys.push(key(&["alice"], &[]));
    let d = data(json!({"architectures": ["amd64"], "enable_lintian": false, "enable_autopkgtest": false,
                        "signing_key": KEY}));
    let mut ctx = Ctx::new(d, json!({}), l);
    DebianPipeline.populate(&mut ctx).expect("populate");
    ctx.finish("sbuild-amd64", WorkResult::Success, json!({"binary_packages": [5], "upload": 6}));
    ctx.lookup.keys[0].revoked = true;
    let err = DebianPipeline.callback(&mut ctx, "after-build").expect_err("revoked");
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(!ctx.steps().contains(&"debsign-amd64"));
}

#[test]
fn signing_keys_are_checked_at_submission() {
    let d = map(data(json!({"signing_key": KEY})));
    let alice = Submitter { user: "alice".into(), template: Some("release".into()) };
    let err = DebianPipeline.check_submission(&d, &alice, &lookup("any")).expect_err("no such key");
    assert_eq!(err.key(), Some("signing_key"));
    let mut l = lookup("any");
    l.keys.push(key(&["bob"], &["other"]));
    let err = DebianPipeline.check_submission(&d, &alice, &l).expect_err("not on the list");
    assert!(matches!(err, WorkflowError::Forbidden { .. }), "{err:?}");
    l.keys[0].workflow_templates.push("release".into());
    DebianPipeline.check_submission(&d, &alice, &l).expect("the template may");
    l.keys[0].revoked = true;
    assert!(matches!(DebianPipeline.check_submission(&d, &alice, &l), Err(WorkflowError::Forbidden { .. })));
}

#[test]
fn refuses_bad_input_naming_the_key() {
    for (extra, key) in [
        (json!({"autopkgtest_backend": "qemu"}), "autopkgtest_backend"),
        (json!({"signing_key": "xyz"}), "signing_key"),
        (json!({"lintian_fail_on_severity": "fatal"}), "lintian_fail_on_severity"),
        (json!({"architectures": []}), "architectures"),
        (json!({"colour": "red"}), "task_data"),
    ] {
        let err = DebianPipeline.validate(&map(data(extra.clone()))).expect_err(&extra.to_string());
        assert_eq!(err.key(), Some(key), "{err}");
    }
    let submitter = Submitter { user: "alice".into(), template: None };
    let err =
        DebianPipeline.check_submission(&map(data(json!({"architectures": ["i386"]}))), &submitter, &lookup("any"));
    assert!(err.expect_err("no i386 environment").to_string().contains("no environment for i386"));
}
