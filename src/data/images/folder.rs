//! Which files a data set holds and their classes: a folder per class (torchvision's
//! `ImageFolder`), or a list of `path,label` lines; its splits; and the check of every file's
//! header before training starts.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::decode::{DEFAULT_MAX_PIXELS, probe};
use crate::data::DataError;

/// The file names an image folder reads, matched case-insensitively: torchvision's
/// `IMG_EXTENSIONS` (`.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp`), and `.gif`, which
/// torchvision leaves out but the first frame of which is read here. Other files (a
/// `README.txt`, `.DS_Store`) are skipped and counted, as torchvision skips them.
pub const IMG_EXTENSIONS: [&str; 10] = [
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif",
];

/// How many failures a [`DataError::BadImages`] lists by name.
pub const LISTED_FAILURES: usize = 5;

/// What to do with a file that cannot be used (corrupt, truncated, empty, not an image, too
/// large, unreadable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBad {
    /// Stop with an error naming it (and the others found so far): the default, because a
    /// data set that silently loses images trains on something other than what was meant.
    #[default]
    Error,
    /// Leave it out, count it, and keep the first few names to report.
    Skip,
}

/// Image files with a class each, as torchvision's `datasets.ImageFolder` lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// The folder (or list file) it was read from.
    pub root: PathBuf,
    /// Class names; a sample's label is an index into this.
    pub classes: Vec<String>,
    /// Every image's file and label, in torchvision's order (by class, then by path).
    pub samples: Vec<(PathBuf, usize)>,
    /// Files left out because their names end in no [`IMG_EXTENSIONS`] entry.
    pub ignored: usize,
}

