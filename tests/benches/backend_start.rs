//! Start-to-exec latency of the incus-lxc and qemu backends, side by side
//! with the raw tools on the same images: `incus launch --ephemeral` +
//! `incus exec`, and a bare `qemu-system-x86_64` boot of the same system
//! image (same kernel, initramfs, overlay and command line as the agent
//! uses, minus the agent).
//!
//! Kiln: from the agent receiving the assignment (its log's `assigned`
//! line) to the first stdout line of the task reaching the shim (the log
//! line's `ts`). Raw: from spawning the tool to its first output byte.
//! Images are warm: imported into Incus / the QEMU store by a first task.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench backend_start`

use chrono::{DateTime, Utc};
use kiln_shared::client::Client;
use kiln_shared::work::NewWorkRequest;
use kiln_shared::{TaskType, WorkResult};
use kiln_tests::agent::Agent;
use kiln_tests::images::{busybox_rootfs, upload_environment};
use kiln_tests::incus::{incus, ProjectGuard};
use kiln_tests::system_images::{busybox_system_image, upload_system_image};
use kiln_tests::{wait_for, Coordinator};
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const INCUS_SAMPLES: usize = 10;
const QEMU_SAMPLES: usize = 5;
const MEMORY_MIB: u64 = 1024;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9
}

