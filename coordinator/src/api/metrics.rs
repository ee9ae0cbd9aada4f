//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Kept cheap: request counters live in memory, updated by [`track`] (a
//! middleware keyed by the matched route template, so ids do not explode
//! the label set); the assignment latency histogram is the scheduler's
//! atomics; gauges are read at scrape time from the scheduler's index and
//! a few aggregate queries on the store.
//!
//! Who may read: any valid token, or anyone with `metrics_public = true`.

use super::ApiError;
use crate::auth::Principal;
use crate::scheduler::latency::HistogramSnapshot;
use crate::scheduler::requirements::Requirements;
use crate::state::AppState;
use crate::store::StoreStats;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::StreamExt;
use kiln_shared::WorkStatus;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The log append route, whose request bytes are counted.
const LOG_ROUTE: &str = "/api/1/work-requests/{id}/log";

/// Requests per (method, status) of one route.
type RouteCounts = HashMap<(Method, u16), u64>;

/// Counters the middleware keeps for one router.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// route template -> (method, status) -> count.
    requests: Mutex<HashMap<String, RouteCounts>>,
    /// Bytes of log append bodies received.
    log_bytes_received: Arc<AtomicU64>,
}

impl HttpMetrics {
    fn count(&self, route: &str, method: &Method, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let by_route = match requests.get_mut(route) {
            Some(by_route) => by_route,
            None => requests.entry(route.to_owned()).or_default(),
        };
        *by_route.entry((method.clone(), status)).or_default() += 1;
    }

    /// Sorted for a stable exposition.
    fn snapshot(&self) -> BTreeMap<(String, String, u16), u64> {
        let requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        requests
            .iter()
            .flat_map(|(route, counts)| {
                counts.iter().map(move |((method, status), n)| ((route.clone(), method.to_string(), *status), *n))
            })
            .collect()
    }
}

pub fn routes(http: Arc<HttpMetrics>) -> Router<AppState> {
    Router::new().route("/metrics", get(scrape)).layer(Extension(http))
}

/// Middleware: count every request by route template, method and status,
/// and the bytes of log appends as they stream in.
pub async fn track(State(http): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let req = if route.as_deref() == Some(LOG_ROUTE) && method == Method::POST {
        let counter = http.log_bytes_received.clone();
        req.map(|body| {
            Body::from_stream(body.into_data_stream().inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            }))
        })
    } else {
        req
    };
    let resp = next.run(req).await;
    http.count(route.as_deref().unwrap_or("unmatched"), &method, resp.status().as_u16());
    resp
}

async fn scrape(
    State(state): State<AppState>,
    Extension(http): Extension<Arc<HttpMetrics>>,
    req: Request,
) -> Result<Response, ApiError> {
    if !state.config.metrics_public {
        let (mut parts, _) = req.into_parts();
        Principal::from_request_parts(&mut parts, &state).await?;
    }
    let window = chrono::Duration::seconds(i64::try_from(state.config.connected_window).unwrap_or(i64::MAX));
    let since = chrono::Utc::now() - window;
    let stats = state.db(move |s| s.stats(since)).await?;
    let exposition = Exposition {
        stats,
        classes: state.scheduler.pending_by_class(),
        latency: state.scheduler.assignment_latency.snapshot(),
        requests: http.snapshot(),
        log_bytes_received: http.log_bytes_received.load(Ordering::Relaxed),
        started_at: state.started_at.timestamp(),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], exposition.render()).into_response())
}

/// Everything one scrape shows, gathered first so rendering is pure.
#[derive(Debug, Default)]
pub struct Exposition {
    pub stats: StoreStats,
    pub classes: Vec<(Requirements, usize)>,
    pub latency: HistogramSnapshot,
    pub requests: BTreeMap<(String, String, u16), u64>,
    pub log_bytes_received: u64,
    pub started_at: i64,
}

impl Exposition {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_work(&mut out);
        self.render_workers(&mut out);
        self.render_latency(&mut out);
        self.render_http(&mut out);
        header(&mut out, "kiln_build_info", "gauge", "Always 1; the version label says which build serves.");
        let _ = writeln!(out, "kiln_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        header(&mut out, "process_start_time_seconds", "gauge", "Start time of the process, Unix seconds.");
        let _ = writeln!(out, "process_start_time_seconds {}", self.started_at);
        out
    }

