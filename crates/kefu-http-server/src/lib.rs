//! The one accept loop of the services that listen (`serve` and the sandbox): HTTP/1.1 with
//! hyper, and the limits a slow or hostile client meets.
//!
//! - A connection that is waiting for a request and has received nothing for
//!   [`ServerLimits::idle_timeout`] is closed; so is one that was opened and never spoke.
//! - A request head (request line and headers) that has not arrived whole
//!   [`ServerLimits::header_read_timeout`] after its first byte is cut off: the connection is
//!   closed.
//! - A request body that has not arrived whole [`ServerLimits::body_read_timeout`] after its
//!   head is answered `408` with `Connection: close`, whatever the handler made of the failed
//!   read.
//! - At most [`ServerLimits::max_connections`] connections are served at once. When a new one
//!   arrives at the limit, the connection that has been *reusable* the longest is closed to make
//!   room for it, as nginx does with its keep-alive connections: one waiting for its first or
//!   next request, still receiving a request head, or still receiving a request body. Otherwise
//!   anyone could deny service without a key by holding idle sockets open, and WeChat's
//!   callbacks would be refused with everything else. A connection that is busy, its request
//!   being handled (from the end of its body, or of its head if it has none, e.g. a long poll)
//!   or its answer being handed to the socket, is never closed for this. Only when every
//!   connection is busy is the new one accepted and answered `503` with `Connection: close`,
//!   rather than left in the kernel's backlog until the process runs out of file descriptors.
//!   Each such closing is counted in a `DEBUG` log line (`evicted`, the total since the start).
//!
//! hyper's own `header_read_timeout` is not used: it starts when the connection starts waiting
//! for a request, so it would also be the idle timeout, and the two are different settings.
//!
//! [`runtime`] holds what runs around the loop in a service's process: the Tokio runtime, the
//! stop signals and the one startup line.
#![forbid(unsafe_code)]

