//! A Prometheus scrape endpoint (feature `http`): `GET /metrics` served from the registry's
//! *published* snapshot.
//!
//! ```
//! use std::time::Duration;
//!
//! let registry = weir::Registry::new();
//! registry.counter("jobs_total", "Jobs run", &[])?.add(3);
//! let _refresher = registry.spawn_refresher(Duration::from_secs(1))?;
//! let server = weir::export::serve("127.0.0.1:0", &registry)?; // port 0: any free port
//! println!("scrape {}", server.url()); // http://127.0.0.1:<port>/metrics
//! drop(server); // stops accepting, closes connections, joins the server thread
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it serves
//!
//! | request | response |
//! | --- | --- |
//! | `GET /metrics` | `200`, the published snapshot rendered by [`super::prometheus`] |
//! | `HEAD /metrics` | `200`, the same headers (with `Content-Length`), no body |
//! | another method on `/metrics` | `405 Method Not Allowed` with `Allow: GET, HEAD` |
//! | any other path | `404 Not Found` |
//!
//! The query string is ignored. The format is chosen by content negotiation on `Accept`:
//! OpenMetrics 1.0 ([`OPENMETRICS_CONTENT_TYPE`]) when the client accepts
//! `application/openmetrics-text` (any `version`) with a quality at least that of any
//! `text/plain` it lists, else the text format 0.0.4 ([`TEXT_CONTENT_TYPE`]). A Prometheus server
//! asks for OpenMetrics first, so it gets OpenMetrics; `curl` (`Accept: */*`) gets 0.0.4.
//! [`RenderOptions`] (bucket boundaries, summaries, scales) are passed through with
//! [`ServerBuilder::render_options`]. Responses are not compressed.
//!
//! # Refresh policy: what a scrape sees, and what it can wait on
//!
//! A scrape renders [`Registry::published`]: the snapshot of the last refresh, loaded through
//! `arc-swap`. By default a scrape takes **no lock at all** that a writer, a policy decision or
//! a refresher could wait on, and it never reads metric cells; run a refresher
//! ([`Registry::spawn_refresher`]) at an interval no longer than the scrape interval, or the
//! scrape returns the same (possibly empty, before the first refresh) view each time.
//!
//! With [`ServerBuilder::max_age`], a scrape that finds the published view older than the max
//! age (by the registry's clock) first calls [`Registry::refresh_now`], and then serves (and
//! publishes, for everyone) the fresh view. `refresh_now` takes the refresher mutex, which only
//! refreshers take (so it can wait for a background refresher's refresh in progress), and no
//! lock that recording, series creation or decisions take. Writers and decisions never wait on
//! a scrape in either mode. `max_age(Duration::ZERO)`
//! refreshes on every scrape.
//!
//! The rendered text is cached per snapshot and format: two Prometheus servers scraping the
//! same published snapshot (an HA pair) cost one rendering.
//!
//! # Threads, connections, shutdown
//!
//! [`ServerBuilder::bind`] binds the listener on the caller's thread (so bind errors and the
//! bound address come back at once; bind port 0 and read [`Server::local_addr`]) and starts one
//! thread, `weir-http`, running hyper 1.x's HTTP/1.1 server on a private current-thread tokio
//! runtime. Nothing async appears in the API and no runtime is needed by the caller. Rendering
//! happens on that thread; a scrape is one short render (or a cache hit).
//!
//! At most [`ServerBuilder::max_connections`] connections are served at once (more are closed
//! as soon as they are accepted); a connection that does not send a complete request head
//! within [`ServerBuilder::header_read_timeout`] (30 s by default) is closed, which also closes
//! keep-alive connections left idle that long.
//!
//! Dropping the [`Server`] (or [`Server::shutdown`]) stops accepting, lets each connection finish
//! the response it is writing (for up to one second) while closing idle ones, then drops the
//! runtime and joins the thread: when `drop` returns, the port is closed and nothing of the
//! server is left running.
//!
//! # Why hyper on a private runtime
//!
//! The endpoint must shut down cleanly (every thread joined, every connection closed) and must
//! not hang on a slow or idle client. hyper is the most used and best kept HTTP implementation in
//! Rust, with header-read timeouts and graceful connection shutdown; tokio's current-thread
//! runtime (features `rt`, `net`, `time`, `sync` only: no macros, no thread pool) runs it on one
//! thread that can be joined. `tiny_http`, the lightest blocking server, was considered: its
//! accept and connection threads are detached and cannot be joined, it has no read timeouts, and
//! a keep-alive connection open at shutdown keeps a thread blocked until the client leaves. The
//! whole stack is behind the `http` feature: the default build has no HTTP or async dependency.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::prometheus::{self, OPENMETRICS_CONTENT_TYPE, RenderOptions, TEXT_CONTENT_TYPE};
use crate::registry::{Published, Registry};

