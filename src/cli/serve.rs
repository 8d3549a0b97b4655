//! `taskvec serve`: a static file server for the page on 127.0.0.1 only, with the headers the
//! page wants (cross-origin isolation, a Content-Security-Policy, no MIME sniffing).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The page's Content-Security-Policy (the same as its meta tag).
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self' https:; object-src 'none'; base-uri 'none'; form-action 'none'";

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "md" | "tsv" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`, refusing anything that climbs out of it.
pub fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(rel);
    let full = if full.is_dir() {
        full.join("index.html")
    } else {
        full
    };
    full.is_file().then_some(full)
}

/// Whether `a` was modified before `b` (a stale compressed copy is never served).
fn older(a: &Path, b: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((m(a), m(b)), (Some(x), Some(y)) if x < y)
}

/// A precompressed sibling of `p` (`p.br`, else `p.gz`) the client accepts (`Accept-Encoding`),
/// with its `Content-Encoding`: `scripts/build-web.sh` writes them beside the wasm.
pub fn precompressed(p: &Path, accept: &str) -> Option<(PathBuf, &'static str)> {
    let accepts = |enc: &str| {
        accept
            .split(',')
            .any(|a| a.split(';').next().is_some_and(|e| e.trim() == enc))
    };
    [("br", "br"), ("gz", "gzip")]
        .into_iter()
        .filter(|(_, enc)| accepts(enc))
        .map(|(ext, enc)| (PathBuf::from(format!("{}.{ext}", p.display())), enc))
        .find(|(q, _)| q.is_file() && !older(q, p))
}

/// Serves `root` on 127.0.0.1:`port` until killed; `/` opens the page (`www/index.html`).
pub fn serve(root: &Path, port: u16) -> Result<()> {
    let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| Error::Io {
        path: format!("127.0.0.1:{port}"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let root = root.canonicalize().map_err(|source| Error::Io {
        path: root.display().to_string(),
        source,
    })?;
    eprintln!(
        "taskvec: serving {} at http://127.0.0.1:{port}/ (Ctrl-C to stop)",
        root.display()
    );
    for req in server.incoming_requests() {
        let root = root.clone();
        std::thread::spawn(move || {
            let url = req.url().to_string();
            let header = |k: &str, v: &str| {
                tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
            };
            let common = [
                header("Cross-Origin-Opener-Policy", "same-origin"),
                header("Cross-Origin-Embedder-Policy", "require-corp"),
                header("Cross-Origin-Resource-Policy", "same-origin"),
                header("X-Content-Type-Options", "nosniff"),
                header("Content-Security-Policy", CSP),
                header("Cache-Control", "no-cache"),
            ];
            if url == "/" {
                let mut r = tiny_http::Response::empty(302)
                    .with_header(header("Location", "/www/index.html"));
                for h in common {
                    r.add_header(h);
                }
                let _ = req.respond(r);
                return;
            }
            let accept = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept-Encoding"))
                .map(|h| h.value.as_str().to_string())
                .unwrap_or_default();
            let found = resolve(&root, &url).map(|p| {
                let packed = precompressed(&p, &accept);
                (p, packed)
            });
            let opened = found.and_then(|(p, packed)| {
                let file = packed.as_ref().map_or(p.as_path(), |(q, _)| q.as_path());
                std::fs::File::open(file)
                    .ok()
                    .map(|f| (p.clone(), packed.map(|x| x.1), f))
            });
            match opened {
                Some((p, encoding, f)) => {
                    let mut r = tiny_http::Response::from_file(f)
                        .with_header(header("Content-Type", content_type(&p)));
                    if let Some(enc) = encoding {
                        r.add_header(header("Content-Encoding", enc));
                        r.add_header(header("Vary", "Accept-Encoding"));
                    }
                    for h in common {
                        r.add_header(h);
                    }
                    let _ = req.respond(r);
                }
                None => {
                    let _ = req.respond(
                        tiny_http::Response::from_string("not found").with_status_code(404),
                    );
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precompressed_siblings_follow_accept_encoding() {
        let dir = std::env::temp_dir().join(format!("taskvec-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wasm = dir.join("a.wasm");
        std::fs::write(&wasm, b"raw").unwrap();
        assert_eq!(precompressed(&wasm, "gzip, deflate, br"), None);
        std::fs::write(dir.join("a.wasm.gz"), b"gz").unwrap();
        assert_eq!(precompressed(&wasm, "identity"), None);
        let gz = precompressed(&wasm, "gzip;q=1.0, deflate").unwrap();
        assert_eq!((gz.0.extension().unwrap(), gz.1), ("gz".as_ref(), "gzip"));
        std::fs::write(dir.join("a.wasm.br"), b"br").unwrap();
        assert_eq!(precompressed(&wasm, "gzip, deflate, br").unwrap().1, "br");
        assert_eq!(precompressed(&wasm, "gzip").unwrap().1, "gzip");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(resolve(root, "/Cargo.toml").is_some());
        assert!(resolve(root, "/../etc/passwd").is_none());
        assert!(resolve(root, "/src/../../x").is_none());
        assert!(resolve(root, "//etc/passwd").is_none());
        assert!(resolve(root, "/nope.txt").is_none());
    }
}
