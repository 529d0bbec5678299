//! ftui: a terminal workbench for LoRA/QLoRA fine-tuning of causal language
//! models on libtorch. The library does the work; the binary's two faces, the
//! CLI ([`cli`]) and the workbench ([`tui`]), drive the same [`engine`].

pub mod cli;
pub mod collate;
pub mod config;
pub mod data;
pub mod device;
pub mod doctor;
pub mod engine;
pub mod export;
pub mod fsutil;
pub mod generate;
pub mod gguf;
pub mod hub;
pub mod logging;
pub mod lora;
pub mod model;
pub mod nn;
pub mod paths;
pub mod process;
pub mod quant;
pub mod run;
pub mod score;
pub mod source;
pub mod template;
pub mod tokenizer;
pub mod torch;
pub mod train;
pub mod tui;
