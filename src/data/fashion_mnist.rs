//! Fashion-MNIST (and MNIST, which ships in the same four files): where to find it, how to
//! load it.

use std::path::{Path, PathBuf};

use super::download::download_missing;
use super::{DataError, Dataset};

/// The four files, in the order of [`FASHION_MNIST_MD5`] and [`Locator::md5`]; each may be
/// stored plain or with a `.gz` suffix.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The md5 of each file of [`FILES`] after decompression, from Fashion-MNIST's release.
///
/// These are the decompressed contents' sums, not the `.gz` files': Debian's
/// `dataset-fashion-mnist` recompresses the files, so their `.gz` sums differ from upstream's
/// while the contents match these.
pub const FASHION_MNIST_MD5: [&str; 4] = [
    "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "9018921c3c673c538a1fc5bad174d6f9",
    "8181f5470baa50b63fa0f6fddb340f0a",
    "15d484375f8d13e6eb1aabb0c3f46965",
];

/// Where Fashion-MNIST's files are downloaded from, `<DEFAULT_URL>/<file>.gz`; the
/// `CNN_DATA_URL` environment variable overrides it.
pub const DEFAULT_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";

/// Where Debian's `dataset-fashion-mnist` package installs the four `.gz` files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The text label of each class index, as d2l names them.
pub const CLASS_NAMES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Image height and width: every Fashion-MNIST and MNIST image is 28x28.
pub const SIDE: usize = 28;

/// The Fashion-MNIST training (60000) and test (10000) sets.
#[derive(Debug, Clone, PartialEq)]
pub struct FashionMnist {
    /// The training split, from `train-*`.
    pub train: Dataset,
    /// The test split, from `t10k-*`.
    pub test: Dataset,
}

impl FashionMnist {
    /// Loads the four [`FILES`] from `dir`, each plain or gzipped (plain preferred when both
    /// are there). Works for MNIST too, which uses the same names and format.
    ///
    /// Errors: [`DataError::NotFound`] naming `dir` and the missing files (or those that are
    /// not regular files: a directory, a broken link), or the first file's read or format
    /// error (images must be `N x 28 x 28`, with `N` labels, each a class below 10).
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let [train_images, train_labels, test_images, test_labels] =
            find_files(dir).map_err(|why| DataError::NotFound {
                searched: vec![(dir.to_path_buf(), why)],
            })?;
        Ok(FashionMnist {
            train: load_split(&train_images, &train_labels)?,
            test: load_split(&test_images, &test_labels)?,
        })
    }

    /// Finds the files as [`Locator::from_env`] describes, downloading them into the cache
    /// if no place has them, and loads them.
    ///
    /// `explicit` is the `--data DIR` argument: when given, only it is looked in.
    pub fn locate_or_download(explicit: Option<&Path>) -> Result<Self, DataError> {
        Self::load(&Locator::from_env(explicit).locate_or_download()?)
    }
}

/// Reads one split and checks that it holds images, 28x28 (the size the networks are built
/// for), and that every label is one of the [`CLASS_NAMES`], so that a bad label is reported
/// here, with its file and index, and not in the middle of an epoch.
fn load_split(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let data = Dataset::from_idx(images, labels)?;
    if data.is_empty() {
        return Err(DataError::format(images, "holds no images"));
    }
    if (data.rows, data.cols) != (SIDE, SIDE) {
        return Err(DataError::format(
            images,
            format!(
                "expected {SIDE}x{SIDE} images, found {}x{}",
                data.rows, data.cols
            ),
        ));
    }
    let classes = CLASS_NAMES.len();
    let bad = |l: &&u8| usize::from(**l) >= classes;
    if let Some(index) = data.labels.iter().position(|l| bad(&l)) {
        let count = data.labels.iter().filter(bad).count();
        let more = match count {
            1 => String::new(),
            n => format!(" ({n} labels in all are out of range)"),
        };
        return Err(DataError::format(
            labels,
            format!(
                "label {} at index {index} is out of range: there are {classes} classes, 0 to \
                 {}{more}",
                data.labels[index],
                classes - 1
            ),
        ));
    }
    Ok(data)
}