fn task(env: i64, backend: &str) -> NewWorkRequest {
    NewWorkRequest {
        task_type: TaskType::Worker,
        task_name: "command".into(),
        task_data: json!({"environment": env, "backend": backend, "command": ["/bin/echo", "started"]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        dependencies: vec![],
        priority: 0,
        workflow_data: Default::default(),
        parent: None,
    }
}

/// Timestamp of the agent's "assigned" line for work request `id`.
fn assigned_at(log: &str, id: i64) -> Option<f64> {
    let needle = format!("id={id} ");
    let clean = |l: &str| {
        let text: String = l.chars().filter(|c| !c.is_control()).collect();
        ["[2m", "[0m", "[32m", "[3m"].iter().fold(text, |t, code| t.replace(code, ""))
    };
    let line = log.lines().map(clean).find(|l| l.contains("assigned") && l.contains(&needle))?;
    let stamp = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(stamp).ok().map(|t| seconds(t.with_timezone(&Utc)))
}

/// Assignment -> first stdout line, in ms, for one Kiln task.
async fn kiln_once(user: &Client, agent: &Agent, env: i64, backend: &str) -> f64 {
    let wr = user.create_work_request(&task(env, backend)).await.expect("create");
    let done = wait_for(Duration::from_secs(600), || async {
        let wr = user.work_request(wr.id).await.ok()?;
        wr.status.is_final().then_some(wr)
    })
    .await
    .expect("the task finishes");
    assert_eq!(done.result, Some(WorkResult::Success), "{:?}\n{}", done.output_data, agent.log());
    let log = user.log(wr.id, false).await.expect("log").text().await.expect("text");
    let first = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["stream"] == "stdout")
        .and_then(|v| DateTime::parse_from_rfc3339(v["ts"].as_str()?).ok())
        .map(|t| seconds(t.with_timezone(&Utc)))
        .expect("a stdout line");
    (first - assigned_at(&agent.log(), wr.id).expect("assigned line")) * 1000.0
}

/// `incus launch --ephemeral` + `incus exec … echo`, to the first output byte.
fn incus_once(project: &str, n: usize) -> f64 {
    let name = format!("bench-{n}-{}", std::process::id());
    let start = now();
    incus(&["launch", "--ephemeral", "--project", project, "bench/busybox", &name]);
    let mut child = Command::new("incus")
        .args(["exec", "--project", project, &name, "--", "/bin/echo", "started"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("incus exec");
    let mut byte = [0u8; 1];
    let _ = child.stdout.take().expect("stdout").read(&mut byte);
    let ms = (now() - start) * 1000.0;
    let _ = child.wait();
    let _ = Command::new("incus").args(["delete", "--force", "--project", project, &name]).output();
    ms
}

/// A bare boot of the stored image, to the first byte on the stdout port.
fn qemu_once(stored: &Path, accel: &str) -> f64 {
    let work = tempfile::tempdir().expect("tmp");
    let w = |n: &str| work.path().join(n).to_string_lossy().into_owned();
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(stored.join("disk.qcow2"))
        .arg(w("disk.qcow2"))
        .status()
        .expect("qemu-img");
    assert!(ok.success());
    std::fs::write(w("task.sh"), "kiln_run() { chroot /root /bin/echo started; }\n").expect("task");
    let mut args: Vec<String> = [
        "-machine",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-accel",
        accel,
        "-cpu",
        if accel == "kvm" { "host" } else { "max" },
        "-m",
        &MEMORY_MIB.to_string(),
        "-smp",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend([
        "-kernel".into(),
        stored.join("vmlinuz").to_string_lossy().into_owned(),
        "-initrd".into(),
        stored.join("initrd.img").to_string_lossy().into_owned(),
        "-append".into(),
        "console=ttyS0 quiet panic=-1 kiln.protocol=1".into(),
        "-serial".into(),
        format!("file:{}", w("console.log")),
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap", w("disk.qcow2")),
        "-device".into(),
        "virtio-serial-pci".into(),
        "-fw_cfg".into(),
        format!("name=opt/org.kiln/task,file={}", w("task.sh")),
        "-nic".into(),
        "none".into(),
    ]);
    for (i, name) in ["org.kiln.stdout", "org.kiln.stderr", "org.kiln.status", "org.kiln.output"].iter().enumerate() {
        args.extend([
            "-chardev".into(),
            format!("file,id=k{i},path={}", w(&format!("port{i}"))),
            "-device".into(),
            format!("virtserialport,chardev=k{i},name={name}"),
        ]);
    }
    let start = now();
    let mut qemu = Command::new("qemu-system-x86_64").args(&args).stderr(Stdio::null()).spawn().expect("qemu");
    let out = work.path().join("port0");
    let deadline = Instant::now() + Duration::from_secs(300);
    let ms = loop {
        if std::fs::metadata(&out).map(|m| m.len() > 0).unwrap_or(false) {
            break (now() - start) * 1000.0;
        }
        assert!(Instant::now() < deadline, "the bare boot printed nothing");
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = qemu.wait();
    ms
}

fn stats(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let p50 = ms[ms.len() / 2];
    let p90 = ms[(ms.len() * 9 / 10).min(ms.len() - 1)];
    println!("{name:<52} {p50:>9.1} {p90:>9.1} {:>9.1}", ms[0]);
    p50
}

#[tokio::main]
async fn main() {
    let image = busybox_system_image();
    let c = Coordinator::start();
    let user = c.user("bench");
    let tarball = upload_environment(&user, &busybox_rootfs(), "amd64").await;
    let disk = upload_system_image(&user, &image, "amd64").await;
    let memory = format!("{MEMORY_MIB}MiB");
    let agent = Agent::start(&c, "bench", &["--backends", "incus-lxc,qemu", "--memory-limit", &memory]);
    let _guard = ProjectGuard(kiln_tests::incus::project_of(agent.data_dir.path()));
    // Warm: the first task of each backend imports its image.
    kiln_once(&user, &agent, tarball, "incus-lxc").await;
    kiln_once(&user, &agent, disk, "qemu").await;

    let mut kiln_incus = Vec::new();
    for _ in 0..INCUS_SAMPLES {
        kiln_incus.push(kiln_once(&user, &agent, tarball, "incus-lxc").await);
    }
    let bench_project = "kiln-bench";
    let _bench_guard = ProjectGuard(bench_project.into());
    let _ = Command::new("incus")
        .args(["project", "create", bench_project, "-c", "features.images=true", "-c", "features.profiles=false"])
        .output();
    let meta = tempfile::tempdir().expect("tmp");
    std::fs::write(meta.path().join("metadata.yaml"), "architecture: x86_64\ncreation_date: 1\n").expect("meta");
    let meta_tar = meta.path().join("meta.tar");
    let ok = Command::new("tar").arg("-cf").arg(&meta_tar).arg("-C").arg(meta.path()).arg("metadata.yaml").status();
    assert!(ok.is_ok_and(|s| s.success()));
    incus(&[
        "image",
        "import",
        "--project",
        bench_project,
        &meta_tar.to_string_lossy(),
        &busybox_rootfs().to_string_lossy(),
        "--alias",
        "bench/busybox",
    ]);
    let _ = incus_once(bench_project, 0); // warm: unpacks the image once
    let raw_incus: Vec<f64> = (1..=INCUS_SAMPLES).map(|n| incus_once(bench_project, n)).collect();

    let mut kiln_qemu = Vec::new();
    for _ in 0..QEMU_SAMPLES {
        kiln_qemu.push(kiln_once(&user, &agent, disk, "qemu").await);
    }
    let stored = agent.data_dir.path().join("qemu-images").join(disk.to_string());
    let accel: Value = serde_json::from_slice(&std::fs::read(stored.join("accel.json")).expect("accel")).expect("json");
    let accel = accel["accel"].as_str().unwrap_or("tcg").to_owned();
    let raw_qemu: Vec<f64> = (0..QEMU_SAMPLES).map(|_| qemu_once(&stored, &accel)).collect();

    println!("start-to-exec latency, busybox images, warm ({INCUS_SAMPLES} incus samples, {QEMU_SAMPLES} qemu; qemu accel {accel})");
    println!("{:<52} {:>9} {:>9} {:>9}", "", "p50 ms", "p90 ms", "min ms");
    let ki = stats("kiln incus-lxc (assignment -> first output)", kiln_incus);
    let ri = stats("incus launch --ephemeral + exec (spawn -> output)", raw_incus);
    let kq = stats("kiln qemu (assignment -> first output)", kiln_qemu);
    let rq = stats("bare qemu-system boot (spawn -> output)", raw_qemu);
    println!("ratio at p50: incus-lxc {:.2}x raw; qemu {:.2}x raw (goal <= 1.2x)", ki / ri, kq / rq);
}
