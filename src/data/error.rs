//! The one error type of [`crate::data`].

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a data set could not be found, read, or downloaded.
///
/// Every variant names the file, directory or URL it is about, so the message tells a user
/// what to fix: `/x/train-images-idx3-ubyte.gz: truncated: header says 60000x28x28 =
/// 47040000 bytes, found 1234`. An operating system's error is the
/// [`source`](std::error::Error::source), not part of the message: print the chain with
/// [`crate::error_chain`] (`/x/train-labels-idx1-ubyte: Permission denied (os error 13)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// No searched directory holds the four files.
    #[error("fashion-mnist not found; searched:{}", SearchList(.searched))]
    NotFound {
        /// Every directory looked in, in order, with what it lacked.
        searched: Vec<(PathBuf, String)>,
    },
    /// Reading or writing a file failed; the OS's error is the source.
    #[error("{}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A file is there but is not what it should be: not gzip or IDX, truncated, wrong shape.
    #[error("{}: {what}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the numbers.
        what: String,
    },
    /// A download's decompressed contents do not have the expected md5; the download was
    /// removed.
    #[error(
        "{}: md5 mismatch: expected {expected}, found {actual} (download removed)",
        .path.display()
    )]
    Checksum {
        /// Where the file would have been stored.
        path: PathBuf,
        /// The md5 it should have, as lowercase hex.
        expected: String,
        /// The md5 it had, as lowercase hex.
        actual: String,
    },
    /// Fetching a URL failed (connection, HTTP status, or a body cut short).
    #[error("download of {url} failed: {what}")]
    Download {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        what: String,
    },
    /// Image files that could not be used (corrupt, truncated, empty, not an image, too
    /// large, unreadable): how many, and the first few with what is wrong with each.
    #[error(
        "{count} of {total} image files cannot be used{}{}",
        BadList(.first),
        if *.count > .first.len() { "\n  ..." } else { "" }
    )]
    BadImages {
        /// How many files failed.
        count: usize,
        /// How many files were looked at.
        total: usize,
        /// The first few failures: the file and what is wrong with it.
        first: Vec<(PathBuf, String)>,
    },
    /// An image folder or list that cannot be a data set: no class folders, an empty class,
    /// a single class, a list line that does not parse.
    #[error("{}: {what}", .path.display())]
    Layout {
        /// The folder or list file.
        path: PathBuf,
        /// What is wrong, naming the classes or the line.
        what: String,
    },
    /// No searched directory holds the four files, and downloading them failed too; the
    /// download's error is the source.
    #[error(
        "fashion-mnist not found; searched:{}\nand downloading it into {} failed",
        SearchList(.searched),
        .cache.display()
    )]
    NotFoundNorDownloaded {
        /// Every directory looked in, in order, with what it lacked.
        searched: Vec<(PathBuf, String)>,
        /// Where the download was to go.
        cache: PathBuf,
        /// Why the download failed.
        #[source]
        source: Box<DataError>,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn layout(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            what: what.into(),
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            what: what.into(),
        }
    }
}

/// Writes failed files one per line.
struct BadList<'a>(&'a [(PathBuf, String)]);

impl fmt::Display for BadList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => Ok(()),
            list => {
                write!(f, ":")?;
                for (path, why) in list {
                    write!(f, "\n  {}: {why}", path.display())?;
                }
                Ok(())
            }
        }
    }
}

/// Writes the searched directories one per line, so a long list stays readable.
struct SearchList<'a>(&'a [(PathBuf, String)]);

impl fmt::Display for SearchList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (dir, why) in self.0 {
            write!(f, "\n  {}: {why}", dir.display())?;
        }
        Ok(())
    }
}
