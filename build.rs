//! Links ftui's programs so they run without `LD_LIBRARY_PATH` and see CUDA.
//!
//! torch-sys publishes the libtorch folder as `cargo:libtorch_lib` metadata,
//! which reaches direct dependents as `DEP_TCH_LIBTORCH_LIB`:
//! - an rpath to that folder lets the loader find libtorch;
//! - libtorch_cuda.so is linked with `--no-as-needed`: nothing references its
//!   symbols directly (CUDA kernels register themselves when it loads), so the
//!   default `--as-needed` would drop it and CUDA would look absent on a GPU.
//!   Only `ftui-engine` gets it: the `ftui` launcher must load without libtorch.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=FTUI_LIBTORCH_LIB={dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!(
                "cargo:rustc-link-arg-bin=ftui-engine=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state"
            );
        }
    }
}
