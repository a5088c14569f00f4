//! Throughput: the cases of `../shared/bench/torch_lenet.py` and `torch_modern.py`, so
//! `../shared/bench/compare.sh` can put our figures beside PyTorch's from the same run. It runs
//! on dfdx's `AutoDevice`: the CPU, or the GPU under `--features cuda`.
//!
//! - `train` = forward + backward + SGD step (batch statistics in batch norm); `infer` = forward
//!   without a tape (running statistics).
//! - `sigmoid` = d2l's LeNet (sigmoid, average pooling); `relu` = ReLU and max pooling.
//! - `vggbn` = two VGG stages of 3x3 convolutions with batch norm; `resnet` = d2l 8.6's residual
//!   blocks (both written out in `../shared/bench/README.md`). They take a sixth of `--steps`,
//!   as PyTorch's script takes 5 to LeNet's 30.
//!
//! Run: `cargo run --release --example bench` (a table), or `-- --json` for one JSON line per
//! case, `{"case": "train_sigmoid_b256", "images_per_s": 12345.6}`. `--rounds N` (default 3)
//! and `--steps N` (default 30) as in the PyTorch script; `--case NAME` runs the cases whose
//! name contains NAME (for profiling); each figure is the median of the
//! rounds, taken round-robin so drift in machine speed hits every case alike. `--memory`
//! prints the peak memory of a `resnet` training step instead (beside
//! `bench/torch_peak_memory.py`).
//!
//! Like the `lenet` and `resnet` examples, it first asks glibc to keep freed memory mapped
//! ([`cnn::retain_freed_memory`]); PyTorch's scripts run on the allocator as it comes.

use cnn::prelude::*;
use std::time::Instant;

cnn! {
    /// d2l's LeNet (6.6): sigmoid and average pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    struct LeNetSigmoid: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), sigmoid,
        avg_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), sigmoid,
        linear(84), sigmoid,
        linear(10),
    }

    /// The modern variant: ReLU and max pooling.
    // Trained on images only, never placed after another network: skip the input's gradient.
    #[cnn(input_grad = false)]
    struct LeNetRelu: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu,
        max_pool2d(kernel = 2, stride = 2),
        conv2d(16, kernel = 5), relu,
        max_pool2d(kernel = 2, stride = 2),
        flatten,
        linear(120), relu,
        linear(84), relu,
        linear(10),
    }

    /// d2l 8.6's residual block.
    block Residual(c, use_1x1conv = false, stride = 1) {
        residual {
            conv2d(c, kernel = 3, padding = 1, stride = stride), batch_norm2d, relu,
            conv2d(c, kernel = 3, padding = 1), batch_norm2d,
        } shortcut {
            if use_1x1conv { conv2d(c, kernel = 1, stride = stride) }
        },
        relu,
    }

    /// Two VGG stages with batch norm.
    #[cnn(input_grad = false)]
    struct VggBn: [1, 28, 28] -> [10] {
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        max_pool2d(kernel = 2),
        conv2d(64, kernel = 3, padding = 1), batch_norm2d, relu,
        conv2d(64, kernel = 3, padding = 1), batch_norm2d, relu,
        max_pool2d(kernel = 2),
        flatten, linear(10),
    }

    /// A small ResNet: a stem, four residual blocks, global average pooling.
    #[cnn(input_grad = false)]
    struct ResNet: [1, 28, 28] -> [10] {
        conv2d(32, kernel = 3, padding = 1), batch_norm2d, relu,
        Residual(32), Residual(32),
        Residual(64, use_1x1conv = true, stride = 2), Residual(64),
        global_avg_pool2d, linear(10),
    }
}

/// The CPU, or CUDA under `--features cuda`.
type Dev = AutoDevice;
type Batch = (usize, Const<1>, Const<28>, Const<28>);

/// One training step of `M` on a fixed batch: forward, backward, SGD update.
fn train_step<M>(batch: usize) -> impl FnMut()
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: ModuleMut<
            Tensor<Batch, f32, Dev, OwnedTape<f32, Dev>>,
            Output = Tensor<(usize, Const<10>), f32, Dev, OwnedTape<f32, Dev>>,
        >,
{
    let dev = Dev::seed_from_u64(0);
    let mut model = dev.build_module::<M, f32>();
    let mut opt = Sgd::new(
        &model,
        SgdConfig {
            lr: 0.1,
            momentum: None,
            weight_decay: None,
        },
    );
    // The gradients move round: the tape takes them and `backward` gives them back (a
    // `grads.clone()` per step would copy every one).
    let mut grads = Some(model.alloc_grads());
    let x: Tensor<Batch, f32, Dev> = dev.sample_normal_like(&(batch, Const, Const, Const));
    let labels: Vec<usize> = (0..batch).map(|i| (i * 7) % 10).collect();
    let y = dev.one_hot_encode(Const::<10>, labels);
    move || {
        let taken = grads.take().expect("the last step gave the gradients back");
        let logits = model.forward_mut(x.clone().traced(taken));
        let loss = cross_entropy_with_logits_loss(logits, y.clone());
        let mut back = loss.backward();
        opt.update(&mut model, &back)
            .expect("every parameter has a gradient");
        model.zero_grads(&mut back);
        grads = Some(back);
    }
}

