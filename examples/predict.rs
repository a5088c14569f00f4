//! Classify image files with a network that `lenet` or `resnet` trained: the top classes of each
//! file, with their names and probabilities.
//!
//! Run: `cargo run --release --example predict -- --weights runs/lenet-d2l.safetensors
//! shoe.png shirt.jpg` (`--top K` for K classes a file, default 3). It prints one line a file:
//! `shoe.png: Sneaker 0.912, Sandal 0.061, Ankle boot 0.020`.
//!
//! The checkpoint says everything else: which network it holds (`cnn.network`, so LeNet's
//! weights are not read into a ResNet), the class names (`cnn.classes`) and the validation
//! transforms its training used (`cnn.transforms`), which every file goes through here, so
//! an image cannot be classified with other preprocessing than the network was validated
//! with. A checkpoint that records none of them (saved before `predict` existed) is refused,
//! saying so. A file that cannot be read or decoded gets a line naming its problem; the others
//! are still classified, and the exit status is 1.

#[path = "common/lenets.rs"]
mod lenets;
#[path = "common/resnets.rs"]
#[allow(dead_code)]
mod resnets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use cnn::data::images::{DecodeOptions, Transforms, decode, image_rng};
use cnn::prelude::*;
use dfdx::nn::LoadFromSafetensors;

/// Any error of a run; printed with its causes by [`cnn::error_chain`].
type Error = Box<dyn std::error::Error + Send + Sync>;

/// The device: CUDA under `--features cuda`, else the CPU.
type Dev = AutoDevice;

