use cnn::prelude::*;
cnn! {
    // A chain of 41 blocks, each calling the next: more than 32 levels as expanded.
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
    block B31() { B32 }
    block B32() { B33 }
    block B33() { B34 }
    block B34() { B35 }
    block B35() { B36 }
    block B36() { B37 }
    block B37() { B38 }
    block B38() { B39 }
    block B39() { B40 }
    block B40() { relu }
    struct Net: [1, 8, 8] {
        B0,
    }
}

fn main() {}
