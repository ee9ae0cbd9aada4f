//! `kiln artifact upload|download|list|show`.

use crate::support::{id, Kiln};
use kiln_tests::{sha256_hex, Coordinator};
use serde_json::Value;

#[tokio::test]
async fn upload_list_show_and_download_round_trip() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "uploader");
    let src = tempfile::tempdir().expect("src");
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(src.path().join("hello_1.0.dsc"), b"Source: hello\n").expect("write");
    std::fs::create_dir_all(src.path().join("out/debian")).expect("mkdir");
    std::fs::write(src.path().join("out/hello_1.0_amd64.deb"), &big).expect("write");
    std::fs::write(src.path().join("out/debian/changelog"), b"hello (1.0) unstable\n").expect("write");
    let dsc = src.path().join("hello_1.0.dsc");
    let out = src.path().join("out");

    let art = k
        .json(&[
            "artifact",
            "upload",
            "-c",
            "kiln:source-package",
            "-d",
            r#"{"name": "hello", "version": "1.0"}"#,
            dsc.to_str().expect("utf-8"),
            out.to_str().expect("utf-8"),
        ])
        .await;
    assert_eq!(art["state"], "complete");
    let mut paths: Vec<&str> =
        art["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["debian/changelog", "hello_1.0.dsc", "hello_1.0_amd64.deb"]);
    let deb = art["files"].as_array().expect("files").iter().find(|f| f["path"] == "hello_1.0_amd64.deb");
    assert_eq!(deb.map(|f| f["sha256"].clone()), Some(Value::from(sha256_hex(&big))));
    let art_id = id(&art).to_string();

    let human = k.run(&["artifact", "upload", "-c", "test:note", "-d", r#"{"name": "other"}"#]).await.ok();
    assert!(human.stdout.contains("0 files"), "a data-only artifact: {}", human.stdout);

    let table = k.run(&["artifact", "list"]).await.ok().stdout;
    assert!(table.starts_with("ID") && table.contains("kiln:source-package") && table.contains("test:note"), "{table}");
    let only = k.json(&["artifact", "list", "--category", "kiln:source-package"]).await;
    assert_eq!(only["items"].as_array().map(Vec::len), Some(1));
    let filtered = k.json(&["artifact", "list", "--filter", "name=other"]).await;
    assert_eq!(filtered["items"][0]["category"], "test:note");
    let all = k.json(&["artifact", "list", "--limit", "1", "--all"]).await;
    assert_eq!((all["items"].as_array().map(Vec::len), &all["next"]), (Some(2), &Value::Null));
    k.run(&["artifact", "list", "--filter", "limit=3"]).await.expect_code(64);

    let shown = k.run(&["artifact", "show", &art_id]).await.ok().stdout;
    assert!(shown.contains("debian/changelog") && shown.contains("complete") && shown.contains("3.0 MiB"), "{shown}");

    let dest = tempfile::tempdir().expect("dest");
    let dest_arg = dest.path().to_str().expect("utf-8");
    let got = k.json(&["artifact", "download", &art_id, "-o", dest_arg]).await;
    assert_eq!(got["files"].as_array().map(Vec::len), Some(3));
    assert_eq!(std::fs::read(dest.path().join("hello_1.0_amd64.deb")).expect("deb"), big);
    assert_eq!(std::fs::read(dest.path().join("debian/changelog")).expect("changelog"), b"hello (1.0) unstable\n");
    assert!(!dest.path().join("hello_1.0_amd64.deb.part").exists(), "no partial file left");

    k.run(&["artifact", "download", &art_id, "-o", dest_arg]).await.expect_code(73).one_line_error("--force");
    k.run(&["artifact", "download", &art_id, "-o", dest_arg, "--force"]).await.ok();
    let one = tempfile::tempdir().expect("one");
    let one_arg = one.path().to_str().expect("utf-8");
    k.run(&["artifact", "download", &art_id, "-o", one_arg, "--file", "hello_1.0.dsc"]).await.ok();
    let names: Vec<_> =
        std::fs::read_dir(one.path()).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("hello_1.0.dsc")]);
    k.run(&["artifact", "download", &art_id, "-o", one_arg, "--file", "nope"]).await.expect_code(65);
}

#[tokio::test]
async fn upload_errors_are_clear() {
    let c = Coordinator::start();
    let k = Kiln::user(&c, "u");
    k.run(&["artifact", "upload", "-c", "x:y", "/nonexistent/file"])
        .await
        .expect_code(66)
        .one_line_error("/nonexistent");
    let src = tempfile::tempdir().expect("src");
    let f = src.path().join("f");
    std::fs::write(&f, b"x").expect("write");
    let f = f.to_str().expect("utf-8");
    k.run(&["artifact", "upload", "-c", "bad category!", f]).await.expect_code(64).one_line_error("category");
    k.run(&["artifact", "upload", "-c", "x:y", f, f]).await.expect_code(64).one_line_error("both");
    k.run(&["artifact", "show", "42"]).await.expect_code(65);
    k.run(&["artifact", "upload", "-c", "x:y", "--work-request", "1", f])
        .await
        .expect_code(64)
        .one_line_error("work request 1 does not exist");
}
