//! Files replaced whole or not at all: checkpoints, plots and downloads are written through
//! these.
//!
//! [`write()`] puts the bytes in a temporary file with a unique name in the destination's folder
//! (`.<name>.<random>.part`, so two writers never share one), flushes it to the disk
//! (`fsync`), renames it over the destination, and flushes the folder so that the rename
//! survives a crash. A reader sees the old file or the new one, never a mix; with several
//! writers the last rename wins and the file is that writer's, whole. On any error the
//! temporary is removed and the destination is left as it was.
//!
//! [`check_writable`] asks the same of a destination up front, so that a long job can refuse
//! to start when its results could not be saved.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, creating its folder if needed; see the module docs.
///
/// # Errors
/// The operating system's error when the folder cannot be created, the temporary cannot be
/// created, written or flushed (a full disk, a read-only folder), or the rename fails (`path`
/// is a directory). `path` is then unchanged and no temporary is left behind.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via(path, bytes, |file| file)
}

/// Checks that [`write()`] could write `path`: its folder exists or can be created, is a folder,
/// takes a new file (the check creates and removes an empty temporary), and `path` itself is
/// not a directory. It writes no data, so a disk that fills up later is only found then.
///
/// # Errors
/// The operating system's error for whichever of those fails; `Not a directory` when the
/// folder is a file, `Is a directory` when `path` is one.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let dir = folder(path);
    if dir.exists() && !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    std::fs::create_dir_all(&dir)?;
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{} is a directory", path.display()),
        ));
    }
    // Dropping it removes it.
    temporary(path)?;
    Ok(())
}

/// The destination's open temporary file, as the bytes are written to it and flushed.
///
/// [`File`] is the one used; tests wrap it to make a write or the flush fail, or to see when
/// the flush happens.
pub(crate) trait Sink {
    /// Writes all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Flushes the data to the disk.
    fn sync(&mut self) -> io::Result<()>;
}

impl Sink for File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// [`write()`], with the temporary file wrapped by `wrap` before anything is written to it.
pub(crate) fn write_via<S: Sink>(
    path: &Path,
    bytes: &[u8],
    wrap: impl FnOnce(File) -> S,
) -> io::Result<()> {
    std::fs::create_dir_all(folder(path))?;
    // `temp` deletes the file when dropped, so every early return below cleans up.
    let (file, temp) = temporary(path)?.into_parts();
    let mut sink = wrap(file);
    sink.write_all(bytes)?;
    // The data must be on the disk before the rename makes it the destination: otherwise a
    // crash can leave the new name pointing at a file that is empty or partly written.
    sink.sync()?;
    drop(sink);
    persist(temp, path)
}

/// Renames a complete temporary from [`temporary`], already flushed, over `path`, and flushes
/// the folder. On error the temporary is removed.
pub(crate) fn persist(temp: tempfile::TempPath, path: &Path) -> io::Result<()> {
    // A failed rename hands the temporary back inside the error; dropping that removes it.
    temp.persist(path).map_err(|e| e.error)?;
    sync_folder(&folder(path))
}

/// `path`'s folder: its parent, or `.` for a bare file name.
fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new, empty file with a unique name beside `path` (whose folder must exist):
/// `.<name>.<random>.part`, removed when dropped unless [`persist`]ed.
pub(crate) fn temporary(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    // tempfile makes its files private (0600); a checkpoint or a plot should get the
    // permissions any new file gets (0666 less the umask), as `File::create` would give it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(folder(path))
}

