//! The dashboard's static files, compiled into release builds (rust-embed reads them
//! from `frontend/` on disk in debug builds, so edits show without a rebuild).

use std::borrow::Cow;

use actix_web::http::{header, Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

use super::ApiError;

/// Only what a browser loads: the page's tests and tooling stay out of the binary.
#[derive(RustEmbed)]
#[folder = "frontend/"]
#[exclude = "tests/*"]
#[exclude = "e2e/*"]
#[exclude = "node_modules/*"]
#[exclude = "package*.json"]
struct Assets;

pub async fn serve(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here", req.method()),
        ));
    }
    let path = match req.path().trim_start_matches('/') {
        "" => "index.html",
        // Browsers ask for /favicon.ico whatever the page links; they get the page's
        // SVG icon (its Content-Type says so; every current browser renders it).
        "favicon.ico" => "favicon.svg",
        path => path,
    };
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such route: /{path}"),
        )
    };
    if path.starts_with("api/") {
        return Err(not_found());
    }
    let asset = Assets::get(path).ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, asset.metadata.mimetype()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(asset_bytes(asset.data)))
}

/// The asset without a copy: release builds embed the files, so the bytes are
/// `'static` and every response points at them; debug builds read the file from disk
/// and hand over that one buffer.
fn asset_bytes(data: Cow<'static, [u8]>) -> Bytes {
    match data {
        Cow::Borrowed(bytes) => Bytes::from_static(bytes),
        Cow::Owned(bytes) => Bytes::from(bytes),
    }
}

/// The dashboard loads only its own scripts and styles (no inline code, so injected
/// markup cannot run), talks only to its own origin (REST and WebSocket), and cannot
/// be framed (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'; object-src 'none'";

/// Unknown routes under /api.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // The same rule as for every other path (docs/PROTOCOL.md): a method other than
    // GET or HEAD is 405, so `POST /api/v1/quotes` says what is wrong with it.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here", req.method()),
        ));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such route: {} {}", req.method(), req.path()),
    ))
}