pub mod runtime;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// The error type of request and response bodies that the services hand to hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take, and how many may be connected at once.
///
/// ```
/// use std::time::Duration;
/// use kefu_http_server::ServerLimits;
///
/// let limits = ServerLimits::default()
///     .header_read_timeout(Duration::from_secs(5))
///     .max_connections(256);
/// assert_eq!(limits.max_connections, 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_read_timeout: Duration,
    /// How long a connection may wait for its next request (or its first) with nothing received.
    pub idle_timeout: Duration,
    /// Connections served at once. At the limit a new connection takes the place of the one
    /// reusable the longest (idle, or still receiving its request); when all are busy answering,
    /// it is answered `503`.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    /// The defaults of the `server.*` settings: 10 s, 30 s, 60 s and 1024 connections.
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl ServerLimits {
    /// Sets [`ServerLimits::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> ServerLimits {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::body_read_timeout`].
    pub fn body_read_timeout(mut self, timeout: Duration) -> ServerLimits {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> ServerLimits {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`ServerLimits::max_connections`] (at least 1).
    pub fn max_connections(mut self, connections: usize) -> ServerLimits {
        self.max_connections = connections.max(1);
        self
    }
}

/// The request body the services read: hyper's, with the body read deadline.
pub type RequestBody = DeadlineBody<Incoming>;

/// The address a request's connection came from, in the request's extensions. Behind a
/// reverse proxy it is the proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Closes the connection a request came on, with no answer written (the sandbox's `drop`
/// fault). Each connection has its own.
#[derive(Clone, Default)]
pub struct Closer(Arc<Notify>);

impl Closer {
    /// Drops the connection as soon as the serving loop sees it; the request's answer, if any,
    /// is never written.
    pub fn close_now(&self) {
        self.0.notify_one();
    }
}

/// Accepted connections over the limit that are still being answered `503`, at most. Beyond
/// this they are closed at once: answering must not cost as many descriptors as serving.
const REJECTING_AT_ONCE: usize = 64;
/// How long a `503` answer may take to leave, and the client to hang up after it.
const REJECT_LINGER: Duration = Duration::from_secs(1);
/// How long the accept loop pauses after `accept` fails (out of file descriptors and the like),
/// so that a persistent failure does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a connection that has been cut off for a timeout may take to go.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets the open connections
/// finish their requests (up to `grace`) and closes them.
///
/// `service` is called once per connection with that connection's [`Closer`], and returns the
/// function that answers its requests. `setting` names the setting that raises the connection
/// limit, for the messages that tell how.
pub async fn serve<M, S, F, B>(
    listener: TcpListener,
    limits: ServerLimits,
    setting: Option<&str>,
    mut service: M,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    M: FnMut(Closer) -> S,
    S: Fn(Request<RequestBody>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    warn_if_descriptors_run_out(limits.max_connections, setting);
    let places = Places::new(limits.max_connections);
    let rejecting = Arc::new(Semaphore::new(REJECTING_AT_ONCE));
    let over_limit = Bytes::from(over_limit_response(limits.max_connections, setting));
    let (stopping, stop_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Answers are small and written at once: send them without waiting for an ACK.
                    let _ = stream.set_nodelay(true);
                    let closer = Closer::default();
                    match places.admit(closer.clone()) {
                        Some(place) => {
                            let serve = service(closer.clone());
                            connections.spawn(connection(
                                stream,
                                peer,
                                limits,
                                serve,
                                closer,
                                stop_seen.clone(),
                                place,
                            ));
                        }
                        None => reject(stream, &rejecting, &over_limit),
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        "accepting a connection failed: {error}; pausing {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still in flight after {} s; closing their connections",
            grace.as_secs()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Descriptors the process needs besides its connections: the listener, the outbox's files,
/// outgoing connections to the platform and the desk, logs.
const OTHER_DESCRIPTORS: u64 = 256;

/// Says at start when the connection limit cannot be reached: accept would fail with "too many
/// open files" first, and the outbox and outgoing calls with it.
fn warn_if_descriptors_run_out(max_connections: usize, setting: Option<&str>) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    let needed = descriptors_needed(max_connections);
    if needed > limit {
        let lower = setting.map_or(String::new(), |setting| format!(" or lower {setting}"));
        tracing::warn!(
            max_connections,
            open_files_limit = limit,
            "serving {max_connections} connections needs about {needed} file descriptors but the process may open only {limit}; raise the limit (ulimit -n, LimitNOFILE= in systemd){lower}"
        );
    }
}

fn descriptors_needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(u64::try_from(REJECTING_AT_ONCE).unwrap_or(u64::MAX))
        .saturating_add(OTHER_DESCRIPTORS)
}

/// The process's soft limit of open files; `None` when unlimited or unknown.
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::Resource::NOFILE
            .get_soft()
            .ok()
            .filter(|&soft| soft != rlimit::INFINITY)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The whole `503` answer to a connection over the limit.
fn over_limit_response(max_connections: usize, setting: Option<&str>) -> String {
    let raise = setting.map_or(String::new(), |setting| format!(", or raise {setting}"));
    let body = serde_json::json!({
        "error": {
            "message": format!(
                "all {max_connections} connections the server may serve at once are busy answering requests; retry shortly or reuse a keep-alive connection{raise}"
            )
        }
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers a connection over the limit with `503` and closes it.
fn reject(stream: TcpStream, rejecting: &Arc<Semaphore>, answer: &Bytes) {
    let Ok(slot) = Arc::clone(rejecting).try_acquire_owned() else {
        // Even the rejections are too many: closing at once is the only answer left.
        return;
    };
    let answer = answer.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let _ = tokio::time::timeout(REJECT_LINGER, linger_answer(stream, answer)).await;
    });
}

/// Writes `answer`, then reads (and discards) whatever the client sent until it hangs up:
/// closing a socket with unread data sends a reset, which can destroy the answer before the
/// client reads it.
async fn linger_answer(mut stream: TcpStream, answer: Bytes) -> io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(&answer).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Serves one connection until the client goes, a timeout cuts it off, the service closes it,
/// or the server stops.
async fn connection<S, F, B>(
    stream: TcpStream,
    peer: SocketAddr,
    limits: ServerLimits,
    service: S,
    closer: Closer,
    mut stop: watch::Receiver<bool>,
    place: Place,
) where
    S: Fn(Request<RequestBody>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // Declared first, so dropped last: after the requests, which mark the place reusable as
    // they end.
    let _leave = Leave(place.clone());
    let activity = Arc::new(Mutex::new(Activity::new()));
    let io = TokioIo::new(Watched {
        io: stream,
        activity: Arc::clone(&activity),
    });
    let service = Arc::new(service);
    let requests = {
        let activity = Arc::clone(&activity);
        service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let service = Arc::clone(&service);
            let activity = Arc::clone(&activity);
            let place = place.clone();
            async move {
                Ok::<_, Infallible>(
                    answer(&*service, request, limits, activity, place.clone())
                        .await
                        .map(|inner| Answering { inner, place }),
                )
            }
        })
    };
    // The deadlines are kept below, so hyper needs no timer of its own.
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, requests);
    tokio::pin!(conn);
    let mut closing = *stop.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let check = lock(&activity).next_check(limits, Instant::now());
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!("connection ended: {error}");
                }
                return;
            }
            () = closer.0.notified() => return,
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(check) => {
                let expired = lock(&activity).expired(limits, Instant::now());
                if let Some(reason) = expired {
                    tracing::debug!("closing a connection: {reason}");
                    // A response still being written (to a client that does not read) gets a
                    // moment; then the socket goes whatever it holds.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// Calls the service with the body read deadline on the request, and answers `408` instead of
/// whatever it answered if the deadline passed.
async fn answer<S, F, B>(
    service: &S,
    request: Request<Incoming>,
    limits: ServerLimits,
    activity: Arc<Mutex<Activity>>,
    place: Place,
) -> Response<Either<B, Full<Bytes>>>
where
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Response<B>>,
{
    let _in_flight = InFlight::start(activity);
    // A connection still receiving its body stays reusable: otherwise slow bodies on the
    // unauthenticated callback routes would hold places for a whole body read timeout.
    let receiving = if request.body().is_end_stream() {
        place.busy();
        None
    } else {
        Some(place)
    };
    let timed_out = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| DeadlineBody {
        inner: body,
        deadline: after(Instant::now(), limits.body_read_timeout),
        sleep: None,
        timed_out: Arc::clone(&timed_out),
        receiving,
    });
    let response = service(request).await;
    if timed_out.load(Ordering::Relaxed) {
        // No path: a callback's path holds its secret.
        tracing::info!(
            status = 408,
            "a request body did not arrive within {} ms; answered 408 and closed the connection",
            limits.body_read_timeout.as_millis()
        );
        return body_timeout_response(limits.body_read_timeout);
    }
    response.map(Either::Left)
}

fn body_timeout_response<B>(timeout: Duration) -> Response<Either<B, Full<Bytes>>> {
    let body = serde_json::json!({
        "error": {
            "message": format!(
                "the request body did not arrive within {} ms; send it at once, or in less time",
                timeout.as_millis()
            )
        }
    })
    .to_string();
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The rest of the body may still come: the connection cannot carry another request.
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What a connection is doing, for its deadlines.
#[derive(Debug)]
struct Activity {
    /// Requests whose answer is being computed.
    in_flight: usize,
    /// When the connection last started waiting for a request.
    idle_since: Instant,
    /// When the first byte of the next request arrived, if it did.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: 0,
            idle_since: Instant::now(),
            head_started: None,
        }
    }

    /// The deadline that applies now, if any: a request being answered has none here (its body
    /// has its own, and a long poll may take its time).
    fn deadline(&self, limits: ServerLimits) -> Option<(Instant, &'static str)> {
        if self.in_flight > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(started) => (
                after(started, limits.header_read_timeout),
                "the request head did not arrive within server.header_read_timeout_ms",
            ),
            None => (
                after(self.idle_since, limits.idle_timeout),
                "no request within server.idle_timeout_ms",
            ),
        })
    }

    /// When to look again. Never later than one header read timeout from now: a request head
    /// that starts while the loop sleeps towards the idle deadline can have an earlier one.
    fn next_check(&self, limits: ServerLimits, now: Instant) -> Instant {
        let latest = after(now, limits.header_read_timeout);
        match self.deadline(limits) {
            Some((deadline, _)) => deadline.min(latest),
            None => latest,
        }
    }

    fn expired(&self, limits: ServerLimits, now: Instant) -> Option<&'static str> {
        self.deadline(limits)
            .filter(|(deadline, _)| *deadline <= now)
            .map(|(_, reason)| reason)
    }
}

