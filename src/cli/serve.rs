//! `taskvec serve`: a static file server for the page on 127.0.0.1 only, with the headers the
//! page wants (cross-origin isolation, a Content-Security-Policy, no MIME sniffing).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
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
///
/// HTTP/1.1 with keep-alive, one thread per connection (a browser opens a handful). tiny_http,
/// used before, hands connections to a thread pool that can leave one queued behind kept-alive
/// connections forever: the page's modules then never arrive.
pub fn serve(root: &Path, port: u16) -> Result<()> {
    let io = |path: String| move |source| Error::Io { path, source };
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(io(format!("127.0.0.1:{port}")))?;
    let root = root
        .canonicalize()
        .map_err(io(root.display().to_string()))?;
    eprintln!(
        "taskvec: serving {} at http://127.0.0.1:{port}/ (Ctrl-C to stop)",
        root.display()
    );
    accept(listener, root);
    Ok(())
}

/// Answers every connection `listener` accepts, each on its own thread.
fn accept(listener: TcpListener, root: PathBuf) {
    for stream in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || connection(stream, &root));
    }
}

/// A request's method, target and the headers this server reads.
struct Request {
    method: String,
    url: String,
    accept_encoding: String,
    keep_alive: bool,
}

/// Answers the requests of one connection until the client closes it or asks to.
fn connection(stream: TcpStream, root: &Path) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let Ok(write) = stream.try_clone() else {
        return;
    };
    let (mut reader, mut writer) = (BufReader::new(stream), BufWriter::new(write));
    while let Some(req) = read_request(&mut reader) {
        if respond(&req, root, &mut writer)
            .and_then(|_| writer.flush())
            .is_err()
            || !req.keep_alive
        {
            return;
        }
    }
}

/// Reads one request head (line and headers, at most 64 KiB); `None` at the end of the
/// connection or on a malformed request. Bodies are not read: only GET and HEAD are served,
/// and a request that announces a body ends the connection after its answer.
fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    let mut total = 0;
    let mut next = |line: &mut String| {
        line.clear();
        let n = r.by_ref().take(8192).read_line(line).ok()?;
        total += n;
        (n > 0 && total <= 65536).then_some(())
    };
    next(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, url, version) = (
        parts.next()?.to_string(),
        parts.next()?.to_string(),
        parts.next()?.to_string(),
    );
    let mut req = Request {
        method,
        url,
        accept_encoding: String::new(),
        keep_alive: version == "HTTP/1.1",
    };
    loop {
        next(&mut line)?;
        let h = line.trim_end();
        if h.is_empty() {
            return Some(req);
        }
        let (name, value) = h.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "accept-encoding" => req.accept_encoding = value.to_string(),
            "connection" => {
                let v = value.to_ascii_lowercase();
                req.keep_alive = if v.contains("close") {
                    false
                } else {
                    req.keep_alive || v.contains("keep-alive")
                };
            }
            "content-length" if value != "0" => req.keep_alive = false,
            "transfer-encoding" => req.keep_alive = false,
            _ => {}
        }
    }
}

/// Writes the answer to one request: the file (or its precompressed sibling) with the page's
/// headers, a redirect for `/`, 404 or 405.
fn respond(req: &Request, root: &Path, w: &mut impl Write) -> std::io::Result<()> {
    let mut head = format!(
        "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\nCross-Origin-Resource-Policy: same-origin\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\nCache-Control: no-cache\r\nConnection: {}\r\n",
        if req.keep_alive {
            "keep-alive"
        } else {
            "close"
        }
    );
    let status = |w: &mut dyn Write, code: &str, head: &str, body: &[u8]| {
        write!(
            w,
            "HTTP/1.1 {code}\r\n{head}Content-Length: {}\r\n\r\n",
            body.len()
        )?;
        w.write_all(body)
    };
    if req.method != "GET" && req.method != "HEAD" {
        head.push_str("Allow: GET, HEAD\r\n");
        return status(w, "405 Method Not Allowed", &head, b"method not allowed");
    }
    if req.url == "/" {
        head.push_str("Location: /www/index.html\r\n");
        return status(w, "302 Found", &head, b"");
    }
    let found = resolve(root, &req.url).and_then(|p| {
        let packed = precompressed(&p, &req.accept_encoding);
        let file = packed.as_ref().map_or(p.as_path(), |(q, _)| q.as_path());
        let f = std::fs::File::open(file).ok()?;
        let len = f.metadata().ok()?.len();
        Some((p.clone(), packed.map(|x| x.1), f, len))
    });
    let Some((p, encoding, mut f, len)) = found else {
        return status(w, "404 Not Found", &head, b"not found");
    };
    head.push_str(&format!("Content-Type: {}\r\n", content_type(&p)));
    if let Some(enc) = encoding {
        head.push_str(&format!(
            "Content-Encoding: {enc}\r\nVary: Accept-Encoding\r\n"
        ));
    }
    write!(w, "HTTP/1.1 200 OK\r\n{head}Content-Length: {len}\r\n\r\n")?;
    if req.method == "GET" {
        std::io::copy(&mut f, w)?;
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

    /// More kept-alive connections than a browser opens, each asking several times, all
    /// answered (tiny_http's pool left one queued forever).
    #[test]
    fn many_kept_alive_connections_are_all_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        std::thread::spawn(move || accept(listener, root));
        let clients: Vec<_> = (0..10)
            .map(|_| {
                std::thread::spawn(move || {
                    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                        .unwrap();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    for _ in 0..3 {
                        write!(w, "GET /Cargo.toml HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                        let mut line = String::new();
                        r.read_line(&mut line).unwrap();
                        assert_eq!(line.trim_end(), "HTTP/1.1 200 OK");
                        let mut len = 0;
                        loop {
                            line.clear();
                            r.read_line(&mut line).unwrap();
                            if line.trim_end().is_empty() {
                                break;
                            }
                            if let Some(v) = line.strip_prefix("Content-Length: ") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0u8; len];
                        r.read_exact(&mut body).unwrap();
                        assert!(body.starts_with(b"[package]"));
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
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
