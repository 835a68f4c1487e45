//! Developer tasks for kubescribe.
fn main() {}