/// `wait` after `start`; a wait too long for the clock is as good as forever (a year).
fn after(start: Instant, wait: Duration) -> Instant {
    start
        .checked_add(wait)
        .unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600))
}

fn lock(activity: &Mutex<Activity>) -> std::sync::MutexGuard<'_, Activity> {
    // The fields are plain values, consistent after any panic: keep using them.
    activity.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a request in flight from its head to its answer.
struct InFlight(Arc<Mutex<Activity>>);

impl InFlight {
    fn start(activity: Arc<Mutex<Activity>>) -> InFlight {
        {
            let mut state = lock(&activity);
            state.in_flight += 1;
            state.head_started = None;
        }
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.head_started = None;
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way out. The connection stays busy until hyper has taken all of
    /// it (and drops it): an answer half written is not cut off to make room. A client that
    /// does not read holds the place no longer than before: the idle timeout runs from the
    /// handler's answer.
    struct Answering<B> {
        #[pin]
        inner: B,
        place: Place,
    }

    impl<B> PinnedDrop for Answering<B> {
        fn drop(this: Pin<&mut Self>) {
            // Reusable again, as the most recently used.
            this.project().place.reusable();
        }
    }
}

impl<B: Body> Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connections being served, and which of them may be closed to make room for a new one.
struct Places {
    max: usize,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Gives each connection its id and each move to reusable its rank: both only grow, so the
    /// smallest rank is the connection reusable the longest.
    next: u64,
    /// The connections being served, by id.
    open: HashMap<u64, Slot>,
    /// The reusable connections' ids, by rank.
    reusable: BTreeMap<u64, u64>,
    /// Connections closed to make room, since the start.
    evicted: u64,
}

struct Slot {
    closer: Closer,
    /// Its key in [`Slots::reusable`], when it is reusable.
    rank: Option<u64>,
}

impl Places {
    fn new(max: usize) -> Arc<Places> {
        Arc::new(Places {
            max: max.max(1),
            slots: Mutex::new(Slots::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every change below leaves the maps consistent before anything that could panic.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection (reusable until its first request is being handled), made
    /// by closing the connection reusable the longest if all are taken; `None` when every
    /// connection is busy answering.
    fn admit(self: &Arc<Places>, closer: Closer) -> Option<Place> {
        let mut slots = self.lock();
        if slots.open.len() >= self.max {
            let (_, oldest) = slots.reusable.pop_first()?;
            if let Some(evicted) = slots.open.remove(&oldest) {
                evicted.closer.close_now();
            }
            slots.evicted += 1;
            tracing::debug!(
                evicted = slots.evicted,
                "{} connections open, the limit: closed the one reusable the longest to serve a new one",
                self.max
            );
        }
        let id = slots.next;
        slots.next += 1;
        slots.open.insert(
            id,
            Slot {
                closer,
                rank: Some(id),
            },
        );
        slots.reusable.insert(id, id);
        Some(Place {
            places: Arc::clone(self),
            id,
        })
    }
}

/// One connection's place among the [`Places`]. Once the connection is closed (or evicted),
/// its changes are ignored.
#[derive(Clone)]
struct Place {
    places: Arc<Places>,
    id: u64,
}

impl Place {
    /// The connection is answering a request: it must not be closed to make room.
    fn busy(&self) {
        let mut slots = self.places.lock();
        if let Some(rank) = slots
            .open
            .get_mut(&self.id)
            .and_then(|slot| slot.rank.take())
        {
            slots.reusable.remove(&rank);
        }
    }

    /// The connection may be closed to make room, after those reusable for longer.
    fn reusable(&self) {
        let mut slots = self.places.lock();
        let rank = slots.next;
        let Some(slot) = slots.open.get_mut(&self.id) else {
            return;
        };
        let old = slot.rank.replace(rank);
        slots.next += 1;
        if let Some(old) = old {
            slots.reusable.remove(&old);
        }
        slots.reusable.insert(rank, self.id);
    }
}

/// Gives a connection's place up when the connection ends.
struct Leave(Place);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut slots = self.0.places.lock();
        if let Some(slot) = slots.open.remove(&self.0.id)
            && let Some(rank) = slot.rank
        {
            slots.reusable.remove(&rank);
        }
    }
}

/// The connection's socket, noting when a request starts to arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Mutex<Activity>>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            let mut state = lock(&self.activity);
            if state.in_flight == 0 && state.head_started.is_none() {
                state.head_started = Some(Instant::now());
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// A request body that fails once its deadline has passed before its end arrived.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    /// Made on the first wait only: most bodies are already there, or empty.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
    /// The connection's place while the body is still arriving; marked busy at its end.
    receiving: Option<Place>,
}

/// The error of a [`DeadlineBody`] whose deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
                // Received whole (or failed): the handler now answers, and must not be cut off.
                if let Some(place) = this.receiving.take() {
                    place.busy();
                }
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_and_never_allow_zero_connections() {
        let limits = ServerLimits::default()
            .idle_timeout(Duration::from_millis(5))
            .body_read_timeout(Duration::from_millis(6))
            .max_connections(0);
        assert_eq!(limits.idle_timeout, Duration::from_millis(5));
        assert_eq!(limits.body_read_timeout, Duration::from_millis(6));
        assert_eq!(limits.max_connections, 1);
        // Built by hand, limits may be absurd: deadlines saturate rather than panic.
        let forever = ServerLimits::default()
            .idle_timeout(Duration::MAX)
            .header_read_timeout(Duration::MAX);
        let activity = Activity::new();
        assert!(activity.deadline(forever).is_some());
        assert!(activity.next_check(forever, Instant::now()) > Instant::now());
    }

    #[test]
    fn the_default_limit_needs_more_than_the_common_soft_limit() {
        // The default limit of 1024 connections does not fit in the common soft limit of 1024.
        assert!(descriptors_needed(1024) > 1024);
        assert!(descriptors_needed(1024) <= 65_536);
        assert_eq!(descriptors_needed(usize::MAX), u64::MAX);
    }

    #[test]
    fn the_over_limit_answer_is_a_whole_http_response_with_a_json_error() {
        assert!(!over_limit_response(8, None).contains("raise"));
        let text = over_limit_response(8, Some("server.max_connections"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("server.max_connections"), "{message}");
    }

    #[test]
    fn deadlines_follow_what_the_connection_is_doing() {
        let limits = ServerLimits::default()
            .header_read_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(60));
        let mut activity = Activity::new();
        let start = activity.idle_since;
        let secs = |n| start + Duration::from_secs(n);
        assert_eq!(activity.deadline(limits).unwrap().0, secs(60));
        // The loop looks again before a head that starts now could expire.
        assert_eq!(activity.next_check(limits, start), secs(10));
        assert!(activity.expired(limits, secs(59)).is_none());
        assert!(activity.expired(limits, secs(60)).is_some());
        activity.head_started = Some(secs(5));
        assert_eq!(activity.deadline(limits).unwrap().0, secs(15));
        assert_eq!(activity.next_check(limits, secs(6)), secs(15));
        activity.in_flight = 1;
        assert!(activity.deadline(limits).is_none());
        assert!(activity.expired(limits, secs(1000)).is_none(), "in flight");
        activity.in_flight = 0;
        assert!(activity.expired(limits, secs(1000)).is_some());
    }

    #[test]
    fn a_request_marks_the_connection_busy_then_idle_again() {
        let activity = Arc::new(Mutex::new(Activity::new()));
        lock(&activity).head_started = Some(Instant::now());
        let in_flight = InFlight::start(Arc::clone(&activity));
        assert_eq!(lock(&activity).in_flight, 1);
        assert!(lock(&activity).head_started.is_none());
        let before = Instant::now();
        drop(in_flight);
        let state = lock(&activity);
        assert_eq!(state.in_flight, 0);
        assert!(state.idle_since >= before);
    }

    /// Whether `closer` has been told to close, without waiting.
    fn closed(closer: &Closer) -> bool {
        use std::pin::pin;
        let notified = pin!(closer.0.notified());
        std::future::Future::poll(notified, &mut Context::from_waker(std::task::Waker::noop()))
            .is_ready()
    }

    #[test]
    fn at_the_limit_the_connection_reusable_the_longest_makes_room() {
        let places = Places::new(3);
        let closers: Vec<Closer> = (0..3).map(|_| Closer::default()).collect();
        let held: Vec<Place> = closers
            .iter()
            .map(|closer| places.admit(closer.clone()).unwrap())
            .collect();
        // The first is answering a request; the second was used since the third arrived.
        held[0].busy();
        held[1].busy();
        held[1].reusable();
        let fourth = Closer::default();
        let _fourth = places.admit(fourth.clone()).unwrap();
        assert!(!closed(&closers[0]), "a busy connection is never evicted");
        assert!(!closed(&closers[1]));
        assert!(closed(&closers[2]), "the one idle the longest goes");
        assert_eq!(places.lock().open.len(), 3);
        assert_eq!(places.lock().evicted, 1);
        // The evicted connection's own changes come too late to matter.
        held[2].reusable();
        held[2].busy();
        assert_eq!(places.lock().open.len(), 3);
        let _fifth = places.admit(Closer::default()).unwrap();
        assert!(closed(&closers[1]));
        assert!(!closed(&fourth), "the newest goes last");
    }

    #[test]
    fn when_every_connection_is_busy_there_is_no_place_until_one_ends() {
        let places = Places::new(2);
        let first = places.admit(Closer::default()).unwrap();
        let second = places.admit(Closer::default()).unwrap();
        first.busy();
        second.busy();
        assert!(places.admit(Closer::default()).is_none());
        drop(Leave(second));
        let third = places.admit(Closer::default()).unwrap();
        drop(Leave(third));
        drop(Leave(first));
        let slots = places.lock();
        assert!(slots.open.is_empty() && slots.reusable.is_empty());
        assert_eq!(slots.evicted, 0);
    }

    #[test]
    fn a_connection_is_busy_until_its_answer_is_handed_over() {
        let places = Places::new(1);
        let place = places.admit(Closer::default()).unwrap();
        place.busy();
        let answer = Answering {
            inner: Full::new(Bytes::from_static(b"{}")),
            place,
        };
        assert!(
            places.admit(Closer::default()).is_none(),
            "answer being written"
        );
        drop(answer);
        assert_eq!(places.lock().reusable.len(), 1);
        assert!(places.admit(Closer::default()).is_some());
    }

    #[tokio::test]
    async fn a_connection_is_reusable_until_its_body_has_arrived_whole() {
        use http_body_util::BodyExt as _;
        let places = Places::new(1);
        let place = places.admit(Closer::default()).unwrap();
        let body = DeadlineBody {
            inner: Full::new(Bytes::from_static(b"{}")),
            deadline: after(Instant::now(), Duration::from_secs(60)),
            sleep: None,
            timed_out: Arc::new(AtomicBool::new(false)),
            receiving: Some(place),
        };
        assert_eq!(places.lock().reusable.len(), 1);
        body.collect().await.unwrap();
        assert!(
            places.lock().reusable.is_empty(),
            "busy once the body is in"
        );
        assert!(places.admit(Closer::default()).is_none());
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_fails_and_says_so() {
        use http_body_util::BodyExt as _;
        /// A body whose client never sends the rest.
        struct Stalled;
        impl Body for Stalled {
            type Data = Bytes;
            type Error = Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                Poll::Pending
            }
        }
        let inner = Stalled;
        let timed_out = Arc::new(AtomicBool::new(false));
        let body = DeadlineBody {
            inner,
            // Already passed: the body fails at its first wait.
            deadline: Instant::now(),
            sleep: None,
            timed_out: Arc::clone(&timed_out),
            receiving: None,
        };
        let error = body.collect().await.unwrap_err();
        assert!(error.is::<BodyTimeout>(), "{error}");
        assert!(timed_out.load(Ordering::Relaxed));
    }
}