/// The paths of the four [`FILES`] in `dir`, or what is wrong there: what is missing, and what
/// is there but is not a readable file.
fn find_files(dir: &Path) -> Result<[PathBuf; 4], String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err("not a directory".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("does not exist".into());
        }
        Err(e) => return Err(e.to_string()),
    }
    let found = FILES.map(|name| find_file(dir, name));
    let missing: Vec<String> = FILES
        .iter()
        .zip(&found)
        .filter(|(_, f)| matches!(f, Ok(None)))
        .map(|(name, _)| format!("{name}[.gz]"))
        .collect();
    let mut problems: Vec<String> = found
        .iter()
        .filter_map(|f| f.as_ref().err().cloned())
        .collect();
    if !missing.is_empty() {
        problems.insert(0, format!("missing {}", missing.join(", ")));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(found.map(|f| match f {
        Ok(Some(path)) => path,
        _ => unreachable!("checked above: none missing or bad"),
    }))
}

/// `dir/name` or `dir/name.gz`, whichever is a regular file (plain first); `None` when neither
/// exists; what is wrong when one exists but is not a file that can be read (a directory, a
/// broken symbolic link, a place the user may not look in).
pub(crate) fn find_file(dir: &Path, name: &str) -> Result<Option<PathBuf>, String> {
    let candidates = [name.to_string(), format!("{name}.gz")];
    let mut problem = None;
    for file in &candidates {
        let path = dir.join(file);
        let why = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => return Ok(Some(path)),
            Ok(meta) if meta.is_dir() => format!("{file} is a directory, not a file"),
            Ok(_) => format!("{file} is not a regular file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(&path) {
                Ok(target) => format!("{file} is a broken symbolic link (to {})", target.display()),
                Err(_) => continue,
            },
            Err(e) => format!("{file}: {e}"),
        };
        problem.get_or_insert(why);
    }
    match problem {
        Some(why) => Err(why),
        None => Ok(None),
    }
}

/// Where to look for the four files and where to download them if no place has them.
///
/// [`Locator::from_env`] is what [`FashionMnist::locate_or_download`] uses; the fields are
/// public so that tests and tools can point it elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    /// A directory the user named (`--data DIR`, or else `$CNN_DATA`). When set, only this
    /// directory is looked in, and never downloaded into: a directory the user named that lacks
    /// the files is an error, not a reason to quietly use another copy.
    pub explicit: Option<PathBuf>,
    /// Who named `explicit` (`"--data"`, `"$CNN_DATA"`), for messages; empty if no one did.
    pub named_by: &'static str,
    /// Directories looked in, in order, when `explicit` is `None`.
    pub search: Vec<PathBuf>,
    /// Looked in after `search`; the files are downloaded here if no place has them. `None`
    /// (no home directory) means no cache and no download.
    pub cache: Option<PathBuf>,
    /// The download location: `<base_url>/<file>.gz` for each of [`FILES`].
    pub base_url: String,
    /// The md5 each downloaded file must have once decompressed, in the order of [`FILES`].
    pub md5: [String; 4],
}

impl Locator {
    /// The standard places:
    /// 1. `explicit` (from `--data DIR`), alone if given;
    /// 2. else the `CNN_DATA` environment variable, alone if set (a directory the user named,
    ///    as with `--data`);
    /// 3. else [`SYSTEM_DIR`] (`apt-get install dataset-fashion-mnist`), then the cache,
    ///    `$XDG_CACHE_HOME/cnn/fashion-mnist` or `~/.cache/cnn/fashion-mnist`, which is where
    ///    downloads go, from `CNN_DATA_URL` or else [`DEFAULT_URL`], checked against
    ///    [`FASHION_MNIST_MD5`].
    pub fn from_env(explicit: Option<&Path>) -> Self {
        let nonempty = |var| std::env::var_os(var).filter(|v| !v.is_empty());
        Self::with(
            explicit,
            nonempty("CNN_DATA").map(PathBuf::from),
            nonempty("CNN_DATA_URL").map(|u| u.to_string_lossy().into_owned()),
        )
    }

    /// [`Locator::from_env`] with the variables' values given.
    fn with(explicit: Option<&Path>, cnn_data: Option<PathBuf>, url: Option<String>) -> Self {
        let (explicit, named_by) = match (explicit, cnn_data) {
            (Some(dir), _) => (Some(dir.to_path_buf()), "--data"),
            (None, Some(dir)) => (Some(dir), "$CNN_DATA"),
            (None, None) => (None, ""),
        };
        Locator {
            explicit,
            named_by,
            search: vec![PathBuf::from(SYSTEM_DIR)],
            cache: dirs::cache_dir().map(|c| c.join("cnn").join("fashion-mnist")),
            base_url: url.unwrap_or_else(|| DEFAULT_URL.to_owned()),
            md5: FASHION_MNIST_MD5.map(str::to_owned),
        }
    }

