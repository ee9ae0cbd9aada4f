//! What HTTPS costs a coordinator's clients: the same release
//! `kiln-coordinator` serving plain HTTP and HTTPS (a lab CA made with
//! `openssl`, EC P-256), side by side in alternating rounds so that both see
//! the same machine noise. Two workloads:
//! - requests on a kept-alive connection (create a `noop` request, read it
//!   back): the steady state of agents and the CLI's follow loops;
//! - a new connection per request (`GET /api/1/health` from a fresh client):
//!   TCP + TLS handshake each time, the worst case.
//!
//! Run: `cargo build --release --bins && cargo bench -p kiln-tests --bench tls_overhead`

use kiln_shared::client::Client;
use kiln_tests::tls::TestCa;
use kiln_tests::work::noop;
use kiln_tests::Coordinator;
use std::path::Path;
use std::time::Instant;

const ROUNDS: usize = 10;
const KEPT_ALIVE_PER_ROUND: usize = 50;
const FRESH_PER_ROUND: usize = 20;

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or(f64::NAN)
}

/// Milliseconds per create + read-back on one kept-alive client.
async fn kept_alive(client: &Client, into: &mut Vec<f64>) {
    for _ in 0..KEPT_ALIVE_PER_ROUND {
        let start = Instant::now();
        let wr = client.create_work_request(&noop(&[])).await.expect("create");
        client.work_request(wr.id).await.expect("read back");
        into.push(start.elapsed().as_secs_f64() * 1e3);
    }
}

/// Milliseconds per health check from a fresh client (a new connection).
async fn fresh(url: &str, ca: Option<&Path>, into: &mut Vec<f64>) {
    for _ in 0..FRESH_PER_ROUND {
        let start = Instant::now();
        let client = Client::with_ca_certificate(url, None, ca).expect("client");
        client.health().await.expect("health");
        into.push(start.elapsed().as_secs_f64() * 1e3);
    }
}

#[tokio::main]
async fn main() {
    let ca = TestCa::new("kiln-bench-ca");
    let files = ca.issue("coordinator");
    let plain = Coordinator::start();
    let (cert, key) = (files.certificate.to_string_lossy(), files.private_key.to_string_lossy());
    let mut tls = Coordinator::start_with(&["--tls-certificate", &cert, "--tls-private-key", &key]);
    tls.ca_certificate = Some(ca.certificate.clone());
    let (plain_user, tls_user) = (plain.user("bench"), tls.user("bench"));
    // Warm both (first connection, SQLite pages).
    kept_alive(&plain_user, &mut Vec::new()).await;
    kept_alive(&tls_user, &mut Vec::new()).await;

    let (mut plain_kept, mut tls_kept, mut plain_fresh, mut tls_fresh) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warmer machine.
        if round % 2 == 0 {
            kept_alive(&plain_user, &mut plain_kept).await;
            kept_alive(&tls_user, &mut tls_kept).await;
            fresh(&plain.url, None, &mut plain_fresh).await;
            fresh(&tls.url, Some(&ca.certificate), &mut tls_fresh).await;
        } else {
            kept_alive(&tls_user, &mut tls_kept).await;
            kept_alive(&plain_user, &mut plain_kept).await;
            fresh(&tls.url, Some(&ca.certificate), &mut tls_fresh).await;
            fresh(&plain.url, None, &mut plain_fresh).await;
        }
    }

    println!(
        "tls_overhead: {ROUNDS} alternating rounds; kept-alive n={}, fresh n={}",
        plain_kept.len(),
        plain_fresh.len()
    );
    println!("| ms per request                         |  p50  |  p90  |");
    println!("|----------------------------------------|------:|------:|");
    let mut rows = Vec::new();
    for (name, samples) in [
        ("kept alive, http (create + get)", &mut plain_kept),
        ("kept alive, https (create + get)", &mut tls_kept),
        ("new connection, http (health)", &mut plain_fresh),
        ("new connection, https (health)", &mut tls_fresh),
    ] {
        let (p50, p90) = (percentile(samples, 0.5), percentile(samples, 0.9));
        println!("| {name:<38} | {p50:5.2} | {p90:5.2} |");
        rows.push(p50);
    }
    println!("ratio https/http at p50: kept alive {:.2}x, new connection {:.2}x", rows[1] / rows[0], rows[3] / rows[2]);
}
