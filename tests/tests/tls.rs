//! The coordinator over HTTPS with a lab's own CA (made by the real
//! `openssl`): clients that trust it (API, CLI, a real agent running work)
//! and clients that do not, plain-HTTP and stalled connections, bad
//! certificate files, and a renewed certificate loaded on SIGHUP.

use kiln_shared::client::{Client, ClientError};
use kiln_shared::WorkResult;
use kiln_tests::agent::Agent;
use kiln_tests::tls::{ServerFiles, TestCa};
use kiln_tests::work::{finished_within, noop};
use kiln_tests::{binary, kiln_cli, wait_for, Coordinator};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn tls_args(certificate: &Path, private_key: &Path) -> Vec<String> {
    vec![
        "--tls-certificate".into(),
        certificate.to_string_lossy().into_owned(),
        "--tls-private-key".into(),
        private_key.to_string_lossy().into_owned(),
    ]
}

/// A coordinator serving HTTPS with `files`; the harness's clients trust `ca`.
fn start_tls(ca: &TestCa, files: &ServerFiles) -> Coordinator {
    let args = tls_args(&files.certificate, &files.private_key);
    let mut c = Coordinator::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    c.ca_certificate = Some(ca.certificate.clone());
    c
}

/// A fresh client (no pooled connection) trusting `ca`.
async fn health_trusting(url: &str, ca: Option<&Path>) -> Result<(), ClientError> {
    Client::with_ca_certificate(url, None, ca)?.health().await.map(|_| ())
}

