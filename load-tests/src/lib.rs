//! The parts of `sluice-load` that are worth testing on their own: reading a process's CPU and
//! memory from `/proc` ([`procfs`]), the null-consumer baseline ([`baseline`]) and the drain
//! report that puts sluice beside it ([`report`]), and confirmed publishing ([`publish`]). `main.rs` is the command line around them.

pub mod baseline;
pub mod procfs;
pub mod publish;
pub mod report;
