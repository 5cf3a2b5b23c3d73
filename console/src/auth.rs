//! Who may read the console: the API's bearer token, or a session cookie that the login form
//! sets once the token was typed in. With no token the console serves everyone, which the CLI
//! allows only on a loopback address and only when asked (`--no-auth`).
//!
//! The cookie is `HttpOnly` (scripts cannot read it) and `SameSite=Strict` (another site's page
//! cannot send it); it names a random session the process keeps in memory, so a restart logs
//! everyone out and the token itself never travels in a cookie. Sessions last 12 hours.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::ConsoleState;
use crate::pages::{esc, page};

/// The session cookie's name.
pub const COOKIE: &str = "cryptolake_session";

const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The token, and the sessions the login form opened.
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<String>,
    sessions: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Auth {
    /// `None`: no authentication at all (`--no-auth`).
    pub fn new(token: Option<String>) -> Self {
        Self {
            token,
            sessions: Arc::default(),
        }
    }

    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| subtle::ConstantTimeEq::ct_eq(t.as_bytes(), given.as_bytes()).into())
    }

    fn open_session(&self) -> String {
        let bytes: [u8; 32] = rand::random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, opened| now.duration_since(*opened) < SESSION_LIFETIME);
        sessions.insert(id.clone(), now);
        id
    }

    fn session_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(id)
            .is_some_and(|opened| opened.elapsed() < SESSION_LIFETIME)
    }

    fn close_session(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(id);
    }

    /// Whether a request's headers carry the token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.token_matches(t)) {
            return true;
        }
        session_cookie(headers).is_some_and(|id| self.session_valid(id))
    }
}

/// The session id in a request's `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Lets a request through, or answers 401 (JSON and metrics) or sends a browser to the login
/// form (pages).
pub async fn require(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    if state.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path.starts_with("/v1/") || path == "/metrics" {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "a valid bearer token or session is required"})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let next_path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    Redirect::to(&format!("/login?next={}", query_escape(&next_path))).into_response()
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after logging in: only a path of this site (`/...`, never `//host`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

fn login_page(next: &str, failed: bool) -> String {
    let warning = if failed {
        r#"<p class="error" id="login-error">That token is not the API's token.</p>"#
    } else {
        ""
    };
    page(
        "Log in",
        "",
        &format!(
            r#"<h1>Log in</h1>{warning}
<form method="post" action="/login" class="login">
<label>API token <input type="password" name="token" id="token" autocomplete="current-password" autofocus></label>
<input type="hidden" name="next" value="{}">
<button type="submit" id="login">Log in</button>
</form>
<p class="muted">The token is the scheduler's API token (<code>[scheduler] token</code> or <code>CRYPTOLAKE_API_TOKEN</code>).</p>"#,
            esc(next)
        ),
    )
}

pub async fn login_form(Query(q): Query<LoginQuery>) -> Html<String> {
    Html(login_page(safe_next(q.next.as_deref()), false))
}

pub async fn login(State(state): State<ConsoleState>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref()).to_string();
    if !state.auth.token_matches(&form.token) {
        return (StatusCode::UNAUTHORIZED, Html(login_page(&next, true))).into_response();
    }
    let id = state.auth.open_session();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

pub async fn logout(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.auth.close_session(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "cryptolake_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_what_the_login_opened_and_the_token_is_compared_whole() {
        let auth = Auth::new(Some("0123456789abcdef".into()));
        assert!(auth.token_matches("0123456789abcdef"));
        assert!(!auth.token_matches("0123456789abcde"));
        let id = auth.open_session();
        assert_eq!(id.len(), 64);
        let mut headers = HeaderMap::new();
        assert!(!auth.allows(&headers));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={id}")).unwrap(),
        );
        assert!(auth.allows(&headers));
        auth.close_session(&id);
        assert!(!auth.allows(&headers));
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(auth.allows(&bearer));
        assert!(Auth::new(None).allows(&HeaderMap::new()));
    }

    #[test]
    fn login_sends_back_only_to_this_site() {
        assert_eq!(
            safe_next(Some("/markets?symbol=BTC-USD")),
            "/markets?symbol=BTC-USD"
        );
        assert_eq!(safe_next(Some("//evil.example/x")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            query_escape("/markets?symbol=BTC-USD&x=1"),
            "/markets%3Fsymbol%3DBTC-USD%26x%3D1"
        );
    }
}