/// Images per second of `steps` training steps (after 3 warm-up steps).
fn train<M>(batch: usize, steps: usize) -> f64
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: ModuleMut<
            Tensor<Batch, f32, Dev, OwnedTape<f32, Dev>>,
            Output = Tensor<(usize, Const<10>), f32, Dev, OwnedTape<f32, Dev>>,
        >,
{
    let mut step = train_step::<M>(batch);
    for _ in 0..3 {
        step();
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    (batch * steps) as f64 / t.elapsed().as_secs_f64()
}

/// `--memory`: the memory one training step of `resnet` takes on the CPU, as the process's
/// resident set sees it (Linux): the peak during the first step (`VmHWM`, reset just before
/// it through `/proc/self/clear_refs`) above the resident set before it (model, batch and
/// gradients built), and the same for the third step (buffers then come from the pool).
/// `bench/torch_peak_memory.py` measures PyTorch the same way.
fn peak_memory() {
    fn status(field: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/self/status").expect("Linux's /proc");
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a size in kB")
    }
    let reset = || std::fs::write("/proc/self/clear_refs", "5").expect("VmHWM reset");
    let mut step = train_step::<ResNet>(128);
    for n in 1..=3 {
        let before = status("VmRSS:");
        reset();
        step();
        let peak = status("VmHWM:");
        println!(
            "train_resnet_b128 step {n}: peak {:.1} MB above the {:.1} MB resident before it",
            (peak.saturating_sub(before)) as f64 / 1024.0,
            before as f64 / 1024.0
        );
    }
}

/// Images per second of `steps` forward passes without a tape.
fn infer<M>(batch: usize, steps: usize) -> f64
where
    M: BuildOnDevice<Dev, f32>,
    M::Built: Module<Tensor<Batch, f32, Dev>, Output = Tensor<(usize, Const<10>), f32, Dev>>,
{
    let dev = Dev::seed_from_u64(0);
    let model = dev.build_module::<M, f32>();
    let x: Tensor<Batch, f32, Dev> = dev.sample_normal_like(&(batch, Const, Const, Const));
    let step = || std::hint::black_box(model.forward(x.clone()));
    for _ in 0..3 {
        step();
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    (batch * steps) as f64 / t.elapsed().as_secs_f64()
}

/// The steps of a modern case: a sixth of LeNet's (their steps are about 50 times longer).
fn modern(steps: usize) -> usize {
    (steps / 6).max(1)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("{name} needs a positive number");
                std::process::exit(2)
            }),
        None => default,
    }
}

fn main() {
    // As the examples do: freed memory stays mapped for the next step.
    cnn::retain_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--memory") {
        return peak_memory();
    }
    let json = args.iter().any(|a| a == "--json");
    let rounds = arg(&args, "--rounds", 3).max(1);
    let steps = arg(&args, "--steps", 30).max(1);
    type Case = (&'static str, fn(usize) -> f64);
    let cases: [Case; 9] = [
        ("train_sigmoid_b256", |s| train::<LeNetSigmoid>(256, s)),
        ("infer_sigmoid_b256", |s| infer::<LeNetSigmoid>(256, s)),
        ("train_relu_b256", |s| train::<LeNetRelu>(256, s)),
        ("infer_relu_b256", |s| infer::<LeNetRelu>(256, s)),
        ("train_sigmoid_b64", |s| train::<LeNetSigmoid>(64, s)),
        ("train_vggbn_b128", |s| train::<VggBn>(128, modern(s))),
        ("infer_vggbn_b128", |s| infer::<VggBn>(128, modern(s))),
        ("train_resnet_b128", |s| train::<ResNet>(128, modern(s))),
        ("infer_resnet_b128", |s| infer::<ResNet>(128, modern(s))),
    ];
    let only = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1));
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| name.contains(o.as_str())))
        .collect();
    let mut seen = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in cases.iter().enumerate() {
            seen[i].push(run(steps));
        }
    }
    if !json {
        println!(
            "{:24} {:>12}  (median of {rounds} rounds, {steps} steps each, {})",
            "case",
            "images/s",
            if cfg!(feature = "cuda") {
                "CUDA".to_string()
            } else {
                format!("CPU, {} threads", rayon::current_num_threads())
            }
        );
    }
    for ((name, _), mut v) in cases.iter().zip(seen) {
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        if json {
            println!("{{\"case\": \"{name}\", \"images_per_s\": {median:.1}}}");
        } else {
            println!("{name:24} {median:12.0}");
        }
    }
}
