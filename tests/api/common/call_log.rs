//! A recording fake Service A over real HTTPS (the test certificate, HTTP/2 or HTTP/1.1 by ALPN): it
//! answers the contract's success after a set delay and logs every call with its start and end, and a
//! checker that reads such a log against the accepted tasks, in the manner of Jepsen's RabbitMQ test:
//! lost tasks, duplicated calls, calls that overlap on one device, and calls out of acceptance order.

use super::certs_dir;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The contract's success answer (docs/api.md), what the workers take for a configured device.
pub const SUCCESS: &str = r#"{"code":200,"message":"success"}"#;
const NOT_FOUND: &str = r#"{"code":404,"message":"The requested equipment is not found"}"#;
/// The request header a call's task id is read from by default. The workers send none today (the
/// Service A contract has no such header); a call without it is attributed by its device when the
/// device has a single accepted task, or by an [`Identify`] that reads the body.
pub const TASK_HEADER: &str = "x-task-id";
const PATH_PREFIX: &str = "/api/v1/equipment/cpe/";

/// One call as the fake saw it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The `{id}` of the path.
    pub device: String,
    /// The task the call is for, as [`Identify`] found it.
    pub task: Option<String>,
    pub body: String,
    /// When the request reached the handler.
    pub start: Instant,
    /// When the success answer was handed over, or when the caller left before it; None while the
    /// call is in progress.
    pub end: Option<Instant>,
    /// True once the success answer was handed over: the device counts as configured.
    pub answered: bool,
}

impl Call {
    /// A finished, answered call, for hand-made histories.
    pub fn answered(device: &str, task: Option<&str>, start: Instant, end: Instant) -> Call {
        Call {
            device: device.to_owned(),
            task: task.map(str::to_owned),
            body: String::new(),
            start,
            end: Some(end),
            answered: true,
        }
    }
}

/// Finds the task of a call from its headers and body.
pub type Identify = Arc<dyn Fn(&hyper::HeaderMap, &str) -> Option<String> + Send + Sync>;

/// Reads [`TASK_HEADER`].
pub fn by_task_header() -> Identify {
    Arc::new(|headers, _| {
        headers
            .get(TASK_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    })
}

struct Shared {
    delay: Mutex<Duration>,
    calls: Mutex<Vec<Call>>,
    identify: Identify,
}

pub struct CallLog {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl CallLog {
    /// Listens on 127.0.0.1 (port chosen by the system) and answers each call after `delay`;
    /// tasks are read from [`TASK_HEADER`].
    pub async fn start(delay: Duration) -> CallLog {
        Self::start_with(delay, by_task_header()).await
    }

    pub async fn start_with(delay: Duration, identify: Identify) -> CallLog {
        cpe_config::tls::install_crypto_provider();
        let config = cpe_config::tls::server_config(&certs_dir()).expect("the test certificate loads");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            delay: Mutex::new(delay),
            calls: Mutex::new(Vec::new()),
            identify,
        });
        let serving = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (acceptor, shared) = (acceptor.clone(), serving.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
                    let io = TokioIo::new(tls);
                    let _ = if http2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .max_concurrent_streams(1000)
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        CallLog { addr, shared, accept }
    }

    /// The base URL for `--service-a-url`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Every call so far, in the order they started.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Marks its call ended when dropped: hyper drops the handler when the caller goes away.
struct Ending {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let mut calls = self.shared.calls.lock().unwrap();
        calls[self.index].end.get_or_insert_with(Instant::now);
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full>, std::convert::Infallible> {
    let start = Instant::now();
    let device = request
        .uri()
        .path()
        .strip_prefix(PATH_PREFIX)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned);
    let (Some(device), true) = (device, request.method() == hyper::Method::POST) else {
        return Ok(answer(404, NOT_FOUND));
    };
    let headers = request.headers().clone();
    let body = String::from_utf8_lossy(&read_body(request.into_body()).await).into_owned();
    let task = (shared.identify)(&headers, &body);
    let index = {
        let mut calls = shared.calls.lock().unwrap();
        calls.push(Call {
            device,
            task,
            body,
            start,
            end: None,
            answered: false,
        });
        calls.len() - 1
    };
    let ending = Ending {
        shared: shared.clone(),
        index,
    };
    let delay = *shared.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    {
        let mut calls = shared.calls.lock().unwrap();
        calls[index].answered = true;
        calls[index].end = Some(Instant::now());
    }
    drop(ending);
    Ok(answer(200, SUCCESS))
}

fn answer(status: u16, body: &'static str) -> Response<Full> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full(Some(Bytes::from_static(body.as_bytes()))))
        .unwrap()
}

async fn read_body(mut body: Incoming) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame.map(Frame::into_data) {
            Ok(Ok(data)) => bytes.extend_from_slice(&data),
            Ok(Err(_)) => {}
            Err(_) => break,
        }
    }
    bytes
}

/// A body sent in one frame.
pub struct Full(Option<Bytes>);

