//! Life under systemd: readiness and watchdog notifications
//! (`sd_notify(3)`, a datagram to `$NOTIFY_SOCKET`) and logging straight to
//! the journal with structured fields when stderr is connected to it.
//! Outside systemd every function here does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Send one `sd_notify` state line set, e.g. `READY=1` or `WATCHDOG=1`.
/// `Ok(false)` when not started by systemd with `Type=notify`.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    match bytes.strip_prefix(b"@") {
        // An abstract socket: the name is the rest, without a trailing NUL.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), &path)?;
        }
    }
    Ok(true)
}

/// Tell systemd the service is ready; logged, never fatal.
pub fn notify_ready(status: &str) {
    if let Err(e) = notify(&format!("READY=1\nSTATUS={status}")) {
        tracing::warn!(error = %e, "failed to notify systemd of readiness");
    }
}

/// Tell systemd the service is stopping (so a slow stop is not a hang).
pub fn notify_stopping() {
    if let Err(e) = notify("STOPPING=1") {
        tracing::warn!(error = %e, "failed to notify systemd of the stop");
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when systemd
/// asked this very process (`WATCHDOG_PID`, if set, is our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Feed the watchdog forever from the async runtime, so that a wedged
/// runtime stops feeding it and systemd restarts the service. Returns at
/// once when no watchdog was asked for.
pub async fn feed_watchdog() {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    tracing::debug!(?interval, "feeding the systemd watchdog");
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = notify("WATCHDOG=1") {
            tracing::warn!(error = %e, "failed to feed the systemd watchdog");
        }
    }
}

/// Is stderr the journal's stream? systemd sets `JOURNAL_STREAM` to the
/// `device:inode` of the stream it connected; a child whose stderr was
/// redirected inherits the variable but not the stream, hence the check.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // /proc/self/fd/2 follows to the socket or file that is stderr.
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(md) => md.dev() == dev && md.ino() == ino,
        Err(_) => false,
    }
}

/// Logging of the daemons: `KILN_LOG` filters (default `info`). Under
/// systemd the events go to the journal natively, each field of an event a
/// journal field (`KILN_WORKER=...`, `PRIORITY` from the level,
/// `SYSLOG_IDENTIFIER` = `identifier`); elsewhere they go to stderr as text.
pub fn init_logging(identifier: &str) {
    let filter = || EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal =
                    journal.with_syslog_identifier(identifier.to_owned()).with_field_prefix(Some("KILN".into()));
                tracing_subscriber::registry().with(journal.with_filter(filter())).init();
                return;
            }
            Err(e) => eprintln!("{identifier}: journal socket unavailable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        // The environment is process-wide: one test sets and clears it all.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify("READY=1").expect("send"));
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("kiln-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        assert!(notify("WATCHDOG=1").expect("send abstract"));
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"WATCHDOG=1");

        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!notify("READY=1").expect("no socket"));

        std::env::set_var("WATCHDOG_USEC", "20000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(10)));
        std::env::set_var("WATCHDOG_PID", "1");
        assert_eq!(watchdog_interval(), None, "another process's watchdog");
        std::env::remove_var("WATCHDOG_PID");
        std::env::remove_var("WATCHDOG_USEC");
        assert_eq!(watchdog_interval(), None);
    }

    #[test]
    fn journal_stream_must_match_stderr() {
        // Whatever stderr is here, a made-up device:inode is not it.
        std::env::set_var("JOURNAL_STREAM", "0:0");
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