    /// The first directory that holds all four files, without touching the network.
    ///
    /// Errors: [`DataError::NotFound`] listing every directory looked in and what it lacked.
    pub fn locate(&self) -> Result<PathBuf, DataError> {
        let places: Vec<&PathBuf> = match &self.explicit {
            Some(dir) => vec![dir],
            None => self.search.iter().chain(&self.cache).collect(),
        };
        let mut searched = Vec::new();
        for dir in places {
            match find_files(dir) {
                Ok(_) => return Ok(dir.clone()),
                Err(why) if self.explicit.is_some() && !self.named_by.is_empty() => {
                    let why = format!(
                        "{why} (named by {}, so nothing else was searched)",
                        self.named_by
                    );
                    searched.push((dir.clone(), why));
                }
                Err(why) => searched.push((dir.clone(), why)),
            }
        }
        Err(DataError::NotFound { searched })
    }

    /// [`Locator::locate`], and if that finds nothing (and no `explicit` directory was given),
    /// downloads the missing files into the cache and returns the cache directory.
    ///
    /// A download is written to a temporary file of its own beside its destination and renamed
    /// into place only once its md5 is right, so an interrupted or bad download never leaves a
    /// file that looks complete, and two runs downloading at once do not mix their files.
    ///
    /// Errors: those of [`Locator::locate`]; when the download fails,
    /// [`DataError::NotFoundNorDownloaded`], which lists every directory searched too, with the
    /// download's error as its source.
    pub fn locate_or_download(&self) -> Result<PathBuf, DataError> {
        match self.locate() {
            Err(DataError::NotFound { searched }) if self.explicit.is_none() => {
                let Some(cache) = &self.cache else {
                    // Nowhere to download to: say where we looked.
                    return Err(DataError::NotFound { searched });
                };
                match download_missing(&self.base_url, cache, &self.md5) {
                    Ok(()) => Ok(cache.clone()),
                    Err(e) => Err(DataError::NotFoundNorDownloaded {
                        searched,
                        cache: cache.clone(),
                        source: Box::new(e),
                    }),
                }
            }
            found => found,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::idx::tests::{gzip, idx_bytes};

    /// The four files of a tiny Fashion-MNIST: 3 training and 2 test images of 28x28 with
    /// pixel `p` of image `i` equal to `(i + p) % 256`, labels `i % 10`; raw IDX bytes.
    pub(crate) fn tiny_files() -> [Vec<u8>; 4] {
        let images = |n: u32| {
            let px: Vec<u8> = (0..n as usize * SIDE * SIDE)
                .map(|k| ((k / (SIDE * SIDE) + k % (SIDE * SIDE)) % 256) as u8)
                .collect();
            idx_bytes(&[n, SIDE as u32, SIDE as u32], &px)
        };
        let labels = |n: u32| idx_bytes(&[n], &(0..n as u8).map(|i| i % 10).collect::<Vec<_>>());
        [images(3), labels(3), images(2), labels(2)]
    }

    /// Writes the tiny files into `dir`, gzipped where `gz[i]`.
    pub(crate) fn write_tiny(dir: &Path, gz: [bool; 4]) {
        for ((name, bytes), gz) in FILES.iter().zip(tiny_files()).zip(gz) {
            if gz {
                std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    #[test]
    fn loads_mixed_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [true, false, false, true]);
        let data = FashionMnist::load(dir.path()).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (3, 2));
        assert_eq!((data.train.rows, data.train.cols), (28, 28));
        assert_eq!(data.train.labels, [0, 1, 2]);
        // Image 1, pixel 0 is byte 1; pixel 254 of image 1 is byte 255.
        assert_eq!(data.train.image(1)[0], 1.0 / 255.0);
        assert_eq!(data.train.image(1)[254], 1.0);
        assert_eq!(data.test.image(0)[0], 0.0);
    }

    #[test]
    fn missing_file_names_the_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [true; 4]);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "fashion-mnist not found; searched:\n  {}: missing t10k-labels-idx1-ubyte[.gz]",
                dir.path().display()
            )
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [false; 4]);
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx_bytes(&[2], &[0, 1]),
        )
        .unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        let labels = dir.path().join("train-labels-idx1-ubyte");
        let images = dir.path().join("train-images-idx3-ubyte");
        assert_eq!(
            msg,
            format!(
                "{}: holds 2 labels but {} holds 3 images (3x28x28)",
                labels.display(),
                images.display()
            )
        );
    }

    #[test]
    fn wrong_image_size_or_rank() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [false; 4]);
        let images = dir.path().join("t10k-images-idx3-ubyte");
        std::fs::write(&images, idx_bytes(&[2, 4, 4], &[0; 32])).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("{}: expected 28x28 images, found 4x4", images.display())
        );

        std::fs::write(&images, idx_bytes(&[2, 784], &[0; 1568])).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: expected 3 dimensions (count x rows x cols) for images, found 2 (2x784)",
                images.display()
            )
        );
    }

    #[test]
    fn corrupt_file_in_a_set_names_it() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [true; 4]);
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        let whole = gzip(&tiny_files()[0]);
        // A gzip stream that ends cleanly but early: the IDX length check must catch it.
        let cut = gzip(&tiny_files()[0][..1000]);
        std::fs::write(&path, &cut).unwrap();
        assert!(cut.len() < whole.len());
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: truncated: header says 3x28x28 = 2352 bytes, found 984",
                path.display()
            )
        );
    }

    fn offline(explicit: Option<PathBuf>, search: Vec<PathBuf>, cache: Option<PathBuf>) -> Locator {
        Locator {
            explicit,
            named_by: "",
            search,
            cache,
            // Nothing listens on port 1: a test that wrongly downloads fails fast.
            base_url: "http://127.0.0.1:1".into(),
            md5: FASHION_MNIST_MD5.map(str::to_owned),
        }
    }

    #[test]
    fn search_order_first_complete_directory_wins() {
        let root = tempfile::tempdir().unwrap();
        let [partial, full, cache] = ["partial", "full", "cache"].map(|d| root.path().join(d));
        for d in [&partial, &full, &cache] {
            std::fs::create_dir(d).unwrap();
        }
        write_tiny(&full, [true; 4]);
        write_tiny(&cache, [true; 4]);
        write_tiny(&partial, [true; 4]);
        std::fs::remove_file(partial.join("train-images-idx3-ubyte.gz")).unwrap();
        let loc = offline(
            None,
            vec![partial.clone(), full.clone()],
            Some(cache.clone()),
        );
        assert_eq!(loc.locate().unwrap(), full);
        let loc = offline(None, vec![partial.clone()], Some(cache.clone()));
        assert_eq!(loc.locate_or_download().unwrap(), cache);
    }

    #[test]
    fn explicit_directory_without_files_is_an_error_not_a_fallback() {
        let root = tempfile::tempdir().unwrap();
        let full = root.path().join("full");
        std::fs::create_dir(&full).unwrap();
        write_tiny(&full, [false; 4]);
        let wrong = root.path().join("typo");
        let loc = offline(Some(wrong.clone()), vec![full.clone()], Some(full));
        let msg = loc.locate_or_download().unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "fashion-mnist not found; searched:\n  {}: does not exist",
                wrong.display()
            )
        );
    }

    #[test]
    fn a_wrong_cnn_data_is_an_error_that_says_so_not_a_fallback() {
        let root = tempfile::tempdir().unwrap();
        let wrong = root.path().join("typo");
        let loc = Locator::with(None, Some(wrong.clone()), None);
        assert_eq!(loc.explicit.as_deref(), Some(wrong.as_path()));
        assert_eq!(
            loc.locate_or_download().unwrap_err().to_string(),
            format!(
                "fashion-mnist not found; searched:\n  {}: does not exist (named by \
                 $CNN_DATA, so nothing else was searched)",
                wrong.display()
            )
        );
        // --data comes first, and a directory the user names is never downloaded into.
        let data = root.path().join("data");
        let loc = Locator::with(Some(&data), Some(wrong), None);
        assert_eq!(
            (loc.explicit.as_deref(), loc.named_by),
            (Some(data.as_path()), "--data")
        );
        let none = Locator::with(None, None, Some("http://x".into()));
        assert_eq!((none.explicit, none.named_by), (None, ""));
        assert_eq!(none.base_url, "http://x");
        assert_eq!(none.search, [PathBuf::from(SYSTEM_DIR)]);
    }

    #[test]
    fn a_directory_or_a_broken_link_in_place_of_a_file_is_named_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [true; 4]);
        let images = dir.path().join("train-images-idx3-ubyte.gz");
        std::fs::remove_file(&images).unwrap();
        std::fs::create_dir(&images).unwrap();
        let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
        std::fs::remove_file(&labels).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/nowhere/at/all", &labels).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        let mut want = format!(
            "fashion-mnist not found; searched:\n  {}: train-images-idx3-ubyte.gz is a \
             directory, not a file",
            dir.path().display()
        );
        if cfg!(unix) {
            want.push_str(
                "; t10k-labels-idx1-ubyte.gz is a broken symbolic link (to /nowhere/at/all)",
            );
        } else {
            want = want.replace(
                ": train-images",
                ": missing t10k-labels-idx1-ubyte[.gz]; train-images",
            );
        }
        assert_eq!(msg, want);
    }

    #[test]
    fn an_empty_split_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [false; 4]);
        let images = dir.path().join("train-images-idx3-ubyte");
        std::fs::write(&images, idx_bytes(&[0, 28, 28], &[])).unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx_bytes(&[0], &[]),
        )
        .unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(msg, format!("{}: holds no images", images.display()));
    }

    #[test]
    fn a_label_out_of_range_names_the_file_and_the_index() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), [false; 4]);
        let labels = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&labels, idx_bytes(&[2], &[3, 12])).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: label 12 at index 1 is out of range: there are 10 classes, 0 to 9",
                labels.display()
            )
        );
        std::fs::write(&labels, idx_bytes(&[2], &[200, 10])).unwrap();
        let msg = FashionMnist::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.ends_with(
                "label 200 at index 0 is out of range: there are 10 classes, 0 to 9 (2 labels \
                 in all are out of range)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn not_found_lists_every_place_searched() {
        let root = tempfile::tempdir().unwrap();
        let [a, b] = ["a", "b"].map(|d| root.path().join(d));
        std::fs::create_dir(&a).unwrap();
        let loc = offline(None, vec![a.clone(), b.clone()], None);
        let msg = loc.locate_or_download().unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "fashion-mnist not found; searched:\n  {}: missing train-images-idx3-ubyte[.gz], \
                 train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], \
                 t10k-labels-idx1-ubyte[.gz]\n  {}: does not exist",
                a.display(),
                b.display()
            )
        );
    }

    #[test]
    fn from_env_puts_the_system_directory_before_the_cache() {
        let loc = Locator::from_env(Some(Path::new("/x")));
        assert_eq!(loc.explicit.as_deref(), Some(Path::new("/x")));
        assert_eq!(loc.named_by, "--data");
        assert_eq!(
            loc.search.last().map(PathBuf::as_path),
            Some(Path::new(SYSTEM_DIR))
        );
        if let Some(cache) = &loc.cache {
            assert!(cache.ends_with("cnn/fashion-mnist"), "{}", cache.display());
        }
        assert_eq!(loc.md5, FASHION_MNIST_MD5.map(str::to_owned));
    }

    /// Loads the real data where Debian's `dataset-fashion-mnist` is installed (CI installs
    /// it); elsewhere it prints "skipped" and passes.
    #[test]
    fn real_fashion_mnist_from_debian_package() {
        let dir = Path::new(SYSTEM_DIR);
        if !dir.is_dir() {
            println!("skipped: {SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)");
            return;
        }
        let data = FashionMnist::load(dir).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (60000, 10000));
        assert_eq!(data.train.images.len(), 60000 * 784);
        // The first labels, read with `zcat train-labels-idx1-ubyte.gz | xxd` (after the
        // 8-byte header): ankle boot, t-shirt, t-shirt, dress, ...
        assert_eq!(data.train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
        assert_eq!(data.test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
        assert_eq!(CLASS_NAMES[usize::from(data.train.labels[0])], "ankle boot");
        for split in [&data.train, &data.test] {
            let (lo, hi) = split
                .images
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
            assert_eq!((lo, hi), (0.0, 1.0));
            assert!(split.labels.iter().all(|&l| l < 10));
        }
    }
}
