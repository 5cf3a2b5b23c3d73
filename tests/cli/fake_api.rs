//! A local HTTP server standing in for the market-data APIs: per path, replies in each API's
//! real shape, and scripted faults served first (429 with Retry-After, 5xx, a reply slower
//! than the client's timeout, a body cut short of its Content-Length, HTML). It records every
//! request's target and headers; it stops when dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, content type and body.
    Body(u16, &'static str, String),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// The body after this long (past the client's timeout).
    Slow(Duration, String),
    /// A 200 that claims more bytes than it sends, then closes.
    CutShort(String),
}

impl Reply {
    pub fn json(body: &str) -> Self {
        Reply::Body(200, "application/json", body.to_string())
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub target: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    queued: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    seen: Vec<Seen>,
}

pub struct FakeApi {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(stream, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { url, state, stop }
    }

    /// The reply `path` gives once its queued faults are served.
    pub fn on(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .defaults
            .insert(path.into(), reply);
    }

    /// Serves these replies to `path` first, in order.
    pub fn queue(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .unwrap()
            .queued
            .entry(path.into())
            .or_default()
            .extend(replies);
    }

    /// Every request so far, and forgets them.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let reply = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen { target, headers });
        let queued = s.queued.get_mut(&path).and_then(VecDeque::pop_front);
        queued.or_else(|| s.defaults.get(&path).cloned())
    };
    let mut out = stream;
    let write = |out: &mut TcpStream, status: u16, ctype: &str, extra: &str, body: &str, len| {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n",
            reason(status)
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body.as_bytes());
        let _ = out.flush();
    };
    match reply {
        None => write(&mut out, 404, "text/plain", "", "no such path", 12),
        Some(Reply::Body(status, ctype, body)) => {
            write(&mut out, status, ctype, "", &body, body.len())
        }
        Some(Reply::TooMany(secs)) => {
            let body = r#"{"error":"rate limited"}"#;
            let extra = format!("Retry-After: {secs}\r\n");
            write(&mut out, 429, "application/json", &extra, body, body.len())
        }
        Some(Reply::Slow(wait, body)) => {
            std::thread::sleep(wait);
            write(&mut out, 200, "application/json", "", &body, body.len())
        }
        Some(Reply::CutShort(body)) => {
            let half = &body[..body.len() / 2];
            write(&mut out, 200, "application/json", "", half, body.len())
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