/// The path metrics are served at.
pub const METRICS_PATH: &str = "/metrics";

/// Default for [`ServerBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default for [`ServerBuilder::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may take to finish the response it is writing once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long the accept loop pauses after an accept error (out of file descriptors, say), so it
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `registry`'s published snapshot at `http://<addr>/metrics` with the default options:
/// shorthand for `Server::builder(registry).bind(addr)`. See the [module docs](self).
///
/// `addr` may name port 0 to take any free port; [`Server::local_addr`] tells which. The server
/// runs until the returned [`Server`] is dropped.
pub fn serve<A: ToSocketAddrs>(addr: A, registry: &Registry) -> Result<Server, ServeError> {
    Server::builder(registry).bind(addr)
}

// === ServeError ===

/// The endpoint could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be resolved (for a string, it is not `host:port`, or the host name
    /// did not resolve). Pass an address such as `"127.0.0.1:9100"` or a [`SocketAddr`].
    Resolve(io::Error),
    /// The address resolved to no socket address at all. Pass an address that names a host.
    NoAddress,
    /// Binding failed for every address the argument resolved to; `addr` is the last one tried.
    /// `AddrInUse`: another process (or another server) has the port, so choose another, or
    /// port 0 for any free one. `PermissionDenied`: ports below 1024 need privileges.
    /// `AddrNotAvailable`: the IP address is not one of this machine's.
    Bind {
        /// The last address tried.
        addr: SocketAddr,
        /// Why binding it failed.
        source: io::Error,
    },
    /// The server's runtime or thread could not be started: the process is out of threads or
    /// file descriptors. Free some and retry.
    Start(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Resolve(e) => write!(f, "could not resolve the listen address: {e}"),
            ServeError::NoAddress => f.write_str("the listen address resolved to no address"),
            ServeError::Bind { addr, source } => write!(f, "could not bind {addr}: {source}"),
            ServeError::Start(e) => write!(f, "could not start the metrics server: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Resolve(e) | ServeError::Start(e) => Some(e),
            ServeError::Bind { source, .. } => Some(source),
            ServeError::NoAddress => None,
        }
    }
}

// === ServerBuilder ===

/// Configures a [`Server`]; made by [`Server::builder`].
///
/// ```
/// use std::time::Duration;
/// use weir::export::http::Server;
/// use weir::export::prometheus::RenderOptions;
///
/// let registry = weir::Registry::new();
/// let latency = registry
///     .describe("job_duration_seconds", "Job latency")
///     .unit("seconds")
///     .histogram_family(&[])?
///     .with(&[])?;
/// latency.record(1_500_000); // nanoseconds
/// let server = Server::builder(&registry)
///     .render_options(
///         RenderOptions::new()
///             .buckets("job_duration_seconds", vec![1_000_000, 10_000_000])?
///             .scale("job_duration_seconds", 1e-9)?,
///     )
///     .max_age(Duration::from_secs(5)) // refresh on scrape if the published view is older
///     .bind("127.0.0.1:0")?;
/// assert_eq!(server.local_addr().ip().to_string(), "127.0.0.1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    registry: Registry,
    options: RenderOptions,
    max_age: Option<Duration>,
    max_connections: usize,
    header_read_timeout: Option<Duration>,
}

