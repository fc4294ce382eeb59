//! Entry points for the cargo-fuzz targets in `fuzz/`: each target is one line calling a function here, so that the regression tests in `cargo test` replay the same code.