    fn render_work(&self, out: &mut String) {
        header(out, "kiln_work_requests", "gauge", "Work requests stored, by status.");
        for status in WorkStatus::ALL {
            let n = self.stats.work_by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "kiln_work_requests{{status=\"{status}\"}} {n}");
        }
        header(
            out,
            "kiln_pending_work_requests",
            "gauge",
            "Pending work requests in the scheduler's index, by requirement class.",
        );
        let mut classes: Vec<_> = self.classes.iter().map(|(req, n)| (req.class_key(), req, *n)).collect();
        classes.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, req, n) in classes {
            let _ = writeln!(
                out,
                "kiln_pending_work_requests{{role=\"{}\",task=\"{}\",architecture=\"{}\",class=\"{}\"}} {n}",
                req.role,
                escape(&req.task_name),
                escape(req.architecture.as_deref().unwrap_or("")),
                escape(&key)
            );
        }
        header(out, "kiln_requirement_classes", "gauge", "Requirement classes with pending work.");
        let _ = writeln!(out, "kiln_requirement_classes {}", self.classes.len());
    }

    fn render_workers(&self, out: &mut String) {
        let s = &self.stats;
        let gauges = [
            ("kiln_workers_registered", "Workers registered.", s.workers),
            ("kiln_workers_enabled", "Workers enabled (may take work).", s.workers_enabled),
            ("kiln_workers_connected", "Workers seen within the connected window.", s.workers_connected),
            ("kiln_workers_busy", "Workers running at least one work request.", s.workers_busy),
            ("kiln_log_bytes_stored", "Bytes of task log text stored.", s.log_bytes),
        ];
        for (name, help, value) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(out, "kiln_log_bytes_received_total", "counter", "Bytes of log append bodies received.");
        let _ = writeln!(out, "kiln_log_bytes_received_total {}", self.log_bytes_received);
    }

    fn render_latency(&self, out: &mut String) {
        let name = "kiln_assignment_latency_seconds";
        header(out, name, "histogram", "Time from a work request becoming pending to its assignment to an agent.");
        for (bound, n) in &self.latency.cumulative {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.latency.count);
        let _ = writeln!(out, "{name}_sum {}", self.latency.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", self.latency.count);
    }

    fn render_http(&self, out: &mut String) {
        header(out, "kiln_http_requests_total", "counter", "HTTP requests answered, by route template and status.");
        for ((route, method, status), n) in &self.requests {
            let _ = writeln!(
                out,
                "kiln_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_shared::WorkerRole;

    #[test]
    fn renders_every_family_with_escaped_labels() {
        let mut req = Requirements::new(WorkerRole::Worker, "command", 1);
        req.architecture = Some("arm64".into());
        let latency = crate::scheduler::latency::LatencyHistogram::default();
        latency.observe(std::time::Duration::from_millis(20));
        let http = HttpMetrics::default();
        http.count("/api/1/work-requests/{id}", &Method::GET, 200);
        http.count("/api/1/work-requests/{id}", &Method::GET, 200);
        http.count("unmatched", &Method::GET, 404);
        let e = Exposition {
            stats: StoreStats { work_by_status: vec![(WorkStatus::Pending, 4)], workers: 2, ..Default::default() },
            classes: vec![(req, 4)],
            latency: latency.snapshot(),
            requests: http.snapshot(),
            log_bytes_received: 10,
            started_at: 1,
        };
        let text = e.render();
        for line in [
            "kiln_work_requests{status=\"pending\"} 4",
            "kiln_work_requests{status=\"running\"} 0",
            "kiln_workers_registered 2",
            "kiln_assignment_latency_seconds_bucket{le=\"0.025\"} 1",
            "kiln_assignment_latency_seconds_bucket{le=\"+Inf\"} 1",
            "kiln_assignment_latency_seconds_count 1",
            "kiln_http_requests_total{route=\"/api/1/work-requests/{id}\",method=\"GET\",status=\"200\"} 2",
            "kiln_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
            "kiln_log_bytes_received_total 10",
            "kiln_requirement_classes 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        let pending = text.lines().find(|l| l.starts_with("kiln_pending_work_requests{")).expect("class line");
        assert!(pending.contains("task=\"command\",architecture=\"arm64\",class=\"{\\\"role\\\""), "{pending}");
        assert!(pending.ends_with("} 4"), "{pending}");
    }
}
