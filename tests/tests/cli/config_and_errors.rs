//! Where the server and token come from, and what a person sees when
//! something is wrong: one line and a documented exit code.

use crate::support::{bare, output, Kiln};
use kiln_tests::Coordinator;
use serde_json::Value;

fn write_config(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("config dir");
    std::fs::write(path, text).expect("write config");
}

#[tokio::test]
async fn server_and_token_come_from_flags_environment_or_config_file() {
    let c = Coordinator::start();
    let token = c.token("user", "cfg");
    let home = tempfile::tempdir().expect("home");

    // Flags.
    let mut cmd = bare(home.path());
    cmd.args(["--server", &c.url, "--token", &token, "list"]);
    output(cmd).await.ok();

    // Environment.
    Kiln::new(&c.url, Some(&token)).run(&["list"]).await.ok();

    // ~/.config/kiln/config.toml.
    let config = home.path().join(".config/kiln/config.toml");
    write_config(&config, &format!("server = \"{}\"\ntoken = \"{token}\"\n", c.url));
    let mut cmd = bare(home.path());
    cmd.arg("list");
    output(cmd).await.ok();

    // $XDG_CONFIG_HOME wins over ~/.config.
    let xdg = tempfile::tempdir().expect("xdg");
    write_config(&xdg.path().join("kiln/config.toml"), "server = \"http://127.0.0.1:1\"\n");
    let mut cmd = bare(home.path());
    cmd.env("XDG_CONFIG_HOME", xdg.path()).arg("list");
    output(cmd).await.expect_code(69);

    // Flag and environment win over the file, key by key.
    write_config(&config, &format!("server = \"http://127.0.0.1:1\"\ntoken = \"{token}\"\n"));
    let mut cmd = bare(home.path());
    cmd.env("KILN_SERVER", &c.url).arg("list");
    output(cmd).await.ok();
    let mut cmd = bare(home.path());
    cmd.args(["--server", &c.url, "--token", "not-a-token", "list"]);
    output(cmd).await.expect_code(77);

    // --config names another file.
    let other = home.path().join("other.toml");
    write_config(&other, &format!("server = \"{}\"\ntoken = \"{token}\"\n", c.url));
    let mut cmd = bare(home.path());
    cmd.args(["--config", other.to_str().expect("utf-8"), "list"]);
    output(cmd).await.ok();
}

#[tokio::test]
async fn configuration_errors_exit_78() {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = bare(home.path());
    cmd.arg("list");
    let run = output(cmd).await.expect_code(78);
    run.one_line_error("KILN_SERVER");

    write_config(&home.path().join(".config/kiln/config.toml"), "sever = \"http://x\"\n");
    let mut cmd = bare(home.path());
    cmd.arg("list");
    output(cmd).await.expect_code(78).one_line_error("sever");

    let mut cmd = bare(home.path());
    cmd.args(["--config", "/nonexistent/kiln.toml", "list"]);
    output(cmd).await.expect_code(78).one_line_error("/nonexistent/kiln.toml");

    Kiln::new("ftp://example.invalid", None).run(&["list"]).await.expect_code(78).one_line_error("http://");
}

#[tokio::test]
async fn unreachable_servers_and_bad_tokens_are_one_line_errors() {
    let c = Coordinator::start();
    Kiln::new("http://127.0.0.1:1", Some("x")).run(&["list"]).await.expect_code(69).one_line_error("cannot reach");
    Kiln::new(&c.url, Some("wrong")).run(&["list"]).await.expect_code(77).one_line_error("refused the token");
    Kiln::new(&c.url, None).run(&["list"]).await.expect_code(77).one_line_error("KILN_TOKEN");
    // A revoked token is refused like an unknown one.
    let admin = Kiln::admin(&c, "root");
    let user = Kiln::user(&c, "leaving");
    user.run(&["list"]).await.ok();
    assert!(admin.run(&["token", "revoke", "leaving"]).await.ok().stdout.contains("revoked"));
    user.run(&["list"]).await.expect_code(77).one_line_error("refused the token");
    // health needs no token at all.
    Kiln::new(&c.url, None).run(&["health"]).await.ok();
}

#[tokio::test]
async fn bad_input_is_64_and_refusals_name_the_reason() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "input");
    k.run(&["submit", "worker", "noop", "--data", "{oops"]).await.expect_code(64).one_line_error("invalid JSON");
    k.run(&["submit", "worker", "noop", "--data", "[1]"]).await.expect_code(64).one_line_error("JSON object");
    k.run(&["submit", "worker", "noop", "--data", "@/nonexistent.json"]).await.expect_code(66);
    k.run(&["submit", "worker", "nosuch"]).await.expect_code(64).one_line_error("unknown-task");
    k.run(&["submit", "worker", "noop", "--data", r#"{"bogus": 1}"#]).await.expect_code(64);
    k.run(&["submit", "teapot", "noop"]).await.expect_code(64);
    k.run(&["show", "not-a-number"]).await.expect_code(64);
    k.run(&["show", "999"]).await.expect_code(65).one_line_error("999");
    k.run(&["submit", "worker", "noop", "--priority", "5"]).await.expect_code(77).one_line_error("not allowed");
    k.run(&["workers", "set-metadata", "w"]).await.expect_code(64).one_line_error("nothing to change");

    // With --json the error is one JSON object on stderr.
    let run = k.run(&["show", "999", "--json"]).await.expect_code(65);
    let err: Value = serde_json::from_str(run.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"], "not-found");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("999")), "{err}");
    assert!(run.stdout.is_empty());
}
