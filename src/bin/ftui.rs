//! The `ftui` command: a small launcher with no libtorch dependency. It checks
//! that the libtorch ftui was built against is still there, then runs the real
//! program (`ftui-engine`, next to it). Without this, a missing libtorch would
//! show as a dynamic-loader error before any of ftui's code could explain it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::exit;

const SOURCE_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn fail(message: String) -> ! {
    eprintln!("ftui: {message}");
    exit(1)
}

fn main() {
    let engine = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ftui-engine")))
        .unwrap_or_else(|| PathBuf::from("ftui-engine"));
    if let Some(lib) = option_env!("FTUI_LIBTORCH_LIB") {
        if !Path::new(lib).join("libtorch_cpu.so").is_file() {
            fail(format!(
                "libtorch is missing (ftui was built against {lib}, from the torch==2.13.0 wheel): \
                 run `make setup` in {SOURCE_DIR} to install it again"
            ));
        }
    }
    if !engine.is_file() {
        fail(format!(
            "{} is missing: run `make build` in {SOURCE_DIR}",
            engine.display()
        ));
    }
    let err = std::process::Command::new(&engine)
        .args(std::env::args_os().skip(1))
        .exec();
    fail(format!("cannot start {}: {err}", engine.display()))
}
