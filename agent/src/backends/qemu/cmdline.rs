//! The QEMU command line of a task and the task file its guest reads
//! (fw_cfg `opt/org.kiln/task`, a shell fragment sourced by /init). Pure
//! functions of the task description, so they are tested without a VM.

use super::QemuTask;
use crate::backends::spec::TaskSpec;
use std::path::Path;

/// The virtio-serial ports, by guest-visible name, and their socket files.
pub const PORTS: [(&str, &str); 4] = [
    ("org.kiln.stdout", "stdout.sock"),
    ("org.kiln.stderr", "stderr.sock"),
    ("org.kiln.status", "status.sock"),
    ("org.kiln.output", "output.sock"),
];

/// Single-quote `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The guest's task file: settings, then `kiln_run`, which runs the
/// command with exactly the task's environment in a chroot of the disk.
pub fn task_file(spec: &TaskSpec, tmp_size: u64) -> String {
    let env: Vec<String> = spec.env.iter().map(|e| quote(e)).collect();
    let args: Vec<String> = spec.args.iter().map(|a| quote(a)).collect();
    let cwd = quote(&spec.cwd);
    format!(
        "KILN_NETWORK={}\nKILN_TMP_SIZE={}\nkiln_run() {{\n    env -i {} chroot /root /bin/sh -c {} kiln {} {}\n}}\n",
        u8::from(spec.network),
        tmp_size.max(1 << 20),
        env.join(" "),
        quote(r#"cd "$1" 2>/dev/null || cd /; shift; exec "$@""#),
        cwd,
        args.join(" "),
    )
}

/// Arguments of `qemu-system-<arch>` for a task whose files are in `dir`.
pub fn args(spec: &TaskSpec, q: &QemuTask, dir: &Path, overlay: &Path, task_file: &Path) -> Vec<String> {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let memory_mib = (spec.memory >> 20).max(128);
    let mut a: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-accel".into(),
        q.accel.clone(),
        "-cpu".into(),
        if q.accel == "kvm" { "host" } else { "max" }.into(),
        "-m".into(),
        memory_mib.to_string(),
        "-smp".into(),
        q.smp.max(1).to_string(),
        "-kernel".into(),
        q.kernel.to_string_lossy().into_owned(),
        "-initrd".into(),
        q.initrd.to_string_lossy().into_owned(),
        "-append".into(),
        format!("{} kiln.protocol=1", q.cmdline),
        "-serial".into(),
        format!("file:{}", p("console.log")),
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap", overlay.display()),
        "-device".into(),
        "virtio-serial-pci".into(),
        "-fw_cfg".into(),
        format!("name=opt/org.kiln/task,file={}", task_file.display()),
    ];
    if q.binary.ends_with("x86_64") || q.binary.ends_with("i386") {
        a.splice(0..0, ["-machine".to_owned(), "pc".to_owned()]);
    }
    for (i, (name, socket)) in PORTS.iter().enumerate() {
        a.push("-chardev".into());
        a.push(format!("socket,id=k{i},path={}", p(socket)));
        a.push("-device".into());
        a.push(format!("virtserialport,chardev=k{i},name={name}"));
    }
    if spec.network {
        a.extend(["-nic".into(), "user,model=virtio-net-pci".into()]);
    } else {
        a.extend(["-nic".into(), "none".into()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::TaskParams;

    fn spec(network: bool) -> TaskSpec {
        let task = TaskParams {
            args: vec!["/bin/sh".into(), "-c".into(), "echo 'it''s'; exit 3".into()],
            env: vec![("GREETING".into(), "a b".into())],
            network,
            memory: 1 << 30,
            pids: 10,
            cpus: 0.0,
            disk_quota: None,
            tmp_size: 1 << 20,
            timeout_secs: 5,
            notice: None,
            controllers: None,
            artifact_id: 1,
            image: "/x".into(),
        };
        TaskSpec::common("qemu", &task)
    }

    fn task() -> QemuTask {
        QemuTask {
            binary: "qemu-system-x86_64".into(),
            accel: "tcg".into(),
            accel_reason: None,
            base: "/s/disk.qcow2".into(),
            kernel: "/s/vmlinuz".into(),
            initrd: "/s/initrd.img".into(),
            cmdline: "console=ttyS0 quiet".into(),
            smp: 1,
            tmp_size: 1 << 20,
        }
    }

    #[test]
    fn the_task_file_survives_the_shell() {
        let text = task_file(&spec(false), 1 << 20);
        let dir = tempfile::tempdir().expect("tmp");
        // Run it through a real shell with stand-ins for env and chroot.
        let script = format!("env() {{ shift; while [ \"${{1#*=}}\" != \"$1\" ]; do echo \"ENV $1\"; shift; done; shift 2; for a; do echo \"ARG $a\"; done; }}\n{text}\nkiln_run\necho \"NET $KILN_NETWORK\"");
        let path = dir.path().join("t.sh");
        std::fs::write(&path, script).expect("write");
        let out = std::process::Command::new("sh").arg(&path).output().expect("sh");
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("ENV GREETING=a b\n"), "{out}");
        assert!(out.contains("ENV KILN_OUTPUT=/kiln/output\n"), "{out}");
        assert!(out.contains("ARG echo 'it''s'; exit 3\n"), "{out}");
        assert!(out.contains("ARG /root\n") && out.contains("NET 0"), "{out}");
    }

    #[test]
    fn no_nic_unless_the_network_is_allowed() {
        let dir = Path::new("/t");
        let a = args(&spec(false), &task(), dir, &dir.join("disk.qcow2"), &dir.join("guest-task.sh"));
        let joined = a.join(" ");
        assert!(joined.contains("-nic none") && !joined.contains("user,model"), "{joined}");
        assert!(joined.contains("-accel tcg -cpu max") && joined.contains("-m 1024"), "{joined}");
        assert!(joined.contains("name=org.kiln.status") && joined.contains("path=/t/status.sock"), "{joined}");
        let a = args(&spec(true), &task(), dir, &dir.join("disk.qcow2"), &dir.join("guest-task.sh"));
        assert!(a.join(" ").contains("-nic user,model=virtio-net-pci"));
    }
}