impl ImageFolder {
    /// Reads `root/<class>/**/<image>`: one class per subfolder, named by it, in sorted order
    /// (so the labels are torchvision's: `class_to_idx` is the sorted folder names); every
    /// image file at any depth below a class folder, symbolic links followed. Files in `root`
    /// itself, and files without an image extension, are left out.
    ///
    /// # Errors
    /// [`DataError::Io`] for a folder that cannot be listed; [`DataError::Layout`] when `root`
    /// has no class folders, only one, a class folder with no image files (naming every such
    /// class), a class name that is not UTF-8 or holds a line break, or a symbolic link that
    /// leads back to a folder above it (a loop).
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let classes = class_folders(root)?;
        let mut samples = Vec::new();
        let (mut ignored, mut empty) = (0, Vec::new());
        for (label, class) in classes.iter().enumerate() {
            let (files, skipped) = image_files(&root.join(class))?;
            ignored += skipped;
            if files.is_empty() {
                empty.push(class.as_str());
            }
            samples.extend(files.into_iter().map(|f| (f, label)));
        }
        if !empty.is_empty() {
            return Err(DataError::layout(
                root,
                format!(
                    "no image files in class folder{} {} (image files end in {})",
                    if empty.len() > 1 { "s" } else { "" },
                    empty.join(", "),
                    IMG_EXTENSIONS.join(" ")
                ),
            ));
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            ignored,
        })
    }

    /// Reads a list of `path,label` lines (a CSV without quoting): a path relative to the list's
    /// folder, or absolute, and a class name. The path is everything before the last comma,
    /// so it may hold commas. A first line `path,label` is a header; blank lines are skipped.
    /// The classes are the labels that occur, sorted (as numbers when every label is a whole
    /// number, so `10` comes after `9`).
    ///
    /// # Errors
    /// [`DataError::Io`] when the list cannot be read; [`DataError::Layout`] naming the line
    /// of a line without a comma or with an empty path or label, or when the list names fewer
    /// than two classes.
    pub fn from_csv(list: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(list).map_err(|e| DataError::io(list, e))?;
        let base = list.parent().unwrap_or(Path::new(""));
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || (n == 0 && line.trim() == "path,label") {
                continue;
            }
            match line.rsplit_once(',') {
                Some((path, label)) if !path.trim().is_empty() && !label.trim().is_empty() => {
                    rows.push((base.join(path.trim()), label.trim().to_string()));
                }
                _ => {
                    return Err(DataError::layout(
                        list,
                        format!("line {}: expected `path,label`, found `{line}`", n + 1),
                    ));
                }
            }
        }
        let names: BTreeSet<&str> = rows.iter().map(|(_, l)| l.as_str()).collect();
        let mut classes: Vec<String> = names.into_iter().map(String::from).collect();
        if classes.iter().all(|c| c.parse::<u64>().is_ok()) {
            classes.sort_by_key(|c| c.parse::<u64>().unwrap_or(0));
        }
        if classes.len() < 2 {
            return Err(DataError::layout(list, one_class(&classes)));
        }
        let index: BTreeMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let samples = rows
            .iter()
            .map(|(p, l)| (p.clone(), index[l.as_str()]))
            .collect();
        Ok(ImageFolder {
            root: list.to_path_buf(),
            classes,
            samples,
            ignored: 0,
        })
    }

    /// The training and validation sets of `root`: `root/train` and `root/val` (or
    /// `root/test`) when `root/train` exists, their classes required to be the same; else
    /// all of `root`, split by [`ImageFolder::split`] with `val_fraction` and `seed`.
    ///
    /// # Errors
    /// As [`ImageFolder::open`]; [`DataError::Layout`] when `root/train` exists without
    /// `root/val` or `root/test`, or when their classes differ.
    pub fn train_val(
        root: &Path,
        val_fraction: f64,
        seed: u64,
    ) -> Result<(ImageFolder, ImageFolder), DataError> {
        let train_dir = root.join("train");
        if !train_dir.is_dir() {
            return Ok(ImageFolder::open(root)?.split(val_fraction, seed));
        }
        let Some(val_dir) = ["val", "test"]
            .into_iter()
            .map(|n| root.join(n))
            .find(|d| d.is_dir())
        else {
            return Err(DataError::layout(
                root,
                "has a train/ folder but no val/ or test/ beside it",
            ));
        };
        let (train, val) = (ImageFolder::open(&train_dir)?, ImageFolder::open(&val_dir)?);
        if train.classes != val.classes {
            let only = |a: &ImageFolder, b: &ImageFolder| {
                a.classes
                    .iter()
                    .filter(|c| !b.classes.contains(c))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(DataError::layout(
                &val_dir,
                format!(
                    "its classes differ from {}'s (only in train: {}; only here: {})",
                    train_dir.display(),
                    only(&train, &val),
                    only(&val, &train)
                ),
            ));
        }
        Ok((train, val))
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Images per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &(_, label) in &self.samples {
            counts[label] += 1;
        }
        counts
    }

    /// A seeded split into training and validation images, class by class (so every class
    /// with two or more images is in both): `round(n * fraction)` of each class's `n`, at
    /// least one and at most `n - 1`, drawn by a generator seeded with `seed` and the class.
    /// Both keep the whole class list; each keeps torchvision's order.
    pub fn split(&self, fraction: f64, seed: u64) -> (ImageFolder, ImageFolder) {
        let mut val = vec![false; self.samples.len()];
        for label in 0..self.classes.len() {
            let mut members: Vec<usize> = (0..self.samples.len())
                .filter(|&i| self.samples[i].1 == label)
                .collect();
            let n = members.len();
            if n < 2 || fraction <= 0.0 {
                continue;
            }
            let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
            let mut rng = StdRng::seed_from_u64(seed ^ (label as u64).wrapping_mul(0x9E37_79B9));
            members.shuffle(&mut rng);
            for &i in &members[..k] {
                val[i] = true;
            }
        }
        let part = |want: bool| ImageFolder {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples: (self.samples.iter().zip(&val))
                .filter(|(_, v)| **v == want)
                .map(|(s, _)| s.clone())
                .collect(),
            ignored: 0,
        };
        (part(false), part(true))
    }

    /// Reads every file's header (in parallel, not the pixels): what is empty, unreadable,
    /// not an image, or larger than `max_pixels` is found before training starts rather than
    /// in its third hour. With [`OnBad::Skip`] such files are left out and returned, with
    /// their problems; corrupt pixel data past a sound header is found only when the image is
    /// decoded (see the loader's [`OnBad`] handling).
    ///
    /// # Errors
    /// With [`OnBad::Error`], [`DataError::BadImages`]: how many failed, and the first
    /// [`LISTED_FAILURES`] with their problems.
    pub fn check(
        &mut self,
        max_pixels: Option<u64>,
        on_bad: OnBad,
    ) -> Result<Vec<(PathBuf, String)>, DataError> {
        let max = max_pixels.unwrap_or(DEFAULT_MAX_PIXELS);
        let results: Vec<Option<String>> = self
            .samples
            .par_iter()
            .map(|(path, _)| probe(path, max).err().map(|e| crate::error_chain(&e)))
            .collect();
        let mut bad = Vec::new();
        let mut kept = Vec::with_capacity(self.samples.len());
        for (sample, result) in self.samples.drain(..).zip(results) {
            match result {
                Some(why) => bad.push((sample.0, why)),
                None => kept.push(sample),
            }
        }
        self.samples = kept;
        if on_bad == OnBad::Error && !bad.is_empty() {
            // (the set keeps only its good files either way)
            let total = self.samples.len() + bad.len();
            return Err(bad_images(bad, total));
        }
        Ok(bad)
    }
}