/// Flushes `dir`'s entries, so that a rename in it survives a crash.
fn sync_folder(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    // Elsewhere a folder cannot be opened as a file; the rename is as durable as it gets.
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Names in `dir`, sorted.
    pub(crate) fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What a [`Faulty`] saw at each flush: the bytes written so far and the destination's
    /// contents then.
    pub(crate) type Flushes = Rc<RefCell<Vec<(usize, Option<Vec<u8>>)>>>;

    /// A [`Sink`] that writes through to the file until `fail_after` bytes, then fails as a
    /// full disk does (ENOSPC); it can fail the flush too, and records what the destination
    /// held when the flush came.
    pub(crate) struct Faulty {
        pub(crate) file: File,
        pub(crate) fail_after: Option<usize>,
        pub(crate) fail_sync: bool,
        pub(crate) written: usize,
        /// `(bytes written so far, the destination's contents)` at each flush.
        pub(crate) synced: Flushes,
        pub(crate) dest: PathBuf,
    }

    impl Faulty {
        pub(crate) fn new(file: File, dest: &Path) -> Self {
            Faulty {
                file,
                fail_after: None,
                fail_sync: false,
                written: 0,
                synced: Rc::default(),
                dest: dest.to_path_buf(),
            }
        }
    }

    /// The error a full disk gives: ENOSPC, "No space left on device".
    pub(crate) fn disk_full() -> io::Error {
        io::Error::from(io::ErrorKind::StorageFull)
    }

    impl Sink for Faulty {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            let allowed = self
                .fail_after
                .map_or(bytes.len(), |n| n.saturating_sub(self.written));
            let n = allowed.min(bytes.len());
            Write::write_all(&mut self.file, &bytes[..n])?;
            self.written += n;
            if n < bytes.len() {
                return Err(disk_full());
            }
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            let dest = std::fs::read(&self.dest).ok();
            self.synced.borrow_mut().push((self.written, dest));
            if self.fail_sync {
                return Err(io::Error::other("the disk reported an error on flush"));
            }
            self.file.sync_all()
        }
    }

    #[test]
    fn writes_and_replaces_leaving_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.bin");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(listing(&dir.path().join("sub")), ["x.bin"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_ordinary_permissions_not_private_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (ours, plain) = (dir.path().join("ours"), dir.path().join("plain"));
        write(&ours, b"x").unwrap();
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    #[test]
    fn a_full_disk_mid_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        write(&path, b"old contents").unwrap();
        let err = write_via(&path, &[7; 10_000], |file| {
            let mut sink = Faulty::new(file, &path);
            sink.fail_after = Some(4096);
            sink
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
        assert_eq!(listing(dir.path()), ["x.bin"]);
    }

    #[test]
    fn the_data_is_flushed_before_the_rename_and_a_failed_flush_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        write(&path, b"old").unwrap();
        let synced = Rc::default();
        write_via(&path, b"new contents", |file| {
            let mut sink = Faulty::new(file, &path);
            sink.synced = Rc::clone(&synced);
            sink
        })
        .unwrap();
        // One flush, after every byte was written and while the destination was still old.
        assert_eq!(*synced.borrow(), [(12, Some(b"old".to_vec()))]);
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");

        let err = write_via(&path, b"newer", |file| {
            let mut sink = Faulty::new(file, &path);
            sink.fail_sync = true;
            sink
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "the disk reported an error on flush");
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(listing(dir.path()), ["x.bin"]);
    }

    #[test]
    fn a_directory_in_the_way_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        std::fs::create_dir(&path).unwrap();
        assert!(write(&path, b"data").is_err());
        assert!(path.is_dir());
        assert_eq!(listing(dir.path()), ["x.bin"]);
        let err = check_writable(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        assert_eq!(
            err.to_string(),
            format!("{} is a directory", path.display())
        );
    }

    #[test]
    fn check_writable_refuses_a_file_as_the_folder_and_creates_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_writable(&file.join("x.bin")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
        assert_eq!(
            err.to_string(),
            format!("{} is not a directory", file.display())
        );

        let fresh = dir.path().join("a/b/x.bin");
        check_writable(&fresh).unwrap();
        assert!(fresh.parent().unwrap().is_dir());
        assert_eq!(listing(fresh.parent().unwrap()), Vec::<String>::new());
    }

    /// /proc takes no new files, even from root: a read-only place without permission tricks.
    #[cfg(target_os = "linux")]
    #[test]
    fn check_writable_refuses_a_folder_that_takes_no_files() {
        assert!(check_writable(Path::new("/proc/cnn-atomic-test/x.bin")).is_err());
        assert!(check_writable(Path::new("/proc/x.bin")).is_err());
        assert!(write(Path::new("/proc/x.bin"), b"data").is_err());
    }

    #[test]
    fn concurrent_writers_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        // Large enough that a write takes many system calls.
        let contents: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1 << 20]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..10 {
                        write(path, c).unwrap();
                    }
                });
            }
            // A reader meanwhile sees only whole files.
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(seen) = std::fs::read(&path) {
                        assert!(contents.contains(&seen), "a mixed or partial file");
                    }
                }
            });
        });
        assert!(contents.contains(&std::fs::read(&path).unwrap()));
        assert_eq!(listing(dir.path()), ["x.bin"]);
    }
}
