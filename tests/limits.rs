//! Networks at the macro's nesting limit (`MAX_DEPTH`, 32 levels as expanded) compile: the
//! generated structs, each holding the next, stay within rustc's default recursion limit, and
//! their tensors keep their PyTorch keys.

use cnn::prelude::*;

cnn! {
    /// 32 nested groups.
    pub struct DeepGroups: [1, 4, 4] {
        { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { { conv2d(2, kernel = 1), relu } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } }
    }

    /// A chain of 32 block calls.
    block B0() { B1 }
    block B1() { B2 }
    block B2() { B3 }
    block B3() { B4 }
    block B4() { B5 }
    block B5() { B6 }
    block B6() { B7 }
    block B7() { B8 }
    block B8() { B9 }
    block B9() { B10 }
    block B10() { B11 }
    block B11() { B12 }
    block B12() { B13 }
    block B13() { B14 }
    block B14() { B15 }
    block B15() { B16 }
    block B16() { B17 }
    block B17() { B18 }
    block B18() { B19 }
    block B19() { B20 }
    block B20() { B21 }
    block B21() { B22 }
    block B22() { B23 }
    block B23() { B24 }
    block B24() { B25 }
    block B25() { B26 }
    block B26() { B27 }
    block B27() { B28 }
    block B28() { B29 }
    block B29() { B30 }
    block B30() { B31 }
    block B31() { conv2d(2, kernel = 1), relu }
    pub struct DeepBlocks: [1, 4, 4] {
        B0
    }

    /// 16 nested named repeats: 32 levels (a repeat's struct and its copy's).
    pub struct DeepRepeats: [1, 4, 4] {
        a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { a: repeat(1) { conv2d(2, kernel = 1) } } } } } } } } } } } } } } } }
    }
}

#[test]
fn the_deepest_networks_build_run_and_name_their_tensors() {
    let dev = Cpu::default();
    let x = dev.ones::<Rank3<1, 4, 4>>();

    let groups = dev.build_module::<DeepGroups, f32>();
    let y: Tensor<Rank3<2, 4, 4>, f32, Cpu> = groups.forward(x.clone());
    assert_eq!(y.shape(), &(Const::<2>, Const::<4>, Const::<4>));
    assert_eq!(DeepGroups::PARAMS, 4);
    let key = format!("{}0.weight", "0.".repeat(32));
    assert_eq!(
        DeepGroups::summary()
            .rows
            .iter()
            .filter(|r| r.depth == 32)
            .count(),
        2
    );
    assert!(
        DeepGroups::summary()
            .rows
            .iter()
            .any(|r| format!("{}.weight", r.path) == key)
    );

    let blocks = dev.build_module::<DeepBlocks, f32>();
    let _: Tensor<Rank3<2, 4, 4>, f32, Cpu> = blocks.forward(x.clone());
    assert_eq!(DeepBlocks::PARAMS, 4);

    let repeats = dev.build_module::<DeepRepeats, f32>();
    let _: Tensor<Rank3<2, 4, 4>, f32, Cpu> = repeats.forward(x);
    assert_eq!(DeepRepeats::PARAMS, 4);
}