#[tokio::test]
async fn clients_that_trust_the_lab_ca_work_over_https_and_others_are_refused() {
    let ca = TestCa::new("kiln-lab-ca");
    let c = start_tls(&ca, &ca.issue("coordinator"));
    assert!(c.url.starts_with("https://127.0.0.1:"), "the coordinator says it serves HTTPS: {}", c.url);
    let token = c.token("user", "alice");
    let alice = c.client(&token);
    let wr = alice.create_work_request(&noop(&[])).await.expect("a request over HTTPS");
    assert_eq!(alice.work_request(wr.id).await.expect("read back").id, wr.id);

    // Neither the system's roots nor another CA vouch for the lab's certificate.
    let err = health_trusting(&c.url, None).await.expect_err("untrusted certificate");
    assert!(err.to_string().contains("UnknownIssuer"), "the error says why: {err}");
    let other = TestCa::new("someone-elses-ca");
    assert!(health_trusting(&c.url, Some(&other.certificate)).await.is_err(), "another CA is not trusted");

    // Plain HTTP to the HTTPS port gets no answer, and breaks nothing.
    let plain = c.url.replacen("https://", "http://", 1);
    assert!(matches!(health_trusting(&plain, None).await, Err(ClientError::Transport { .. })));

    // A client that connects and never handshakes holds nobody up (handshakes
    // time out after 10 s, beside the accept loop).
    let addr = c.url.trim_start_matches("https://").to_owned();
    let stalled: Vec<std::net::TcpStream> =
        (0..3).map(|_| std::net::TcpStream::connect(&addr).expect("connect")).collect();
    let served = tokio::time::timeout(Duration::from_secs(5), health_trusting(&c.url, Some(&ca.certificate))).await;
    assert!(matches!(served, Ok(Ok(()))), "served while {} connections stall: {served:?}", stalled.len());
    drop(stalled);

    // The CLI: KILN_CA_CERTIFICATE (the harness sets it), the flag, or a clear error.
    let out = kiln_cli(&c, &token, &["show", &wr.id.to_string()]);
    assert!(out.status.success(), "kiln show: {}", String::from_utf8_lossy(&out.stderr));
    let cli = |extra: &[&str]| {
        let home = tempfile::tempdir().expect("home");
        Command::new(binary("kiln"))
            .env_clear()
            .env("HOME", home.path())
            .args(["--server", &c.url, "--token", &token])
            .args(extra)
            .arg("health")
            .output()
            .expect("run kiln")
    };
    let out = cli(&["--ca-certificate", &ca.certificate.to_string_lossy()]);
    assert!(out.status.success(), "kiln --ca-certificate: {}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "unreachable: {stderr}");
    assert!(
        stderr.contains("UnknownIssuer") && stderr.contains("--ca-certificate"),
        "says why and what to do: {stderr}"
    );
    let out = cli(&["--ca-certificate", &ca.key.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "a key is no CA certificate: {stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}

#[tokio::test]
async fn an_agent_that_trusts_the_lab_ca_takes_and_finishes_work_over_https() {
    let ca = TestCa::new("kiln-lab-ca");
    let c = start_tls(&ca, &ca.issue("coordinator"));
    let user = c.user("alice");
    let ca_path = ca.certificate.to_string_lossy().into_owned();
    let _agent = Agent::start(&c, "tls-builder", &["--ca-certificate", &ca_path]);
    let wr = user.create_work_request(&noop(&[])).await.expect("create");
    let done = finished_within(&user, wr.id, Duration::from_secs(60)).await;
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}", done.output_data);

    // Without the CA the agent cannot register, and its log says why.
    let stranger = Agent::start(&c, "stranger", &[]);
    let said = wait_for(Duration::from_secs(30), || async {
        let log = stranger.log();
        log.contains("UnknownIssuer").then_some(log)
    })
    .await;
    assert!(said.is_some(), "the agent's log names the certificate problem:\n{}", stranger.log());
    let workers = user.workers().await.expect("workers");
    assert!(workers.items.iter().all(|w| w.name != "stranger"), "it never registered");
}

/// `kiln-coordinator serve` with `args`; its exit status and stderr (it must
/// not start listening).
fn serve_fails(args: &[String]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().expect("data dir");
    let out = Command::new(binary("kiln-coordinator"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .expect("run kiln-coordinator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("listening"), "it must not listen: {stdout}");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_certificate_files_stop_the_coordinator_before_it_listens() {
    let ca = TestCa::new("kiln-lab-ca");
    let good = ca.issue("coordinator");
    let other = ca.issue("other");
    let path = |p: &Path| p.to_string_lossy().into_owned();

    let (code, stderr) = serve_fails(&["--tls-certificate".into(), path(&good.certificate)]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("tls_private_key"), "names the missing key: {stderr}");

    let missing = ca.dir.path().join("missing.pem");
    let (_, stderr) = serve_fails(&tls_args(&missing, &good.private_key));
    assert!(stderr.contains("cannot read the TLS certificate") && stderr.contains("missing.pem"), "{stderr}");

    let (_, stderr) = serve_fails(&tls_args(&good.private_key, &good.private_key));
    assert!(stderr.contains("no PEM certificate"), "a key is no certificate: {stderr}");

    let (_, stderr) = serve_fails(&tls_args(&good.certificate, &other.private_key));
    assert!(stderr.contains("does not go with"), "a key of another certificate: {stderr}");

    // validate-config (systemd's ExecStartPre=) reads the files too.
    let config = ca.dir.path().join("coordinator.toml");
    let data = tempfile::tempdir().expect("data dir");
    let write = |cert: &Path, key: &Path| {
        let text = format!("data_dir = {:?}\ntls_certificate = {:?}\ntls_private_key = {:?}\n", data.path(), cert, key);
        std::fs::write(&config, text).expect("config");
    };
    let validate = || {
        Command::new(binary("kiln-coordinator"))
            .arg("--config")
            .arg(&config)
            .arg("validate-config")
            .output()
            .expect("run")
    };
    write(&good.certificate, &good.private_key);
    let out = validate();
    assert!(out.status.success(), "good files: {}", String::from_utf8_lossy(&out.stderr));
    write(&good.certificate, &other.private_key);
    let out = validate();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not go with"));
}

#[tokio::test]
async fn sighup_loads_a_renewed_certificate_and_keeps_serving_if_the_new_files_are_bad() {
    let old_ca = TestCa::new("kiln-ca-2026");
    let new_ca = TestCa::new("kiln-ca-2027");
    let served = tempfile::tempdir().expect("served files");
    let live = ServerFiles {
        certificate: served.path().join("coordinator.pem"),
        private_key: served.path().join("coordinator.key"),
    };
    let install = |from: &ServerFiles| {
        std::fs::copy(&from.certificate, &live.certificate).expect("certificate");
        std::fs::copy(&from.private_key, &live.private_key).expect("key");
    };
    install(&old_ca.issue("coordinator"));
    let c = start_tls(&old_ca, &live);
    health_trusting(&c.url, Some(&old_ca.certificate)).await.expect("the first certificate");

    let hangup = || {
        let pid = c.pid().expect("running").to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status().expect("kill");
        assert!(sent.success(), "kill -HUP {pid}");
    };
    install(&new_ca.issue("coordinator"));
    hangup();
    let renewed =
        wait_for(Duration::from_secs(10), || async { health_trusting(&c.url, Some(&new_ca.certificate)).await.ok() })
            .await;
    assert!(renewed.is_some(), "the renewed certificate is served after SIGHUP");
    assert!(health_trusting(&c.url, Some(&old_ca.certificate)).await.is_err(), "the old one is gone");

    // A botched renewal: the coordinator keeps the certificate it has.
    std::fs::write(&live.certificate, "not a certificate\n").expect("garbage");
    hangup();
    tokio::time::sleep(Duration::from_secs(1)).await;
    health_trusting(&c.url, Some(&new_ca.certificate)).await.expect("still serving the renewed certificate");
}

#[tokio::test]
async fn a_plain_http_coordinator_survives_a_reload() {
    // `systemctl reload` sends SIGHUP whether or not TLS is configured.
    let c = Coordinator::start();
    let pid = c.pid().expect("running").to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().expect("kill");
    assert!(sent.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    health_trusting(&c.url, None).await.expect("still serving after SIGHUP");
}

#[test]
fn plain_http_beyond_loopback_is_warned_about() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("coordinator.toml");
    let validate_coordinator = |text: &str| {
        std::fs::write(&config, text).expect("config");
        let out = Command::new(binary("kiln-coordinator"))
            .arg("--config")
            .arg(&config)
            .arg("validate-config")
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let data = format!("data_dir = {:?}\n", dir.path().join("data"));
    let warned = validate_coordinator(&format!("{data}listen = \"0.0.0.0:8080\"\n"));
    assert!(warned.contains("without TLS") && warned.contains("tls_certificate"), "{warned}");
    assert!(!validate_coordinator(&format!("{data}listen = \"127.0.0.1:8080\"\n")).contains("warning"));
    let ca = TestCa::new("kiln-lab-ca");
    let files = ca.issue("coordinator");
    let with_tls = format!(
        "{data}listen = \"0.0.0.0:8443\"\ntls_certificate = {:?}\ntls_private_key = {:?}\n",
        files.certificate, files.private_key
    );
    assert!(!validate_coordinator(&with_tls).contains("warning"));

    let validate_agent = |url: &str| {
        let out = Command::new(binary("kiln-agent"))
            .args(["--coordinator", url, "--name", "w", "--data-dir"])
            .arg(dir.path().join("agent"))
            .arg("validate-config")
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = validate_agent("http://kiln.example:8080");
    assert!(warned.contains("travel unencrypted") && warned.contains("https://"), "{warned}");
    assert!(!validate_agent("https://kiln.example:8443").contains("warning"));
    assert!(!validate_agent("http://127.0.0.1:8080").contains("warning"));
}