impl Body for Full {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Tasks by device, in acceptance order, and the calls each device had.
pub struct Checker;

/// What a history shows. Empty collections mean the property held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Accepted tasks not configured, with why: no call for them was answered, or (when statuses are
    /// given) the service does not report them completed.
    pub lost: BTreeMap<String, String>,
    /// Tasks called more than once, with their number of calls.
    pub duplicated_calls: BTreeMap<String, usize>,
    /// Per device, the pairs of calls (indexes into the calls given) whose [start, end] overlapped; a
    /// call not yet ended overlaps every call that started after it.
    pub overlapping_per_device: BTreeMap<String, Vec<(usize, usize)>>,
    /// Per device whose first calls for its tasks started in another order than the tasks were
    /// accepted: both orders.
    pub out_of_order_per_device: BTreeMap<String, Disorder>,
    /// Calls (indexes) no accepted task claims: their task is unknown, or was never accepted. The
    /// other findings cannot be trusted while there are any.
    pub unattributed_calls: Vec<usize>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Disorder {
    /// The device's tasks that had calls, in acceptance order.
    pub accepted: Vec<String>,
    /// The same tasks in the order their first calls started.
    pub called: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated_calls.is_empty()
            && self.overlapping_per_device.is_empty()
            && self.out_of_order_per_device.is_empty()
            && self.unattributed_calls.is_empty()
    }
}

impl Checker {
    /// Checks `calls` against `accepted` (task id, device id, acceptance sequence number). A call's
    /// task is [`Call::task`]; a call without one belongs to its device's task if the device has
    /// exactly one accepted task.
    pub fn report(accepted: &[(String, String, u64)], calls: &[Call]) -> Report {
        Self::check(accepted, calls, None)
    }

    /// As [`Checker::report`], and a task also counts as lost unless `statuses` (task id to the
    /// `status` the service answers: `completed`, `failed`, ...) says `completed`.
    pub fn report_with_statuses(
        accepted: &[(String, String, u64)],
        calls: &[Call],
        statuses: &HashMap<String, String>,
    ) -> Report {
        Self::check(accepted, calls, Some(statuses))
    }

    fn check(accepted: &[(String, String, u64)], calls: &[Call], statuses: Option<&HashMap<String, String>>) -> Report {
        let mut report = Report::default();
        let mut tasks_of_device: HashMap<&str, Vec<&(String, String, u64)>> = HashMap::new();
        for task in accepted {
            tasks_of_device.entry(task.1.as_str()).or_default().push(task);
        }
        let known: HashMap<&str, &(String, String, u64)> = accepted.iter().map(|t| (t.0.as_str(), t)).collect();
        // The task each call is for, when one can be told.
        let owner: Vec<Option<&str>> = calls
            .iter()
            .map(|call| match &call.task {
                Some(task) => known.get(task.as_str()).map(|t| t.0.as_str()),
                None => match tasks_of_device.get(call.device.as_str()).map(Vec::as_slice) {
                    Some([only]) => Some(only.0.as_str()),
                    _ => None,
                },
            })
            .collect();
        report.unattributed_calls = (0..calls.len()).filter(|&i| owner[i].is_none()).collect();

        let mut calls_of_task: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, task) in owner.iter().enumerate() {
            if let Some(task) = task {
                calls_of_task.entry(task).or_default().push(index);
            }
        }
        for (task, device, _) in accepted {
            let indexes = calls_of_task.get(task.as_str()).map(Vec::as_slice).unwrap_or_default();
            if indexes.len() > 1 {
                report.duplicated_calls.insert(task.clone(), indexes.len());
            }
            let configured = indexes.iter().any(|&i| calls[i].answered);
            let status = statuses.map(|statuses| statuses.get(task).map(String::as_str));
            let why = match (configured, status) {
                (false, _) => Some(format!("no answered call for device {device}")),
                (true, Some(Some("completed")) | None) => None,
                (true, Some(Some(other))) => Some(format!("configured, but the service reports it {other}")),
                (true, Some(None)) => Some("configured, but the service has no status for it".into()),
            };
            if let Some(why) = why {
                report.lost.insert(task.clone(), why);
            }
        }

        let mut calls_of_device: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, call) in calls.iter().enumerate() {
            calls_of_device.entry(call.device.as_str()).or_default().push(index);
        }
        for (device, indexes) in &mut calls_of_device {
            indexes.sort_by_key(|&i| calls[i].start);
            let mut overlaps = Vec::new();
            for (n, &earlier) in indexes.iter().enumerate() {
                for &later in &indexes[n + 1..] {
                    match calls[earlier].end {
                        Some(end) if calls[later].start >= end => break,
                        _ => overlaps.push((earlier, later)),
                    }
                }
            }
            if !overlaps.is_empty() {
                report.overlapping_per_device.insert(device.to_string(), overlaps);
            }

            let mut called: Vec<String> = Vec::new();
            for &index in indexes.iter() {
                if let Some(task) = owner[index] {
                    if !called.iter().any(|t| t == task) {
                        called.push(task.to_owned());
                    }
                }
            }
            let mut in_acceptance = tasks_of_device.get(device).cloned().unwrap_or_default();
            in_acceptance.sort_by_key(|t| t.2);
            let accepted_order: Vec<String> = in_acceptance
                .iter()
                .filter(|t| called.contains(&t.0))
                .map(|t| t.0.clone())
                .collect();
            if accepted_order != called {
                report.out_of_order_per_device.insert(
                    device.to_string(),
                    Disorder {
                        accepted: accepted_order,
                        called,
                    },
                );
            }
        }
        report
    }
}
