//! Environment images for end-to-end tests, built on demand from Debian
//! packages installed on the host and cached between runs, keyed by their
//! inputs. `busybox_rootfs` is a complete small root filesystem (busybox
//! from `busybox-static`, /etc/passwd, the usual directories): enough to run
//! shell commands in a sandbox in milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Cache of built images (override with `KILN_TEST_IMAGE_CACHE`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_TEST_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-tests/images"))
}

/// Why an image cannot be built here, if it cannot.
pub fn busybox_missing() -> Option<String> {
    (!Path::new("/bin/busybox").exists())
        .then(|| "/bin/busybox is missing: install busybox-static (scripts/setup does)".to_owned())
}

fn busybox_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "busybox-static"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace([':', '/'], "_"))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A `.tar.gz` root filesystem with busybox; built once per busybox version.
pub fn busybox_rootfs() -> PathBuf {
    if let Some(why) = busybox_missing() {
        panic!("{why}");
    }
    let out = cache_dir().join(format!("busybox-rootfs-{}-v1.tar.gz", busybox_version()));
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(cache_dir()).expect("create the image cache");
    let work = tempfile::tempdir().expect("temp dir");
    let root = work.path().join("root");
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "dev", "sys", "var/tmp", "home"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let applets = Command::new("/bin/busybox").arg("--list-full").output().expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let path = root.join(applet);
        if applet == "bin/busybox" || path.exists() {
            continue;
        }
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        let _ = std::os::unix::fs::symlink(target, &path);
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    std::fs::write(root.join("etc/os-release"), "ID=kiln-test\nNAME=\"Kiln test busybox\"\n").expect("os-release");
    let tmp = out.with_extension(format!("partial-{}-{}", std::process::id(), crate::random_suffix()));
    let status = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-czf"])
        .arg(&tmp)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    std::fs::rename(&tmp, &out).expect("publish the image");
    out
}

/// Upload a root filesystem tarball as a `kiln:system-tarball` artifact.
pub async fn upload_environment(client: &kiln_shared::client::Client, tarball: &Path, architecture: &str) -> i64 {
    use sha2::Digest;
    let bytes = std::fs::read(tarball).expect("read the tarball");
    let name = tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "rootfs.tar.gz".into());
    let new = kiln_shared::artifact::NewArtifact {
        category: "kiln:system-tarball".into(),
        data: crate::obj(
            serde_json::json!({"codename": "test", "architecture": architecture, "variant": "busybox", "backends": ["unshare"]}),
        ),
        files: vec![kiln_shared::artifact::FileSpec {
            path: name.clone(),
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        }],
        work_request: None,
    };
    let artifact = client.create_artifact(&new).await.expect("create the environment artifact");
    client.upload_file(artifact.id, &name, bytes).await.expect("upload the environment");
    artifact.id
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace([':', '/'], "_"))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A Debian bookworm minbase root filesystem (`.tar`) made by
/// `mmdebstrap --mode=unshare`, cached by its inputs (suite, variant,
/// architecture, mmdebstrap version). Takes ~30-70 s the first time.
pub fn debian_minbase() -> PathBuf {
    let out =
        cache_dir().join(format!("debian-bookworm-minbase-amd64-mmdebstrap{}.tar", package_version("mmdebstrap")));
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(cache_dir()).expect("create the image cache");
    let tmp = out.with_extension(format!("partial-{}.tar", std::process::id()));
    let status = Command::new("mmdebstrap")
        .args(["--mode=unshare", "--variant=minbase", "--format=tar", "--quiet", "bookworm"])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian")
        .status()
        .expect("run mmdebstrap (scripts/setup installs it)");
    assert!(status.success(), "mmdebstrap failed");
    std::fs::rename(&tmp, &out).expect("publish the image");
    out
}