#[derive(Parser, Debug)]
#[command(about = "Classify image files with a checkpoint of lenet or resnet")]
struct Args {
    /// A checkpoint saved by `lenet` or `resnet`.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// How many classes to print for each file, most likely first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    top: u16,
    /// The image files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    match start(&Args::parse()) {
        Ok(lines) => {
            let mut status = ExitCode::SUCCESS;
            for line in lines {
                match line {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        status = ExitCode::FAILURE;
                    }
                }
            }
            status
        }
        Err(e) => {
            eprintln!("error: {}", cnn::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// What the checkpoint records beside its weights.
struct Recorded {
    network: String,
    classes: Vec<String>,
    transforms: Transforms,
}

/// One line for each file of `args`: its top classes, or what is wrong with it; an error
/// when the checkpoint cannot be used at all.
fn start(args: &Args) -> Result<Vec<Result<String, String>>, Error> {
    let meta = cnn::checkpoint::metadata(&args.weights)?;
    let missing = |key: &str| {
        format!(
            "{} records no {key}: it was not saved by this version's lenet or resnet, so its \
             class names and preprocessing are unknown",
            args.weights.display()
        )
    };
    let get = |key: &str| meta.get(key).ok_or_else(|| missing(key));
    let recorded = Recorded {
        network: get("cnn.network")?.clone(),
        classes: get("cnn.classes")?.lines().map(String::from).collect(),
        transforms: get("cnn.transforms")?
            .parse()
            .map_err(|e| format!("{}: cnn.transforms: {e}", args.weights.display()))?,
    };
    if recorded.transforms.is_random() {
        return Err(format!(
            "{}: its transforms ({}) draw random numbers; prediction needs deterministic ones",
            args.weights.display(),
            recorded.transforms
        )
        .into());
    }
    let top = usize::from(args.top);
    match recorded.network.as_str() {
        "LeNet" => classify::<lenets::LeNet, 28>(args, &recorded, top),
        "LeNetModern" => classify::<lenets::LeNetModern, 28>(args, &recorded, top),
        "ResNet" => classify::<resnets::ResNet, 28>(args, &recorded, top),
        "ResNet18" => classify::<resnets::ResNet18, 96>(args, &recorded, top),
        other => Err(format!(
            "{}: network `{other}` is not one that lenet or resnet trains (LeNet, LeNetModern, \
             ResNet, ResNet18)",
            args.weights.display()
        )
        .into()),
    }
}

/// [`start`] for network `M`, which takes `[1, S, S]` and gives 10 logits.
fn classify<M, const S: usize>(
    args: &Args,
    recorded: &Recorded,
    top: usize,
) -> Result<Vec<Result<String, String>>, Error>
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: Module<
            Tensor<(usize, Const<1>, Const<S>, Const<S>), f32, Dev>,
            Output = Tensor<(usize, Const<10>), f32, Dev>,
        > + LoadFromSafetensors<f32, Dev>
        + cnn::Network,
{
    let dev = Dev::default();
    let mut model = dev.build_module::<M, f32>();
    cnn::checkpoint::load_network(&mut model, &args.weights)?;
    let classes = &recorded.classes[..recorded.classes.len().min(10)];
    let mut lines = Vec::new();
    for file in &args.files {
        lines.push(
            image::<S>(file, &recorded.transforms)
                .and_then(|x| {
                    let x = dev.tensor_from_vec(x, (1, Const::<1>, Const::<S>, Const::<S>));
                    let logits = model.try_forward(x).map_err(|e| format!("{e:?}"))?;
                    Ok(top_k(&logits.as_vec(), classes, top))
                })
                .map(|best| format!("{}: {best}", file.display())),
        );
    }
    Ok(lines)
}

/// `file` decoded to grey and through `transforms`, as `(1, S, S)` values; or what is wrong
/// with it.
fn image<const S: usize>(file: &Path, transforms: &Transforms) -> Result<Vec<f32>, String> {
    let img = decode(file, 1, &DecodeOptions::default()).map_err(|e| cnn::error_chain(&e))?;
    let img = transforms.apply(img, &mut image_rng(0, 0, 0));
    if (img.height, img.width) != (S, S) {
        return Err(format!(
            "{}: the checkpoint's transforms ({transforms}) leave it {}x{}, and the network \
             takes {S}x{S}",
            file.display(),
            img.height,
            img.width
        ));
    }
    let mut x = Vec::with_capacity(S * S);
    transforms.to_tensor(&img, &mut x);
    Ok(x)
}

/// The `k` most probable of `classes` (softmax over their logits only: outputs beyond the
/// trained classes never were targets), as `name p, name p, ...`.
fn top_k(logits: &[f32], classes: &[String], k: usize) -> String {
    let logits = &logits[..classes.len().min(logits.len())];
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let mut ranked: Vec<(usize, f64)> = exp.iter().map(|e| e / total).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
        .iter()
        .take(k)
        .map(|&(i, p)| format!("{} {p:.3}", classes[i]))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    //! `predict` as a user meets it: a checkpoint with its classes and transforms, image files
    //! good and bad, and checkpoints that cannot be used.

    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("predict").chain(list.iter().copied())).unwrap()
    }

    /// A LeNet checkpoint (random weights) recording `classes` and `transforms`.
    fn checkpoint(dir: &Path, classes: &[&str], transforms: &str) -> PathBuf {
        let dev = Dev::default();
        let model = dev.build_module::<lenets::LeNetModern, f32>();
        let path = dir.join("net.safetensors");
        cnn::checkpoint::save_network_with(
            &model,
            &path,
            &[
                ("cnn.classes", classes.join("\n")),
                ("cnn.transforms", transforms.to_string()),
            ],
        )
        .unwrap();
        path
    }

    #[test]
    fn prints_the_top_classes_by_name_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = checkpoint(
            dir.path(),
            &["cat", "dog", "emu"],
            "resize(28); center_crop(28, 28)",
        );
        let photo = dir.path().join("photo.jpg");
        image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 90]))
            .save(&photo)
            .unwrap();
        let broken = dir.path().join("broken.png");
        std::fs::write(&broken, b"").unwrap();
        let lines = start(&args(&[
            "--weights",
            ckpt.to_str().unwrap(),
            "--top",
            "5",
            photo.to_str().unwrap(),
            broken.to_str().unwrap(),
        ]))
        .unwrap();
        let first = lines[0].as_ref().unwrap();
        let rest = first
            .strip_prefix(&format!("{}: ", photo.display()))
            .unwrap();
        // three classes only, however many asked for; probabilities descending, summing to 1
        let ranked: Vec<(&str, f64)> = rest
            .split(", ")
            .map(|p| {
                let (name, prob) = p.rsplit_once(' ').unwrap();
                (name, prob.parse().unwrap())
            })
            .collect();
        assert_eq!(ranked.len(), 3, "{first}");
        let mut names: Vec<&str> = ranked.iter().map(|r| r.0).collect();
        names.sort_unstable();
        assert_eq!(names, ["cat", "dog", "emu"]);
        assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{first}");
        let total: f64 = ranked.iter().map(|r| r.1).sum();
        assert!((total - 1.0).abs() < 0.01, "{first}");
        assert_eq!(
            lines[1],
            Err(format!("{}: empty file (0 bytes)", broken.display()))
        );
    }

    #[test]
    fn checkpoints_that_cannot_say_how_to_predict_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Dev::default();
        let plain = dir.path().join("plain.safetensors");
        cnn::checkpoint::save_network(&dev.build_module::<lenets::LeNet, f32>(), &plain).unwrap();
        let fails = |ckpt: &Path| {
            let err = start(&args(&["--weights", ckpt.to_str().unwrap(), "x.png"]));
            cnn::error_chain(&*err.err().unwrap())
        };
        assert_eq!(
            fails(&plain),
            format!(
                "{} records no cnn.classes: it was not saved by this version's lenet or resnet, \
                 so its class names and preprocessing are unknown",
                plain.display()
            )
        );
        let random = checkpoint(dir.path(), &["a", "b"], "random_horizontal_flip");
        assert!(fails(&random).ends_with(
            "its transforms (random_horizontal_flip(0.5)) draw random numbers; prediction \
                 needs deterministic ones"
        ));
        let wrong = checkpoint(dir.path(), &["a", "b"], "resize(20, 20)");
        let img = dir.path().join("a.png");
        image::GrayImage::new(5, 5).save(&img).unwrap();
        let lines = start(&args(&[
            "--weights",
            wrong.to_str().unwrap(),
            img.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(
            lines[0],
            Err(format!(
                "{}: the checkpoint's transforms (resize(20, 20, bilinear)) leave it 20x20, and \
                 the network takes 28x28",
                img.display()
            ))
        );
    }
}
