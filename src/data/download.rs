//! Fetching the four `.gz` files over HTTP into the cache, checked and atomically.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use super::DataError;
use super::fashion_mnist::{FILES, find_file};

/// Downloads each of [`FILES`] that `dir` lacks from `<base_url>/<file>.gz` into
/// `dir/<file>.gz`, creating `dir`; `md5[i]` is the expected md5 of file `i` decompressed.
///
/// Files already there are kept: they were either verified when downloaded or put there by
/// the user, and loading checks their format either way.
pub(crate) fn download_missing(
    base_url: &str,
    dir: &Path,
    md5: &[String; 4],
) -> Result<(), DataError> {
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let agent = ureq::Agent::config_builder()
        // Bound the waits, not the whole transfer: 26 MB over a slow link may take minutes,
        // but a silent server should not hang training forever.
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let base = base_url.trim_end_matches('/');
    for (name, md5) in FILES.iter().zip(md5) {
        // A file there in a bad state (a directory, say) is left for the rename to refuse.
        if !matches!(find_file(dir, name), Ok(Some(_))) {
            let url = format!("{base}/{name}.gz");
            download_file(&agent, &url, &dir.join(format!("{name}.gz")), md5)?;
        }
    }
    Ok(())
}

/// Fetches `url` into `dest`, which appears only once its decompressed md5 is `md5`.
fn download_file(agent: &ureq::Agent, url: &str, dest: &Path, md5: &str) -> Result<(), DataError> {
    let fail = |what: String| DataError::Download {
        url: url.to_owned(),
        what,
    };
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let body = response.body_mut();
    let total = body.content_length();
    let bar = progress_bar(total, dest);
    let mut reader = body.as_reader();
    // The partial file sits beside `dest`, so that the final rename stays on one file system
    // and is atomic, under a name of its own, so that two runs downloading at once do not
    // write into one file; it is deleted on every early return.
    let part = crate::atomic::temporary(dest).map_err(|e| DataError::io(dest, e))?;
    let (mut file, part) = part.into_parts();
    let mut buf = vec![0u8; 64 << 10];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Err(fail(format!("{e} after {received}{of} bytes")));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(&part, e))?;
        received += n as u64;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(|e| DataError::io(&part, e))?;
    drop(file);
    bar.finish();

    let actual = gunzip_md5(&part).map_err(|e| {
        fail(format!(
            "the {received} bytes received are not a valid gzip file ({e}); download removed"
        ))
    })?;
    if actual != md5 {
        return Err(DataError::Checksum {
            path: dest.to_path_buf(),
            expected: md5.to_owned(),
            actual,
        });
    }
    crate::atomic::persist(part, dest).map_err(|e| DataError::io(dest, e))
}

