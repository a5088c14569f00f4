use cnn::prelude::*;
cnn! {
    // 2^20 calls of B20.
    block B0() { B1, B1 }
    block B1() { B2, B2 }
    block B2() { B3, B3 }
    block B3() { B4, B4 }
    block B4() { B5, B5 }
    block B5() { B6, B6 }
    block B6() { B7, B7 }
    block B7() { B8, B8 }
    block B8() { B9, B9 }
    block B9() { B10, B10 }
    block B10() { B11, B11 }
    block B11() { B12, B12 }
    block B12() { B13, B13 }
    block B13() { B14, B14 }
    block B14() { B15, B15 }
    block B15() { B16, B16 }
    block B16() { B17, B17 }
    block B17() { B18, B18 }
    block B18() { B19, B19 }
    block B19() { B20, B20 }
    block B20() { relu }
    struct Net: [1, 8, 8] {
        B0,
    }
}

fn main() {}