/// A report of files left out under [`OnBad::Skip`]: how many, and the first
/// [`LISTED_FAILURES`] with what was wrong with each, one per line.
pub fn skipped_report(skipped: &[(PathBuf, String)]) -> String {
    let mut out = format!(
        "skipped {} image file{} that cannot be used",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" }
    );
    for (path, why) in skipped.iter().take(LISTED_FAILURES) {
        out.push_str(&format!("\n  {}: {why}", path.display()));
    }
    if skipped.len() > LISTED_FAILURES {
        out.push_str("\n  ...");
    }
    out
}

/// [`DataError::BadImages`] for `bad` of `total` files; each problem is the error's whole
/// text, which starts with the file's name, so only the rest is kept beside the name.
pub(crate) fn bad_images(bad: Vec<(PathBuf, String)>, total: usize) -> DataError {
    let count = bad.len();
    let first = bad
        .into_iter()
        .take(LISTED_FAILURES)
        .map(|(path, why)| {
            let prefix = format!("{}: ", path.display());
            let why = why.strip_prefix(&prefix).map_or(why.clone(), String::from);
            (path, why)
        })
        .collect();
    DataError::BadImages {
        count,
        total,
        first,
    }
}

/// Why fewer than two classes is no classification problem.
fn one_class(classes: &[String]) -> String {
    match classes {
        [] => "no classes found".into(),
        [one] => format!(
            "only one class ({one}): a classifier needs at least two (one folder per class)"
        ),
        many => format!("{} classes", many.len()),
    }
}

/// The sorted names of `root`'s subfolders (symbolic links to folders count, as Python's
/// `DirEntry.is_dir()` counts them).
fn class_folders(root: &Path) -> Result<Vec<String>, DataError> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
        let entry = entry.map_err(|e| DataError::io(root, e))?;
        if !std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if !name.contains(['\n', '\r']) => classes.push(name),
            Ok(name) => {
                return Err(DataError::layout(
                    entry.path(),
                    format!("the class name {name:?} holds a line break"),
                ));
            }
            Err(name) => {
                return Err(DataError::layout(
                    root,
                    format!("the class folder {name:?} is not named in UTF-8"),
                ));
            }
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::layout(
            root,
            "no class folders (expected one folder per class, each holding its images)",
        ));
    }
    if classes.len() < 2 {
        return Err(DataError::layout(root, one_class(&classes)));
    }
    Ok(classes)
}

/// Every image file below `dir`, in torchvision's order (`sorted(os.walk(dir,
/// followlinks=True))`: folders by path, files by name in each), and how many other files were
/// left out.
fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, usize), DataError> {
    // (folder, its file names), every folder below `dir`
    let mut folders: Vec<(PathBuf, Vec<OsString>)> = Vec::new();
    let mut stack = vec![std::fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?];
    walk(dir, &mut stack, &mut folders)?;
    folders.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    let (mut files, mut ignored) = (Vec::new(), 0);
    for (folder, mut names) in folders {
        names.sort();
        for name in names {
            let lower = name.to_string_lossy().to_lowercase();
            if IMG_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
                files.push(folder.join(name));
            } else {
                ignored += 1;
            }
        }
    }
    Ok((files, ignored))
}