impl ServerBuilder {
    /// How histograms are exported and values scaled (bucket boundaries, summaries, scales).
    /// Default: [`RenderOptions::default`].
    pub fn render_options(mut self, options: RenderOptions) -> Self {
        self.options = options;
        self
    }

    /// Refresh on scrape: a scrape that finds the published view older than `max_age` (by the
    /// registry's clock) calls [`Registry::refresh_now`] first. Default: never (serve the
    /// published view as it is). `Duration::ZERO` refreshes on every scrape. See the
    /// [module docs](self#refresh-policy-what-a-scrape-sees-and-what-it-can-wait-on) for what a
    /// refresh can wait on.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The most connections served at once; connections accepted beyond it are closed at once.
    /// Default [`DEFAULT_MAX_CONNECTIONS`]; 0 is taken as 1.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a connection may take to send a complete request head, counted from the moment
    /// the server starts waiting for it (so this also closes keep-alive connections idle that
    /// long). `None` disables the timeout. Default [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub fn header_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Binds `addr` (the first of its resolved addresses that binds) and starts serving. Port 0
    /// takes any free port; see [`Server::local_addr`].
    pub fn bind<A: ToSocketAddrs>(self, addr: A) -> Result<Server, ServeError> {
        let listener = bind_first(addr)?;
        let local_addr = listener.local_addr().map_err(ServeError::Start)?;
        listener.set_nonblocking(true).map_err(ServeError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServeError::Start)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(ServeError::Start)?
        };
        let (stop_tx, stop_rx) = watch::channel(());
        let config = Config {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
        };
        let state = Arc::new(State {
            registry: self.registry,
            options: self.options,
            max_age: self.max_age,
            cache: Mutex::new(Cache::default()),
        });
        let thread = thread::Builder::new()
            .name("weir-http".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, state, config, stop_rx));
                // Dropping the runtime cancels any connection task still running (each one
                // closes its socket) and waits for nothing else: no blocking tasks are spawned.
                drop(runtime);
            })
            .map_err(ServeError::Start)?;
        Ok(Server {
            local_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

fn bind_first<A: ToSocketAddrs>(addr: A) -> Result<std::net::TcpListener, ServeError> {
    let addrs = addr.to_socket_addrs().map_err(ServeError::Resolve)?;
    let mut last = None;
    for a in addrs {
        match std::net::TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(source) => last = Some(ServeError::Bind { addr: a, source }),
        }
    }
    Err(last.unwrap_or(ServeError::NoAddress))
}

// === Server ===

/// A running scrape endpoint. Dropping it (or [`shutdown`](Self::shutdown)) stops the server
/// and joins its thread; see the [module docs](self#threads-connections-shutdown).
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// Dropping the sender tells the accept loop and every connection to stop.
    stop: Option<watch::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// A builder for a server that serves `registry` (a clone of the handle; the registry is
    /// shared, not copied).
    pub fn builder(registry: &Registry) -> ServerBuilder {
        ServerBuilder {
            registry: registry.clone(),
            options: RenderOptions::default(),
            max_age: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
        }
    }

    /// The address the server is bound to (with the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>/metrics`. For a server bound to an unspecified address
    /// (`0.0.0.0`, `[::]`) this names that address; scrape it through one of the machine's.
    pub fn url(&self) -> String {
        format!("http://{}{METRICS_PATH}", self.local_addr)
    }

    /// Stops the server and waits for its thread to end (what dropping it does).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only panics if rendering panicked; there is nothing left to clean up.
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

// === the server thread ===

#[derive(Clone, Copy)]
struct Config {
    max_connections: usize,
    header_read_timeout: Option<Duration>,
}

enum Either<L, R> {
    Left(L),
    Right(R),
}

/// Polls `stop` first, then `work`; whichever is ready first wins. (`tokio::select!` without
/// the `macros` feature.)
async fn until_stopped<W: Future, S: Future>(work: W, stop: S) -> Either<W::Output, S::Output> {
    let mut work = pin!(work);
    let mut stop = pin!(stop);
    poll_fn(|cx| {
        if let Poll::Ready(s) = stop.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(s));
        }
        if let Poll::Ready(w) = work.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(w));
        }
        Poll::Pending
    })
    .await
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    config: Config,
    mut stop: watch::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        // `changed` fails only when the sender (the `Server`) is dropped: the stop signal.
        let accepted = match until_stopped(listener.accept(), stop.changed()).await {
            Either::Left(accepted) => accepted,
            Either::Right(_) => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Out of file descriptors, or a connection reset before it was accepted: pause
                // rather than spin, then go on accepting.
                let pause = tokio::time::sleep(ACCEPT_ERROR_PAUSE);
                if let Either::Right(_) = until_stopped(pause, stop.changed()).await {
                    break;
                }
                continue;
            }
        };
        if connections.len() >= config.max_connections {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            state.clone(),
            config,
            stop.clone(),
        ));
    }
    // Stop accepting: the port closes here.
    drop(listener);
    // Each connection saw the same stop signal and is finishing its response or closing; give
    // them a moment, then the caller drops the runtime, which cancels what is left.
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    connections.abort_all();
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    config: Config,
    mut stop: watch::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = state.respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    if let Either::Right(_) = until_stopped(connection.as_mut(), stop.changed()).await {
        // Finish the response in progress (if any), then close; an idle connection closes now.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

// === responses ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The last rendering of each format, keyed by snapshot sequence number.
#[derive(Default)]
struct Cache {
    text: Option<(u64, Bytes)>,
    openmetrics: Option<(u64, Bytes)>,
}

struct State {
    registry: Registry,
    options: RenderOptions,
    max_age: Option<Duration>,
    /// Touched only by the server's one thread: never contended.
    cache: Mutex<Cache>,
}

impl State {
    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != METRICS_PATH {
            return plain(
                StatusCode::NOT_FOUND,
                "Not found: metrics are served at /metrics\n",
            );
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed: use GET or HEAD\n",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let accept = request
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let format = if wants_openmetrics(accept) {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        let body = self.render(&self.current(), format);
        let mut response = Response::new(Full::new(body));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        // For HEAD, hyper writes the headers (with this body's Content-Length) and no body.
        response
    }

    /// The published view, refreshed first if it is older than `max_age`.
    fn current(&self) -> Arc<Published> {
        let published = self.registry.published_full();
        let Some(max_age) = self.max_age else {
            return published;
        };
        let age = self.registry.clock().now().saturating_sub(published.time());
        if max_age.is_zero() || age > max_age {
            self.registry.refresh_now()
        } else {
            published
        }
    }

    fn render(&self, published: &Published, format: Format) -> Bytes {
        let seq = published.sequence();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match format {
            Format::Text => &mut cache.text,
            Format::OpenMetrics => &mut cache.openmetrics,
        };
        if let Some((cached_seq, body)) = slot
            && *cached_seq == seq
        {
            return body.clone();
        }
        let text = match format {
            Format::Text => prometheus::render_with(published, &self.options),
            Format::OpenMetrics => prometheus::render_openmetrics_with(published, &self.options),
        };
        let body = Bytes::from(text);
        *slot = Some((seq, body.clone()));
        body
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether the `Accept` header values ask for OpenMetrics: the highest quality given to
/// `application/openmetrics-text` is above zero and at least the highest given to `text/plain`.
/// Wildcards (`*/*`, `text/*`) rank both equally and so decide nothing; a media range whose `q`
/// does not parse is ignored.
fn wants_openmetrics<'a>(accept: impl Iterator<Item = &'a str>) -> bool {
    let mut openmetrics: f64 = 0.0;
    let mut text: f64 = 0.0;
    for range in accept.flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = Some(1.0);
        for param in parts {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q));
            }
        }
        let Some(q) = q else { continue };
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            openmetrics = openmetrics.max(q);
        } else if media.eq_ignore_ascii_case("text/plain") {
            text = text.max(q);
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

#[cfg(test)]
mod tests;