/// The md5 of a gzip file's decompressed contents (every member of it), as lowercase hex.
fn gunzip_md5(path: &Path) -> io::Result<String> {
    let mut gz = MultiGzDecoder::new(BufReader::new(File::open(path)?));
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A bar when the size is known, a byte counter otherwise; hidden when stderr is not a
/// terminal (indicatif's default), so tests and logs stay clean.
fn progress_bar(total: Option<u64>, dest: &Path) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {bytes} ({bytes_per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = dest.file_name().unwrap_or(dest.as_os_str());
    bar.with_message(format!("downloading {}", name.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FashionMnist;
    use crate::data::fashion_mnist::Locator;
    use crate::data::fashion_mnist::tests::tiny_files;
    use crate::data::idx::tests::gzip;
    use std::collections::HashMap;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// What the test server answers for one path.
    #[derive(Clone)]
    enum Reply {
        /// 200 with this body and its length.
        Ok(Vec<u8>),
        /// 200 claiming `Content-Length: claimed`, then this much and a closed connection.
        Cut { claimed: usize, body: Vec<u8> },
        /// 200 with no length, closed early: only the checksum can tell.
        CutNoLength(Vec<u8>),
    }

    /// Serves `routes` on 127.0.0.1, one request per connection, and stops after `max`
    /// requests or 20 seconds, whichever comes first; the handle yields the paths requested.
    fn serve(routes: HashMap<String, Reply>, max: usize) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut requested = Vec::new();
            while requested.len() < max && Instant::now() < deadline {
                let mut stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                // Skip the headers up to the blank line.
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let head = |len: Option<usize>| {
                    let len = len
                        .map(|n| format!("Content-Length: {n}\r\n"))
                        .unwrap_or_default();
                    format!("HTTP/1.1 200 OK\r\n{len}Connection: close\r\n\r\n")
                };
                let _ = match routes.get(&path) {
                    Some(Reply::Ok(body)) => stream
                        .write_all(head(Some(body.len())).as_bytes())
                        .and_then(|_| stream.write_all(body)),
                    Some(Reply::Cut { claimed, body }) => stream
                        .write_all(head(Some(*claimed)).as_bytes())
                        .and_then(|_| stream.write_all(body)),
                    Some(Reply::CutNoLength(body)) => stream
                        .write_all(head(None).as_bytes())
                        .and_then(|_| stream.write_all(body)),
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
                requested.push(path);
                // Dropping the stream closes the connection.
            }
            requested
        });
        (base, handle)
    }

    /// The tiny files gzipped, routed at `/<name>.gz`, and their true md5s.
    fn tiny_site() -> (HashMap<String, Reply>, [String; 4]) {
        let files = tiny_files();
        let routes = FILES
            .iter()
            .zip(&files)
            .map(|(name, bytes)| (format!("/{name}.gz"), Reply::Ok(gzip(bytes))))
            .collect();
        let md5 = files.map(|f| {
            Md5::digest(&f)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        (routes, md5)
    }

    fn locator(base_url: String, cache: &Path, md5: [String; 4]) -> Locator {
        Locator {
            explicit: None,
            named_by: "",
            search: vec![cache.with_file_name("nowhere")],
            cache: Some(cache.to_path_buf()),
            base_url,
            md5,
        }
    }

    /// File names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn good_download_lands_and_loads_and_is_not_repeated() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (routes, md5) = tiny_site();
        let (base, server) = serve(routes, 4);
        let loc = locator(format!("{base}/"), &cache, md5);

        assert_eq!(loc.locate_or_download().unwrap(), cache);
        let mut requested = server.join().unwrap();
        requested.sort();
        assert_eq!(
            requested,
            [
                "/t10k-images-idx3-ubyte.gz",
                "/t10k-labels-idx1-ubyte.gz",
                "/train-images-idx3-ubyte.gz",
                "/train-labels-idx1-ubyte.gz"
            ]
        );
        assert_eq!(
            listing(&cache),
            [
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz"
            ]
        );
        let data = FashionMnist::load(&cache).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (3, 2));

        // The server is gone: a second call must find the cache, not download.
        assert_eq!(loc.locate_or_download().unwrap(), cache);
    }

    /// The download's own error inside [`DataError::NotFoundNorDownloaded`], after checking
    /// that the outer error lists the places searched.
    fn download_error(err: DataError, cache: &Path) -> DataError {
        match err {
            DataError::NotFoundNorDownloaded {
                searched,
                cache: c,
                source,
            } => {
                assert_eq!(c, cache);
                assert_eq!(
                    searched.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
                    [cache.with_file_name("nowhere"), cache.to_path_buf()]
                );
                *source
            }
            other => panic!("expected NotFoundNorDownloaded, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_download_lists_every_place_searched() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (base, server) = serve(HashMap::new(), 1);
        let err = locator(base.clone(), &cache, tiny_site().1)
            .locate_or_download()
            .unwrap_err();
        server.join().unwrap();
        assert_eq!(
            crate::error_chain(&err),
            format!(
                "fashion-mnist not found; searched:\n  {}: does not exist\n  {}: does not \
                 exist\nand downloading it into {} failed: download of \
                 {base}/train-images-idx3-ubyte.gz failed: http status: 404",
                root.path().join("nowhere").display(),
                cache.display(),
                cache.display()
            )
        );
    }

    #[test]
    fn a_multi_member_gzip_download_is_checked_on_all_its_contents() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (mut routes, md5) = tiny_site();
        let files = tiny_files();
        let mut two = gzip(&files[0][..100]);
        two.extend(gzip(&files[0][100..]));
        routes.insert("/train-images-idx3-ubyte.gz".into(), Reply::Ok(two));
        let (base, server) = serve(routes, 4);
        assert_eq!(
            locator(base, &cache, md5).locate_or_download().unwrap(),
            cache
        );
        server.join().unwrap();
        let data = FashionMnist::load(&cache).unwrap();
        assert_eq!(data.train.len(), 3);
    }

    #[test]
    fn checksum_mismatch_is_an_error_and_removes_the_download() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (routes, mut md5) = tiny_site();
        md5[2] = "00000000000000000000000000000000".into();
        let (base, server) = serve(routes, 3);
        let err = locator(base, &cache, md5.clone())
            .locate_or_download()
            .unwrap_err();
        server.join().unwrap();
        let err = download_error(err, &cache);

        let dest = cache.join("t10k-images-idx3-ubyte.gz");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: md5 mismatch: expected 00000000000000000000000000000000, found {} \
                 (download removed)",
                dest.display(),
                tiny_site().1[2]
            )
        );
        // The two files before it landed; the bad one left nothing, not even a .part.
        assert_eq!(
            listing(&cache),
            ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
        );
    }

    #[test]
    fn connection_dropped_mid_body_leaves_no_complete_looking_file() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (mut routes, md5) = tiny_site();
        let key = "/train-images-idx3-ubyte.gz".to_owned();
        let Some(Reply::Ok(full)) = routes.get(&key).cloned() else {
            unreachable!()
        };
        routes.insert(
            key,
            Reply::Cut {
                claimed: full.len(),
                body: full[..full.len() / 2].to_vec(),
            },
        );
        let (base, server) = serve(routes, 1);
        let err = locator(base.clone(), &cache, md5)
            .locate_or_download()
            .unwrap_err();
        server.join().unwrap();
        let err = download_error(err, &cache);

        let url = format!("{base}/train-images-idx3-ubyte.gz");
        let msg = err.to_string();
        assert!(matches!(err, DataError::Download { .. }), "{err:?}");
        assert!(
            msg.starts_with(&format!("download of {url} failed: ")),
            "{msg}"
        );
        assert!(msg.ends_with(&format!(" of {} bytes", full.len())), "{msg}");
        assert_eq!(listing(&cache), Vec::<String>::new());
    }

    #[test]
    fn unannounced_short_body_is_caught_by_the_checksum() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (mut routes, md5) = tiny_site();
        let key = "/train-labels-idx1-ubyte.gz".to_owned();
        let Some(Reply::Ok(full)) = routes.get(&key).cloned() else {
            unreachable!()
        };
        routes.insert(key, Reply::CutNoLength(full[..full.len() - 4].to_vec()));
        let (base, server) = serve(routes, 2);
        let err = locator(base.clone(), &cache, md5)
            .locate_or_download()
            .unwrap_err();
        server.join().unwrap();
        let err = download_error(err, &cache);

        // Without its 4-byte trailer the gzip stream is incomplete: rejected before the md5.
        assert_eq!(
            err.to_string().split(" (").next().unwrap(),
            format!(
                "download of {base}/train-labels-idx1-ubyte.gz failed: the {} bytes received \
                 are not a valid gzip file",
                full.len() - 4
            )
        );
        assert_eq!(listing(&cache), ["train-images-idx3-ubyte.gz"]);
    }

    #[test]
    fn http_error_names_the_url() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let (base, server) = serve(HashMap::new(), 1);
        let err = locator(base.clone(), &cache, tiny_site().1)
            .locate_or_download()
            .unwrap_err();
        server.join().unwrap();
        let err = download_error(err, &cache);
        assert_eq!(
            err.to_string(),
            format!("download of {base}/train-images-idx3-ubyte.gz failed: http status: 404")
        );
        assert_eq!(listing(&cache), Vec::<String>::new());
    }
}
