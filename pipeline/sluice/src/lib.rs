//! The library half of the `sluice` package: [`config`], the configuration file's two layers.
//!
//! Everything else is the binary's (`main.rs`). The configuration lives here so that it can be
//! reached from outside the binary: the fuzz targets (`benches/fuzz-targets`) read a file
//! through exactly the loader and checks `sluice run` uses.

pub mod config;
