//! Who may ask: the token, the host name on loopback, same-origin requests only, and the
//! headers that keep pages from being framed or sniffed.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::Shared;
use super::html::{self, enc, page};

const COOKIE: &str = "cellshard_token";

/// The token check: every request but `/health` carries the token, or, when the viewer has
/// none, is addressed to localhost by name.
pub(super) async fn auth(State(v): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let Some(token) = v.opts.token.as_deref() else {
        // Loopback without a token: only requests addressed to this machine by name, so a
        // web page cannot reach the viewer by rebinding its own host name to 127.0.0.1.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = match host.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        if !matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
            let msg = "this viewer answers only requests for localhost; give --token to serve other hosts";
            return (
                StatusCode::FORBIDDEN,
                Html(page("Forbidden", "", &html::error(msg))),
            )
                .into_response();
        }
        return next.run(req).await;
    };
    let token_enc = enc(token);
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string());
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    let given = |t: Option<&str>, want: &str| t.is_some_and(|t| same_bytes(t, want));
    if given(bearer, token) || given(cookie.as_deref(), &token_enc) {
        return next.run(req).await;
    }
    if query.is_some_and(|q| same_bytes(&decode(&q), token)) {
        let mut res = next.run(req).await;
        let cookie = format!("{COOKIE}={token_enc}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(c) = HeaderValue::from_str(&cookie) {
            res.headers_mut().insert(header::SET_COOKIE, c);
        }
        return res;
    }
    (
        StatusCode::UNAUTHORIZED,
        Html(page("Token required", "", &html::error("this viewer needs its token: open it with ?token=... or send Authorization: Bearer ..."))),
    )
        .into_response()
}

/// Percent-decode a query string value (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a == b` in time that depends only on the lengths, so a token cannot be guessed byte by
/// byte from response times.
fn same_bytes(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuse a request another site's page makes: its `Origin` is not this server's own, or
/// the browser says it is cross-site. A request with neither header (curl, scripts) passes.
pub(super) async fn same_origin(req: Request, next: Next) -> Response {
    let h = req.headers();
    let text = |name| h.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let cross_site = text("sec-fetch-site") == Some("cross-site");
    let foreign = text(header::ORIGIN.as_str()).is_some_and(|origin| {
        let host = text(header::HOST.as_str()).unwrap_or("");
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            != Some(host)
    });
    if cross_site || foreign {
        let msg = "refused: a cross-site request (this viewer answers only its own pages, curl and scripts)";
        return (
            StatusCode::FORBIDDEN,
            Html(page("Forbidden", "", &html::error(msg))),
        )
            .into_response();
    }
    next.run(req).await
}

/// The policy headers of every response: scripts, styles and images from the viewer
/// itself (thumbnails are `data:` URIs, well colours are inline styles), never framed,
/// never type-sniffed, no referrer.
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_bytes("s3cret-token", "s3cret-token"));
        assert!(!same_bytes("s3cret-token", "s3cret-tokem"));
        assert!(!same_bytes("s3cret", "s3cret-token"));
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
    }
}