/// Adds `dir` and the folders below it to `out`; `stack` holds the real paths of the folders
/// being walked, `dir`'s last, to recognise a link back to one of them.
fn walk(
    dir: &Path,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<(PathBuf, Vec<OsString>)>,
) -> Result<(), DataError> {
    let mut names = Vec::new();
    let mut subfolders = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        // Followed through links; a broken link is listed as a file, so that its error names it.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => subfolders.push(path),
            _ => names.push(entry.file_name()),
        }
    }
    out.push((dir.to_path_buf(), names));
    for sub in subfolders {
        let real = std::fs::canonicalize(&sub).map_err(|e| DataError::io(&sub, e))?;
        if let Some(above) = stack.iter().find(|s| **s == real) {
            return Err(DataError::layout(
                &sub,
                format!(
                    "a symbolic link loop: it leads back to {}, a folder above it",
                    above.display()
                ),
            ));
        }
        stack.push(real);
        walk(&sub, stack, out)?;
        stack.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn classes_sorted_files_nested_and_in_torchvisions_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "dog/b.png",
            "dog/A.JPG",
            "dog/sub/z/c.webp",
            "dog/sub/a.jpeg",
            "cat/1.png",
            "cat/notes.txt",
            "Zebra/x.gif",
            "loose.png",
        ] {
            touch(&r.join(f));
        }
        let set = ImageFolder::open(r).unwrap();
        assert_eq!(set.classes, ["Zebra", "cat", "dog"]);
        let rel: Vec<(String, usize)> = set
            .samples
            .iter()
            .map(|(p, l)| (p.strip_prefix(r).unwrap().display().to_string(), *l))
            .collect();
        assert_eq!(
            rel,
            [
                ("Zebra/x.gif".into(), 0),
                ("cat/1.png".into(), 1),
                ("dog/A.JPG".into(), 2),
                ("dog/b.png".into(), 2),
                ("dog/sub/a.jpeg".into(), 2),
                ("dog/sub/z/c.webp".into(), 2),
            ]
        );
        assert_eq!(set.ignored, 1);
        assert_eq!(set.class_counts(), [1, 1, 4]);
    }

    #[test]
    fn layouts_that_cannot_be_a_data_set_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let fails = |p: &Path| ImageFolder::open(p).unwrap_err().to_string();
        assert_eq!(
            fails(r),
            format!(
                "{}: no class folders (expected one folder per class, each holding its images)",
                r.display()
            )
        );
        touch(&r.join("cat/a.png"));
        assert_eq!(
            fails(r),
            format!(
                "{}: only one class (cat): a classifier needs at least two (one folder per \
                 class)",
                r.display()
            )
        );
        touch(&r.join("dog/readme.txt"));
        fs::create_dir(r.join("emu")).unwrap();
        assert_eq!(
            fails(r),
            format!(
                "{}: no image files in class folders dog, emu (image files end in .jpg .jpeg \
                 .png .ppm .bmp .pgm .tif .tiff .webp .gif)",
                r.display()
            )
        );
        assert!(fails(&r.join("nowhere")).contains("nowhere"));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(&r.join("cat/a.png"));
        touch(&r.join("dog/deep/b.png"));
        std::os::unix::fs::symlink(r.join("dog"), r.join("dog/deep/again")).unwrap();
        let msg = ImageFolder::open(r).unwrap_err().to_string();
        let real = fs::canonicalize(r.join("dog")).unwrap();
        assert_eq!(
            msg,
            format!(
                "{}: a symbolic link loop: it leads back to {}, a folder above it",
                r.join("dog/deep/again").display(),
                real.display()
            )
        );
    }

    #[test]
    fn csv_lists_with_header_commas_and_numeric_labels() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.csv");
        fs::write(
            &list,
            "path,label\na,b.png,10\n/abs/c.png,9\n\nd.png,10\r\n",
        )
        .unwrap();
        let set = ImageFolder::from_csv(&list).unwrap();
        assert_eq!(set.classes, ["9", "10"]);
        assert_eq!(
            set.samples,
            [
                (dir.path().join("a,b.png"), 1),
                (PathBuf::from("/abs/c.png"), 0),
                (dir.path().join("d.png"), 1),
            ]
        );
        fs::write(&list, "a.png,cat\nb.png\n").unwrap();
        assert_eq!(
            ImageFolder::from_csv(&list).unwrap_err().to_string(),
            format!(
                "{}: line 2: expected `path,label`, found `b.png`",
                list.display()
            )
        );
        fs::write(&list, "a.png,cat\nb.png,cat\n").unwrap();
        assert!(
            ImageFolder::from_csv(&list)
                .unwrap_err()
                .to_string()
                .ends_with(
                    "only one class (cat): a classifier needs at least two (one folder per class)"
                )
        );
    }

    #[test]
    fn split_is_seeded_stratified_and_disjoint() {
        let set = ImageFolder {
            root: PathBuf::new(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            samples: (0..53)
                .map(|i| {
                    let label = match i {
                        52 => 2,
                        i if i % 3 == 0 => 1,
                        _ => 0,
                    };
                    (PathBuf::from(format!("{i}.png")), label)
                })
                .collect(),
            ignored: 0,
        };
        let (train, val) = set.split(0.2, 7);
        assert_eq!(train.len() + val.len(), set.len());
        assert!(train.samples.iter().all(|s| !val.samples.contains(s)));
        // a: 34 images, b: 18, c: 1 (too few to split)
        assert_eq!(val.class_counts(), [7, 4, 0]);
        assert_eq!(set.split(0.2, 7), (train.clone(), val.clone()));
        assert_ne!(set.split(0.2, 8).1, val);
    }

    #[test]
    fn train_val_folders_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "train/cat/a.png",
            "train/dog/b.png",
            "val/cat/c.png",
            "val/emu/d.png",
        ] {
            touch(&r.join(f));
        }
        let msg = ImageFolder::train_val(r, 0.1, 0).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{}: its classes differ from {}'s (only in train: dog; only here: emu)",
                r.join("val").display(),
                r.join("train").display()
            )
        );
        fs::rename(r.join("val/emu"), r.join("val/dog")).unwrap();
        let (train, val) = ImageFolder::train_val(r, 0.1, 0).unwrap();
        assert_eq!((train.len(), val.len()), (2, 2));
    }
}
