//! Every integration test in one binary (one link instead of one per file, and one pool of
//! test threads, so a long test no longer runs alone at the end of its file). Each file
//! stays where it is, a module here.

mod common;

#[path = "bad_input.rs"]
mod bad_input;
#[path = "cli.rs"]
mod cli;
#[path = "gguf_quant.rs"]
mod gguf_quant;
#[path = "integer.rs"]
mod integer;
#[path = "jpeg.rs"]
mod jpeg;
#[path = "paper.rs"]
mod paper;
#[path = "quantized.rs"]
mod quantized;
#[path = "smollm2.rs"]
mod smollm2;
#[path = "steering.rs"]
mod steering;
#[path = "taskvec_engine.rs"]
mod taskvec_engine;
#[path = "tiny_vlm.rs"]
mod tiny_vlm;
